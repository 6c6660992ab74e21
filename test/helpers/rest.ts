// Commands sent to the gateway's REST data plane the way an Upstash client sends them: a POST of
// the JSON command (or pipeline / transaction) to the instance's URL with a bearer token.

import { WRITE_TOKEN } from './gateway.js'

/**
 * A reply body: `{result}` or `{error}` for one command, an array of those for a pipeline or a
 * transaction. Typed as both, so a test reads `r.json.error` or `r.json[1]?.result` as it needs.
 */
export type ReplyBody = { result?: unknown; error?: string } & { result?: unknown; error?: string }[]

export interface PostOptions {
  /** Bearer token; null sends no Authorization header. Default WRITE_TOKEN. */
  token?: string | null
  /** More request headers (e.g. `upstash-encoding`). */
  headers?: Record<string, string>
  /** Abort the request after this long. Default: no limit but the test's own timeout. */
  timeoutMs?: number
}

export interface RestReply {
  readonly status: number
  readonly headers: Headers
  /** The body as received. */
  readonly text: string
  /** The body parsed as JSON; undefined when it is not JSON. */
  readonly json: unknown
}

/** POSTs `body` as JSON to `url`; the reply's body need not be JSON (see `json`). */
export async function post(url: string, body: unknown, opts: PostOptions = {}): Promise<RestReply> {
  const token = opts.token === undefined ? WRITE_TOKEN : opts.token
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...(token !== null ? { authorization: `Bearer ${token}` } : {}), ...opts.headers },
    body: JSON.stringify(body),
    ...(opts.timeoutMs !== undefined ? { signal: AbortSignal.timeout(opts.timeoutMs) } : {}),
  })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // Not JSON: `text` has it.
  }
  return { status: res.status, headers: res.headers, text, json }
}

/** Status and body only, so a test can compare a whole reply: `expect(await call(...)).toEqual({ status: 200, json: { result: 1 } })`. */
export interface CommandReply {
  readonly status: number
  readonly json: ReplyBody
}

/**
 * POSTs a command (or a pipeline / transaction body) to `url` with `token`. Every gateway reply
 * is JSON, so one that is not fails the call, naming what came instead.
 */
export async function call(url: string, token: string, body: unknown, opts: Omit<PostOptions, 'token'> = {}): Promise<CommandReply> {
  const reply = await post(url, body, { ...opts, token })
  if (reply.json === undefined) {
    throw new Error(`POST ${url}: HTTP ${reply.status} with a body that is not JSON: ${reply.text.slice(0, 300)}`)
  }
  return { status: reply.status, json: reply.json as ReplyBody }
}
