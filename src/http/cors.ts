// CORS on the data port: browsers are Upstash clients too (a web app with a read-only token, the
// SDK's fetch). Every reply of the data port carries the policy's headers (success, errors, 401s,
// Server-Sent Events, the HTTP parser's own 400/408/431), and a preflight (OPTIONS) is answered with
// 204 without a token (browsers send none with it). `http.cors.origins` says who may read replies:
// ["*"] (the default: Upstash's REST API is called from any page) sends `*`; a list of origins echoes
// a listed Origin (with `Vary: Origin`), and sends nothing for others, so the browser refuses; []
// turns CORS off. Credentials (cookies) are never allowed: the token travels in Authorization or
// `_token`, which `*` permits.

/** Methods the data port serves (405 for the rest; see data-handler.ts). */
export const DATA_METHODS = 'GET, HEAD, POST, PUT, OPTIONS'

/**
 * Request headers a browser may send: those the SDK sends (Authorization, Content-Type,
 * Upstash-Encoding, upstash-sync-token, Upstash-Telemetry-*, and for subscriptions Accept and
 * Cache-Control), the documented Upstash-Response-Format, and trace context.
 */
const ALLOW_HEADERS = [
  'authorization',
  'content-type',
  'accept',
  'cache-control',
  'upstash-encoding',
  'upstash-response-format',
  'upstash-sync-token',
  'upstash-telemetry-runtime',
  'upstash-telemetry-platform',
  'upstash-telemetry-sdk',
  'upstash-telemetry-retry',
  'traceparent',
  'tracestate',
]

/** Response headers a page may read beyond the CORS-safelisted ones. */
const EXPOSE_HEADERS = 'upstash-sync-token, retry-after, www-authenticate'

/** How long a browser may cache a preflight (Chrome caps it at 2 h, Firefox at 24 h). */
const MAX_AGE_S = 86_400

export interface CorsPolicy {
  /** Whether the headers depend on the request's Origin (a list of origins). */
  readonly byOrigin: boolean
  /** Header lines (`name: value\r\n`) for a reply to a request with this Origin; '' for none. */
  lines(origin: string | undefined): string
  /** The same headers as [name, value] pairs (node:http replies). */
  headers(origin: string | undefined): readonly (readonly [string, string])[]
  /** The extra headers of a preflight's 204 (beyond `headers(origin)`); none when CORS is off. */
  preflight(origin: string | undefined): readonly (readonly [string, string])[]
}

/**
 * The policy for `origins` (already validated by the config schema: `*` alone, or origins as
 * `scheme://host[:port]`, lower-case), and the request header a client id travels in (sticky
 * routing), which browsers must be allowed to send too.
 */
export function corsPolicy(origins: readonly string[], clientIdHeader: string): CorsPolicy {
  const allowHeaders = [...new Set([...ALLOW_HEADERS, clientIdHeader.toLowerCase()])].join(', ')
  const preflight: (readonly [string, string])[] = [
    ['access-control-allow-methods', DATA_METHODS],
    ['access-control-allow-headers', allowHeaders],
    ['access-control-max-age', String(MAX_AGE_S)],
  ]
  const none: readonly (readonly [string, string])[] = []
  if (origins.length === 0) {
    return { byOrigin: false, lines: () => '', headers: () => none, preflight: () => none }
  }
  if (origins.includes('*')) {
    const pairs = [['access-control-allow-origin', '*'] as const, ['access-control-expose-headers', EXPOSE_HEADERS] as const]
    const text = toLines(pairs)
    return { byOrigin: false, lines: () => text, headers: () => pairs, preflight: () => preflight }
  }
  const allowed = new Set(origins)
  const vary = [['vary', 'origin'] as const]
  const varyText = toLines(vary)
  const byOrigin = new Map<string, { text: string; pairs: readonly (readonly [string, string])[] }>()
  for (const o of allowed) {
    const pairs = [['access-control-allow-origin', o] as const, ['access-control-expose-headers', EXPOSE_HEADERS] as const, ['vary', 'origin'] as const]
    byOrigin.set(o, { text: toLines(pairs), pairs })
  }
  return {
    byOrigin: true,
    lines: (origin) => (origin === undefined ? varyText : (byOrigin.get(origin)?.text ?? varyText)),
    headers: (origin) => (origin === undefined ? vary : (byOrigin.get(origin)?.pairs ?? vary)),
    preflight: (origin) => (origin !== undefined && allowed.has(origin) ? preflight : none),
  }
}

function toLines(pairs: readonly (readonly [string, string])[]): string {
  let s = ''
  for (const [k, v] of pairs) s += `${k}: ${v}\r\n`
  return s
}
