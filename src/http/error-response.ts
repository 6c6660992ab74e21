// The one place where failures become HTTP replies: status from the error's code, a JSON body
// `{"error": "CODE message"}`, Retry-After for 503s. Anything unexpected is logged and
// answered with a generic 500 that leaks nothing.

import type { Context } from 'hono'
import type { Logger } from 'pino'
import { GatewayError, RedisReplyError, statusOf } from '../core/errors.js'

export interface ErrorReply {
  readonly status: number
  readonly code: string
  readonly body: string
  readonly retryAfterS: number | undefined
}

export function describeError(err: unknown): ErrorReply {
  if (err instanceof GatewayError) {
    return {
      status: statusOf(err.code),
      code: err.code,
      body: JSON.stringify({ error: err.publicMessage }),
      retryAfterS: err.retryAfterS,
    }
  }
  if (err instanceof RedisReplyError) {
    return { status: 400, code: 'REDIS', body: JSON.stringify({ error: err.message }), retryAfterS: undefined }
  }
  return { status: 500, code: 'INTERNAL', body: '{"error":"INTERNAL unexpected gateway error"}', retryAfterS: undefined }
}

/** The headers an error reply needs beyond content-type and the sync token; null when none. */
export function errorHeaders(err: unknown, d: ErrorReply): Record<string, string> | null {
  let headers: Record<string, string> | null = null
  if (d.retryAfterS !== undefined) (headers ??= {})['retry-after'] = String(d.retryAfterS)
  if (err instanceof GatewayError && err.closeConnection) (headers ??= {}).connection = 'close'
  if (d.status === 401) (headers ??= {})['www-authenticate'] = 'Bearer'
  if (d.status === 405) (headers ??= {}).allow = (err as { allow?: string }).allow ?? 'GET, HEAD, POST, PUT, OPTIONS'
  return headers
}

export function errorResponse(err: unknown, c: Context, logger: Logger, d: ErrorReply = describeError(err)): Response {
  if (d.status === 500) logger.error({ err }, 'unexpected error while serving a request')
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    // Every reply carries a sync token; on errors, hand back what the client sent so it never regresses.
    'upstash-sync-token': c.req.header('upstash-sync-token') ?? '',
    ...errorHeaders(err, d),
  }
  return c.newResponse(d.body, d.status as 400, headers)
}
