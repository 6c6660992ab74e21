// Fuzzing the data plane's HTTP surface with generated requests:
// random paths (valid and invalid names, `..`, `%2F`, `%zz`, long and unicode segments, empty
// segments, groups), methods, headers (tokens, encodings, Accept, Content-Type, sync tokens,
// client ids), bodies (JSON of every type and depth, random bytes, truncated JSON, huge numbers,
// nested arrays, oversized), and commands drawn from real ones (including admin, refused and
// blocking ones) and random names, in the single, /pipeline, /multi-exec, path and SSE forms.
//
// Properties, for every response:
//   - the status is one the contract names (never 500), and the request ends (no hang: each has a
//     deadline; SSE streams are read up to their first event and then aborted on purpose); the
//     Redis behind is healthy, so 503 and 504 (allowed by the contract for failing endpoints)
//     count as failures too;
//   - the connection is not broken before a complete response (no crash);
//   - every non-SSE body is JSON: `{"result": ...}` / `{"error": "..."}` (a 200 from /pipeline or
//     /multi-exec: an array of those), and every error status carries `{"error": "..."}`;
//   - every response has an `upstash-sync-token` header.
// For subscribe requests, the Redis subscriptions a stream added are gone shortly after the
// client hung up.
// After the run the gateway still serves, the redis-server is back to the gateway's own
// connections (the subscriber connection closes once the SSE streams are gone), and the gateway
// holds no HTTP sockets once the client agent is closed.
//
// Deterministic: fixed seeds (FUZZ_SEED overrides), runs scaled by FUZZ_SCALE (default 1). The
// commands are real and write to a dedicated redis-server (keys `fz:*`; FLUSHALL with the admin
// token only empties this test's own server). Commands that would take the server down or change
// its configuration (SHUTDOWN, DEBUG SLEEP/SEGFAULT, CONFIG SET, CLIENT PAUSE, REPLICAOF host)
// are never generated, and numbers that would make Redis allocate huge values (SETBIT, SETRANGE
// offsets) are avoided: they would test Redis, not the gateway.

import { execFile } from 'node:child_process'
import http from 'node:http'
import { promisify } from 'node:util'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { rawRequest } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const run = promisify(execFile)

const SEED = Number(process.env['FUZZ_SEED'] ?? 20_240_604)
const SCALE = Number(process.env['FUZZ_SCALE'] ?? 1)
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE))

/** A non-SSE request must be answered within this (the command timeout is 2 s). */
const REQUEST_DEADLINE_MS = 5_000
/** An SSE stream is read for at most this long (or up to its first event), then aborted. */
const SSE_READ_MS = 400
const ALLOWED_STATUS = new Set([200, 204, 400, 401, 403, 404, 405, 408, 413, 431, 503, 504])

const LIMITED_TOKEN = 'test-limited-token'
const MAX_BODY = 64 * 1024
const MAX_HEADER = 16 * 1024

let redis: RedisServer
let gw: TestGateway
let port: number
let baselineClients: number
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })

// ---------------------------------------------------------------------------------------------
// Requests and what came back

interface GenRequest {
  /** 'http': node:http over a keep-alive agent (path made ASCII). 'raw': the exact bytes over a fresh socket. */
  readonly transport: 'http' | 'raw'
  readonly method: string
  /** Path and query, possibly with any characters (node:http gets them percent-encoded). */
  readonly target: string
  readonly headers: readonly (readonly [string, string])[]
  readonly body: Buffer | null
  /** node:http only: send the body in two writes (chunked transfer encoding). */
  readonly chunked: boolean
  /** raw only: the Host header (undefined: 127.0.0.1; null: none at all). */
  readonly host?: string | null
}

interface Observed {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly text: string
  readonly sse: boolean
  readonly ms: number
}

type Outcome = { readonly ok: true; readonly res: Observed } | { readonly ok: false; readonly error: string; readonly ms: number }

const stats = {
  requests: 0,
  sse: 0,
  raw: 0,
  byStatus: new Map<number, number>(),
  /** First word of each top-level error message (gateway code or Redis error prefix). */
  byError: new Map<string, number>(),
  /** A few 5xx replies, for the summary (the properties fail on them too: this Redis is healthy). */
  unavailable: [] as string[],
}

/** Percent-encodes whatever node:http refuses in a path (outside 0x21-0x7e), as UTF-8 bytes. */
function asciiTarget(target: string): string {
  let out = ''
  for (const ch of target) {
    const cp = ch.codePointAt(0)!
    if (cp >= 0x21 && cp <= 0x7e) out += ch
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

function sendHttp(r: GenRequest): Promise<Outcome> {
  const started = performance.now()
  const elapsed = (): number => Math.round(performance.now() - started)
  return new Promise((resolve) => {
    let settled = false
    const done = (o: Outcome): void => {
      if (!settled) {
        settled = true
        resolve(o)
      }
    }
    const headers: Record<string, string> = {}
    for (const [k, v] of r.headers) headers[k] = v
    // Frame the body explicitly: for GET, HEAD, DELETE and OPTIONS node:http would otherwise send
    // it with neither Content-Length nor chunked encoding, i.e. as the start of the next request.
    if (r.body !== null) {
      if (r.chunked) headers['Transfer-Encoding'] = 'chunked'
      else headers['Content-Length'] = String(r.body.length)
    }
    let req: http.ClientRequest
    try {
      req = http.request({
        host: '127.0.0.1',
        port,
        method: r.method,
        path: asciiTarget(r.target),
        headers,
        agent,
        signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
      })
    } catch (err) {
      // The generator made something node:http will not send: a bug in this test, not the gateway.
      throw new Error(`node:http refused the generated request: ${(err as Error).message}`)
    }
    req.on('error', (err: NodeJS.ErrnoException) => {
      const what = err.name === 'AbortError' ? `no response within ${REQUEST_DEADLINE_MS}ms` : `${err.code ?? ''} ${err.message}`
      done({ ok: false, error: `client error: ${what}`, ms: elapsed() })
    })
    req.on('response', (res) => {
      const base = { status: res.statusCode ?? 0, headers: res.headers }
      const chunks: Buffer[] = []
      res.on('error', () => {})
      if ((res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        // A live stream: read the first event (or give up after a short while) and hang up.
        const stop = (): void => {
          clearTimeout(timer)
          req.destroy()
          done({ ok: true, res: { ...base, text: Buffer.concat(chunks).toString('utf8'), sse: true, ms: elapsed() } })
        }
        const timer = setTimeout(stop, SSE_READ_MS)
        res.on('data', (c: Buffer) => {
          chunks.push(c)
          if (Buffer.concat(chunks).includes('\n\n')) stop()
        })
        res.on('end', stop)
        return
      }
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('aborted', () => done({ ok: false, error: 'response aborted before its end', ms: elapsed() }))
      res.on('end', () => done({ ok: true, res: { ...base, text: Buffer.concat(chunks).toString('utf8'), sse: false, ms: elapsed() } }))
    })
    if (r.body === null) req.end()
    else if (r.chunked) {
      const half = r.body.length >> 1
      req.write(r.body.subarray(0, half))
      req.end(r.body.subarray(half))
    } else req.end(r.body)
  })
}

async function sendRaw(r: GenRequest): Promise<Outcome> {
  const started = performance.now()
  const lines = [`${r.method} ${r.target} HTTP/1.1`, 'Connection: close']
  if (r.host !== null) lines.push(`Host: ${r.host ?? '127.0.0.1'}`)
  for (const [k, v] of r.headers) lines.push(`${k}: ${v}`)
  if (r.body !== null) lines.push(`Content-Length: ${r.body.length}`)
  const bytes = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), r.body ?? Buffer.alloc(0)])
  try {
    const res = await rawRequest(port, bytes, { timeoutMs: REQUEST_DEADLINE_MS })
    return { ok: true, res: { status: res.status, headers: res.headers, text: res.text, sse: false, ms: Math.round(performance.now() - started) } }
  } catch (err) {
    return { ok: false, error: `raw client error: ${(err as Error).message}`, ms: Math.round(performance.now() - started) }
  }
}

function send(r: GenRequest): Promise<Outcome> {
  stats.requests++
  if (r.transport === 'raw') stats.raw++
  return r.transport === 'raw' ? sendRaw(r) : sendHttp(r)
}

function isReplyObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Problems with one outcome against the properties; empty when it is fine. */
function problems(r: GenRequest, o: Outcome): string[] {
  if (!o.ok) return [o.error]
  const res = o.res
  stats.byStatus.set(res.status, (stats.byStatus.get(res.status) ?? 0) + 1)
  const out: string[] = []
  if (!ALLOWED_STATUS.has(res.status)) out.push(`status ${res.status} is not one the contract names`)
  // 503 and 504 are in the contract for failing endpoints; this Redis is healthy, local and never
  // given a slow command, so either one here is the gateway failing on its own.
  else if (res.status >= 500) out.push(`status ${res.status} although the redis-server is healthy`)
  if (typeof res.headers['upstash-sync-token'] !== 'string') out.push('no upstash-sync-token header')
  if (res.sse) {
    stats.sse++
    if (res.status !== 200) out.push(`event stream with status ${res.status}`)
    if (res.text.length > 0 && !/^data: p?subscribe,/.test(res.text)) out.push('first SSE event is not a subscribe confirmation')
    return out
  }
  if (r.method === 'HEAD') return out // no body by definition
  // OPTIONS (a CORS preflight) is answered 204 without a body, and only OPTIONS is (one the HTTP
  // parser refuses gets its JSON error like any request).
  if (res.status === 204) {
    if (r.method !== 'OPTIONS' || res.text !== '') out.push(`${r.method} answered 204 with ${res.text.length} body bytes`)
    return out
  }
  let json: unknown
  try {
    json = JSON.parse(res.text)
  } catch {
    out.push('body is not valid JSON')
    return out
  }
  if (res.status === 200) {
    const items = Array.isArray(json) ? json : [json]
    const batch = Array.isArray(json)
    if (batch && !/\/(pipeline|multi-exec)\/?(\?|$)/.test(r.target)) out.push('an array reply to a non-batch request')
    for (const item of items) {
      if (!isReplyObject(item) || !('result' in item || typeof item['error'] === 'string')) {
        out.push(`reply ${JSON.stringify(item)?.slice(0, 200)} has neither "result" nor a string "error"`)
        break
      }
    }
  } else if (!isReplyObject(json) || typeof json['error'] !== 'string') {
    out.push(`error status ${res.status} without a JSON {"error": "..."} body`)
  } else {
    const code = json['error'].split(' ')[0]!.slice(0, 20)
    stats.byError.set(code, (stats.byError.get(code) ?? 0) + 1)
    if (res.status >= 500 && stats.unavailable.length < 5) stats.unavailable.push(`${describeRequest(r)} -> ${describeOutcome(o)}`)
  }
  return out
}

function describeRequest(r: GenRequest): string {
  const body = r.body === null ? 'none' : JSON.stringify(r.body.toString('utf8').slice(0, 300)) + (r.body.length > 300 ? `... (${r.body.length} bytes)` : '')
  return `${r.transport} ${r.method} ${JSON.stringify(r.target.slice(0, 300))}${r.target.length > 300 ? `... (${r.target.length} chars)` : ''} headers=${JSON.stringify(r.headers.map(([k, v]) => [k, v.slice(0, 80)]))} body=${body}${r.chunked ? ' (chunked)' : ''}${r.host !== undefined ? ` host=${JSON.stringify(r.host)}` : ''}`
}

/** fast-check prints counterexamples with this: bounded, readable, and enough to replay. */
function printable(r: GenRequest): GenRequest {
  return Object.assign(r, { [fc.toStringMethod]: () => describeRequest(r) })
}

function describeOutcome(o: Outcome): string {
  if (!o.ok) return `${o.error} after ${o.ms}ms`
  const h = o.res.headers
  return `${o.res.status} in ${o.res.ms}ms content-type=${String(h['content-type'])} upstash-sync-token=${JSON.stringify(h['upstash-sync-token'])} body=${JSON.stringify(o.res.text.slice(0, 400))}`
}

/** Sends the requests concurrently; throws (for fast-check) with every violation found. */
async function check(reqs: readonly GenRequest[]): Promise<void> {
  const outcomes = await Promise.all(reqs.map(send))
  const failures: string[] = []
  reqs.forEach((r, i) => {
    const p = problems(r, outcomes[i]!)
    if (p.length > 0) failures.push(`${p.join('; ')}\n    request:  ${describeRequest(r)}\n    response: ${describeOutcome(outcomes[i]!)}`)
  })
  if (failures.length > 0) throw new Error(`property violated:\n  ${failures.join('\n  ')}`)
}

// ---------------------------------------------------------------------------------------------
// Generators

/** A JSON token written verbatim into a body (numbers JSON.parse cannot carry exactly, etc.). */
class Raw {
  constructor(readonly text: string) {}
  toJSON(): never {
    throw new Error('Raw is serialised by toJsonText')
  }
}
type Arg = string | number | boolean | null | Raw | Record<string, unknown> | unknown[]

function toJsonText(v: unknown): string {
  if (v instanceof Raw) return v.text
  if (Array.isArray(v)) return `[${v.map(toJsonText).join(',')}]`
  return JSON.stringify(v) ?? 'null'
}

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ weight, arbitrary })

const key = fc.constantFrom('fz:a', 'fz:b', 'fz:h', 'fz:l', 'fz:z', 'fz:s', 'fz:n', 'fz:ü', 'fz:', 'fz:{x}', 'fz:a b', 'fz:/x')
const text = fc.oneof(
  w(4, fc.string({ maxLength: 12 })),
  w(2, fc.constantFrom('', 'v', 'ü', 'ĉefa', '😀', '\u0000', '\r\n', 'OK', '1.5', '-0', '10', 'nan', ' ', '%', '%zz', '..', '+')),
  w(1, fc.string({ unit: 'binary', maxLength: 12 })),
  w(1, fc.integer({ min: -1000, max: 1000 }).map(String)),
)
/** Numbers that are valid arguments, and numbers the gateway must refuse (non-finite, beyond 2^53). */
const numberArg: fc.Arbitrary<Arg> = fc.oneof(
  w(8, fc.integer({ min: -100, max: 100 })),
  w(2, fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 })),
  w(
    1,
    fc.constantFrom(
      new Raw('1e400'),
      new Raw('-1e400'),
      new Raw('12345678901234567890'),
      new Raw('9007199254740993'),
      new Raw('1.5e300'),
      new Raw('1e-400'),
      new Raw('-0'),
      new Raw('0.1e1'),
      9007199254740991,
    ),
  ),
)
/** Any JSON argument: mostly strings (valid), sometimes other types (400 unless number/boolean). */
const jsonArg: fc.Arbitrary<Arg> = fc.oneof(
  w(30, text),
  w(6, numberArg),
  w(2, fc.boolean()),
  w(1, fc.constant(null)),
  w(1, fc.constantFrom<Arg>({}, [], { a: 1 }, ['x'], [[1]])),
)

interface CommandSpec {
  readonly name: string
  readonly args: fc.Arbitrary<Arg[]>
  /** Random extra arguments may be appended (false for commands whose arguments must stay fixed). */
  readonly extra: boolean
}

const fixed = (name: string, ...variants: Arg[][]): CommandSpec => ({ name, args: fc.constantFrom(...variants), extra: false })
const cmd = (name: string, args: fc.Arbitrary<Arg[]>): CommandSpec => ({ name, args, extra: true })
const t = <A extends unknown[]>(...a: { [K in keyof A]: fc.Arbitrary<A[K]> }): fc.Arbitrary<A> => fc.tuple(...a) as fc.Arbitrary<A>

const SCRIPTS = [
  'return 1',
  "return redis.call('SET', KEYS[1], ARGV[1])",
  "return redis.call('GET', KEYS[1])",
  'return {1, "a", {2, false}, nil}',
  "return redis.error_reply('FZ boom')",
  "return redis.status_reply('FINE')",
  'return 3.7',
  'return false',
  "return redis.call('LPOP', 'fz:l')",
  "return redis.call('NOSUCHCOMMAND')",
  'syntax error (',
]

const COMMANDS: CommandSpec[] = [
  cmd('GET', t(key)),
  cmd('SET', fc.oneof(t(key, jsonArg), t(key, text, fc.constantFrom('EX', 'PX', 'NX', 'XX', 'GET', 'KEEPTTL'), numberArg))),
  cmd('MSET', t(key, text, key, text)),
  cmd('MGET', t(key, key)),
  cmd('INCR', t(key)),
  cmd('INCRBY', t(key, numberArg)),
  cmd('DEL', t(key)),
  cmd('EXPIRE', t(key, numberArg)),
  cmd('TTL', t(key)),
  cmd('TYPE', t(key)),
  cmd('EXISTS', t(key)),
  cmd('HSET', fc.oneof(t(key, text, jsonArg), t(key, text, text, text, text))),
  cmd('HGETALL', t(key)),
  cmd('LPUSH', t(key, jsonArg, text)),
  cmd('LRANGE', t(key, numberArg, numberArg)),
  cmd('ZADD', t(key, numberArg, text)),
  cmd('ZRANGE', fc.oneof(t(key, fc.constant(0), fc.constant(-1)), t(key, fc.constant(0), fc.constant(-1), fc.constant('WITHSCORES')))),
  cmd('XADD', t(key, fc.constant('*'), text, text)),
  cmd('XRANGE', t(key, fc.constant('-'), fc.constant('+'))),
  cmd('XREAD', fc.oneof(t(fc.constant('STREAMS'), key, fc.constant('0')), t(fc.constant('BLOCK'), fc.constant(0), fc.constant('STREAMS'), key, fc.constant('$')))),
  cmd('PUBLISH', t(fc.constantFrom('fz:ch', 'fz:chan'), text)),
  cmd('ECHO', t(jsonArg)),
  fixed('PING', [], ['hello']),
  fixed('TIME', []),
  fixed('DBSIZE', []),
  cmd('EVAL', fc.oneof(t(fc.constantFrom(...SCRIPTS), fc.constant(1), key, text), t(fc.constantFrom(...SCRIPTS), numberArg))),
  cmd('EVAL_RO', t(fc.constantFrom(...SCRIPTS), fc.constant(1), key)),
  cmd('EVALSHA', t(fc.constantFrom('e0e1f9fabfc9d4800c877a703b823ac0578ff8db', 'nosuchsha'), fc.constant(0))),
  fixed('SCRIPT', ['LOAD', 'return 1'], ['EXISTS', 'e0e1f9fabfc9d4800c877a703b823ac0578ff8db'], ['FLUSH'], ['KILL'], ['DEBUG', 'YES']),
  fixed('FUNCTION', ['LIST'], ['FLUSH'], ['KILL'], ['DELETE', 'fzlib'], ['STATS']),
  // Refused on a shared connection (400) whatever the arguments.
  fixed('MULTI', []),
  fixed('EXEC', []),
  fixed('DISCARD', []),
  fixed('WATCH', ['fz:a']),
  fixed('SUBSCRIBE', ['fz:ch']),
  fixed('PSUBSCRIBE', ['fz:*']),
  fixed('UNSUBSCRIBE', []),
  fixed('BLPOP', ['fz:l', 0]),
  fixed('BZPOPMIN', ['fz:z', 0]),
  fixed('WAIT', [0, 0]),
  fixed('SELECT', [1]),
  fixed('AUTH', ['x']),
  fixed('HELLO', [3]),
  fixed('QUIT', []),
  fixed('RESET', []),
  fixed('MONITOR', []),
  fixed('SYNC', []),
  fixed('PSYNC', ['?', -1]),
  // Admin-only (403 below admin); arguments chosen so they cannot take the server down.
  fixed('FLUSHALL', [], ['ASYNC'], ['SYNC']),
  fixed('FLUSHDB', []),
  fixed('CONFIG', ['GET', 'maxmemory'], ['RESETSTAT'], ['GET'], ['HELP']),
  fixed('KEYS', ['fz:*'], ['*']),
  fixed('CLIENT', ['LIST'], ['ID'], ['GETNAME'], ['KILL', 'ID', '999999'], ['NO-EVICT', 'on'], ['REPLY', 'OFF'], ['SETNAME', 'x'], ['TRACKING', 'on']),
  fixed('DEBUG', ['HELP'], ['fz-nosuch']),
  fixed('ACL', ['WHOAMI'], ['LIST']),
  fixed('SAVE', []),
  fixed('REPLICAOF', ['NO', 'ONE']),
  fixed('CLUSTER', ['INFO']),
  fixed('MIGRATE', []),
  fixed('FAILOVER', ['ABORT']),
  fixed('MODULE', ['LIST']),
  fixed('SLOWLOG', ['LEN']),
  // Writes without the readonly flag, containers.
  fixed('INFO', [], ['server']),
  fixed('ROLE', []),
  cmd('OBJECT', t(fc.constantFrom('ENCODING', 'FREQ', 'HELP'), key)),
  cmd('MEMORY', t(fc.constant('USAGE'), key)),
  fixed('COMMAND', ['COUNT'], ['INFO', 'get'], ['GETKEYS', 'get', 'fz:a']),
]

/** Names no Redis knows, odd spellings of real ones, and look-alikes. */
const randomName: fc.Arbitrary<string> = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.constantFrom('', ' ', 'get ', 'GeT', 'gеt' /* Cyrillic e */, 'x'.repeat(200), 'SET\u0000', 'pipeline', 'multi-exec', '..', '%2F'),
)

const command: fc.Arbitrary<Arg[]> = fc.oneof(
  w(
    8,
    fc
      .tuple(fc.constantFrom(...COMMANDS), fc.constantFrom<'upper' | 'lower' | 'mixed'>('upper', 'lower', 'mixed'))
      .chain(([spec, casing]) => {
        const name = casing === 'upper' ? spec.name : casing === 'lower' ? spec.name.toLowerCase() : spec.name[0]!.toLowerCase() + spec.name.slice(1)
        const extra = spec.extra ? fc.array(jsonArg, { maxLength: 2 }) : fc.constant<Arg[]>([])
        return fc.tuple(spec.args, extra).map(([args, more]): Arg[] => [name, ...args, ...more])
      }),
  ),
  w(2, fc.tuple(randomName, fc.array(jsonArg, { maxLength: 3 })).map(([n, args]): Arg[] => [n, ...args])),
  w(1, fc.constantFrom<Arg[]>([], [''], [null], [1, 2], [['GET', 'fz:a']], [{ cmd: 'GET' }])),
)

/** A JSON value of any type and depth (fast-check's own), serialised as text. */
const anyJson = fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v))

const bodyText: fc.Arbitrary<string | Buffer | null> = fc.oneof(
  w(2, fc.constant(null)),
  w(10, command.map(toJsonText)),
  w(5, fc.array(command, { minLength: 1, maxLength: 5 }).map(toJsonText)),
  w(2, anyJson),
  w(1, fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a))),
  w(
    2,
    fc.tuple(command.map(toJsonText), fc.nat()).map(([s, n]) => s.slice(0, s.length > 1 ? n % (s.length - 1) : 0)),
  ),
  w(
    1,
    fc.constantFrom(
      '',
      ' ',
      '[]',
      '[[]]',
      '{}',
      'null',
      '"GET"',
      '1e400',
      '["GET"]',
      '["SET","fz:n",1e400]',
      '[["INCRBY","fz:n",12345678901234567890]]',
      '["GET","fz:a",]',
      '\uFEFF["PING"]',
      '["PING"]\u0000',
      '["PI\\u0000NG"]',
      '["GET","\\ud800"]',
    ),
  ),
  w(1, fc.integer({ min: 1, max: 4000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`)),
  w(1, fc.integer({ min: 1, max: 300 }).map((n) => `[${Array.from({ length: n }, () => '["PING"]').join(',')}]`)),
  // Over the 64 KiB limit (413), and just under it.
  w(1, fc.constantFrom(MAX_BODY + 1, MAX_BODY + 4096, MAX_BODY - 64).map((n) => `["SET","fz:big","${'x'.repeat(n - 20)}"]`)),
)

const TOKENS = [ADMIN_TOKEN, WRITE_TOKEN, READ_TOKEN, LIMITED_TOKEN]
const garbage = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 })

const authorization = fc.option(
  fc.oneof(
    w(10, fc.constantFrom(...TOKENS).map((tok) => `Bearer ${tok}`)),
    w(2, fc.constantFrom(...TOKENS).map((tok) => `bearer   ${tok} `)),
    w(1, fc.constantFrom('Bearer wrong', 'Bearer', 'Bearer ', 'Basic dGVzdDp0ZXN0', `Bearer ${ADMIN_TOKEN} extra`, `Token ${ADMIN_TOKEN}`, '', `Bearer ${'x'.repeat(5000)}`)),
    w(1, garbage),
  ),
  { freq: 6 },
)

const syncToken = fc.oneof(
  fc.constantFrom('', 'rg1:', 'rg1:main:0:0:0', 'rg1:main:zz:1:0', 'rg1:other:0:5:0', 'rg1:main:abc:9999999999999999:0', 'rg1:g1:0:1:x', 'rg1:main:0:-1:0'),
  fc.tuple(fc.constantFrom('main', 'g1', 'nosuch'), fc.stringMatching(/^[0-9a-f]{1,40}$/), fc.bigInt({ min: 0n, max: 10n ** 17n })).map(
    ([i, r, o]) => `rg1:${i}:${r}:${o}:0`,
  ),
  garbage,
)

const headerSet: fc.Arbitrary<[string, string][]> = fc
  .record({
    authorization,
    encoding: fc.option(fc.oneof(fc.constantFrom('base64', 'BASE64', 'Base64', 'utf8', 'gzip', ''), garbage), { freq: 2 }),
    accept: fc.option(fc.constantFrom('text/event-stream', 'application/json', '*/*', 'text/event-stream;q=0.5, */*', 'text/html'), { freq: 2 }),
    contentType: fc.option(
      fc.oneof(fc.constantFrom('application/json', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded'), garbage),
      { freq: 2 },
    ),
    sync: fc.option(syncToken, { freq: 3 }),
    clientId: fc.option(fc.oneof(garbage, fc.constantFrom('', 'c1', 'x'.repeat(3000))), { freq: 3 }),
  })
  .map((h) => {
    const out: [string, string][] = []
    if (h.authorization !== null) out.push(['Authorization', h.authorization])
    if (h.encoding !== null) out.push(['Upstash-Encoding', h.encoding])
    if (h.accept !== null) out.push(['Accept', h.accept])
    if (h.contentType !== null) out.push(['Content-Type', h.contentType])
    if (h.sync !== null) out.push(['upstash-sync-token', h.sync])
    if (h.clientId !== null) out.push(['x-client-id', h.clientId])
    return out
  })

const instanceName = fc.oneof(
  w(20, fc.constant('main')),
  w(4, fc.constant('g1')),
  w(
    4,
    fc.constantFrom('nosuch', 'other-x', 'MAIN', '', '..', '.', '%2e%2e', 'main%2F..', 'main%2Fpipeline', '%zz', '%', 'm%61in', 'main..', 'a'.repeat(64), 'ĉefa', '😀', 'main%00', 'main;x', 'g1%20'),
  ),
  w(1, fc.string({ maxLength: 20 })),
  w(1, fc.constant('a'.repeat(MAX_HEADER + 100))),
)

const prefix = fc.oneof(
  w(20, fc.constant('/v1/instances/')),
  w(5, fc.constant('/v1/groups/')),
  w(2, fc.constantFrom('/', '', '/v1/', '/v1/instances', '/v2/instances/', '//v1/instances/', '/v1/instances/../groups/', '/V1/INSTANCES/', '/v1/%69nstances/', '/v1/instances//', '/v1/groups/../instances/', 'http://127.0.0.1/v1/instances/', 'http://evil.example/v1/instances/', '*')),
)

/** One path segment (already in its final, possibly encoded, form). */
function segment(s: string, how: 'uri' | 'raw' | 'double'): string {
  if (how === 'raw') return s
  if (how === 'uri') return encodeURIComponent(s)
  return encodeURIComponent(encodeURIComponent(s))
}
const encoding = fc.constantFrom<'uri' | 'raw' | 'double'>('uri', 'uri', 'uri', 'raw', 'double')
const junkSegment = fc.oneof(
  fc.constantFrom('', '..', '.', '%2F', '%2f', '%zz', '%', '%00', '%E2%82', '%C0%AF', 'x'.repeat(2000), 'ü', '😀', ';', '@', ':', '*'),
  fc.string({ maxLength: 10 }),
)

const pathForm = fc
  .tuple(command, fc.array(encoding, { minLength: 8, maxLength: 8 }), fc.option(fc.tuple(fc.nat(6), junkSegment), { freq: 4 }))
  .map(([c, how, junk]) => {
    const segs = c.map((a, i) => segment(a instanceof Raw ? a.text : typeof a === 'string' ? a : JSON.stringify(a) ?? 'null', how[i % how.length]!))
    if (junk !== null) segs.splice(Math.min(junk[0], segs.length), 0, junk[1])
    return `/${segs.join('/')}`
  })

const channel = fc.oneof(fc.constantFrom('fz:ch', 'fz:chan', 'fz:*', 'fz:?', '', 'ü', '%zz', '%2F', 'a b'), fc.string({ maxLength: 8 }))
const suffix = fc.oneof(
  w(8, fc.constant('')),
  w(6, fc.constantFrom('/pipeline', '/multi-exec')),
  w(1, fc.constantFrom('/', '/PIPELINE', '/Multi-Exec', '/pipeline/x', '/multi-exec/', '/pipeline/', '//')),
  w(8, pathForm),
  w(
    2,
    fc
      .tuple(fc.constantFrom('subscribe', 'psubscribe', 'SUBSCRIBE', 'PSubscribe'), fc.array(channel, { maxLength: 3 }), encoding)
      .map(([kind, chans, how]) => `/${[kind, ...chans.map((c) => segment(c, how))].join('/')}`),
  ),
  w(1, fc.array(junkSegment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`)),
)

const queryPair = fc.oneof(
  w(4, fc.constantFrom(...TOKENS, 'wrong', '', 'a+b').map((v) => `_token=${v}`)),
  w(4, fc.tuple(fc.constantFrom('EX', 'fz:q', 'a', 'WITHSCORES', '', '+', 'ü', '%20', '_TOKEN'), fc.constantFrom('', '10', 'v', 'a+b', '%2F', '==')).map(([k, v]) => `${k}=${v}`)),
  // Invalid percent-encodings (400) and odd shapes.
  w(1, fc.constantFrom('_token=%zz', 'k%zz=v', 'k=%', '', '=', '&', 'flag', '_token', '%')),
)
const query = fc.option(
  fc.array(queryPair, { minLength: 1, maxLength: 3 }).map((p) => `?${p.join('&')}`),
  { freq: 3 },
)

const method = fc.oneof(
  w(12, fc.constant('POST')),
  w(6, fc.constant('GET')),
  w(1, fc.constantFrom('PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD')),
)

function finish(p: {
  transport: 'http' | 'raw'
  method: string
  target: string
  headers: [string, string][]
  body: string | Buffer | null
  chunked: boolean
}): GenRequest {
  const sse = p.headers.some(([k, v]) => k === 'Accept' && v.includes('text/event-stream'))
  return printable({
    // SSE replies are streams and HEAD replies have no body: both need node:http to parse them.
    transport: sse || p.method === 'HEAD' ? 'http' : p.transport,
    method: p.method,
    target: p.target,
    headers: p.headers,
    body: p.body === null ? null : Buffer.isBuffer(p.body) ? p.body : Buffer.from(p.body, 'utf8'),
    chunked: p.chunked,
  })
}

const transport = fc.constantFrom<'http' | 'raw'>('http', 'http', 'http', 'http', 'raw')

/** Anything goes: every part drawn independently (most of these fail early: 401/404/405/400). */
const hostHeader = fc.option(
  fc.oneof(
    fc.constant(null),
    fc.constantFrom('', 'localhost', '127.0.0.1:1', 'a b', 'x:99999', '[::1]', 'ex%41mple.com', 'user@host', '127.0.0.1, evil', 'ü.example', 'a/b'),
  ),
  { freq: 4 },
)

const chaoticRequest: fc.Arbitrary<GenRequest> = fc
  .record({ transport, method, prefix, name: instanceName, suffix, query, headers: headerSet, body: bodyText, chunked: fc.boolean(), host: hostHeader })
  .map((p) => {
    const r = finish({ ...p, target: `${p.prefix}${p.name}${p.suffix}${p.query ?? ''}` })
    return r.transport === 'raw' && p.host !== null ? printable({ ...r, host: p.host }) : r
  })

/** Well-formed enough to reach Redis: a real base URL, the method and body its form expects, a
 *  token that may use it; encoding, sync token, client id and query still vary. */
const coherentRequest: fc.Arbitrary<GenRequest> = fc
  .record({
    transport,
    base: fc.constantFrom('/v1/instances/main', '/v1/instances/main', '/v1/groups/g1'),
    form: fc.oneof(
      w(4, command.map((c) => ({ suffix: '', method: 'POST', body: toJsonText(c) as string | null }))),
      w(
        3,
        fc
          .tuple(fc.constantFrom('/pipeline', '/multi-exec'), fc.array(command, { minLength: 1, maxLength: 6 }))
          .map(([suffix, cs]) => ({ suffix, method: 'POST', body: toJsonText(cs) as string | null })),
      ),
      w(
        3,
        fc
          .tuple(pathForm, fc.option(text, { freq: 3 }))
          .map(([suffix, body]) => ({ suffix, method: body === null ? 'GET' : 'POST', body })),
      ),
    ),
    token: fc.constantFrom(ADMIN_TOKEN, ADMIN_TOKEN, WRITE_TOKEN, WRITE_TOKEN, READ_TOKEN),
    tokenInQuery: fc.boolean(),
    query: fc.option(fc.array(queryPair, { minLength: 1, maxLength: 2 }), { freq: 4 }),
    encoding: fc.option(fc.constantFrom('base64', 'base64', 'BASE64', 'utf8'), { freq: 2 }),
    sync: fc.option(syncToken, { freq: 3 }),
    clientId: fc.option(fc.constantFrom('c1', 'c2', ''), { freq: 3 }),
    chunked: fc.boolean(),
  })
  .map((p) => {
    const headers: [string, string][] = [['Content-Type', 'application/json']]
    if (!p.tokenInQuery) headers.push(['Authorization', `Bearer ${p.token}`])
    if (p.encoding !== null) headers.push(['Upstash-Encoding', p.encoding])
    if (p.sync !== null) headers.push(['upstash-sync-token', p.sync])
    if (p.clientId !== null) headers.push(['x-client-id', p.clientId])
    const q = [...(p.tokenInQuery ? [`_token=${p.token}`] : []), ...(p.query ?? [])]
    return finish({
      transport: p.transport,
      method: p.form.method,
      target: `${p.base}${p.form.suffix}${q.length > 0 ? `?${q.join('&')}` : ''}`,
      headers,
      body: p.form.body,
      chunked: p.chunked,
    })
  })

const request: fc.Arbitrary<GenRequest> = fc.oneof(w(3, coherentRequest), w(2, chaoticRequest))

const RUN_MARK = '@@'
let sseRun = 0

/** SSE-focused requests: valid subscribe URLs, mostly with a good token and the right Accept. */
const sseRequest: fc.Arbitrary<GenRequest> = fc
  .record({
    method: fc.constantFrom('POST', 'GET', 'GET', 'HEAD', 'PUT'),
    name: fc.constantFrom('main', 'main', 'g1', 'nosuch'),
    kind: fc.constantFrom('subscribe', 'psubscribe'),
    chans: fc.array(channel, { maxLength: 3 }),
    how: encoding,
    token: fc.constantFrom(...TOKENS, 'wrong'),
    viaQuery: fc.boolean(),
    accept: fc.constantFrom('text/event-stream', 'text/event-stream', 'application/json'),
    sync: fc.option(syncToken, { freq: 3 }),
    // The gateway does not need a subscribe request's body; a large one must not keep the stream alive.
    body: fc.option(fc.oneof(fc.constantFrom('', 'x', '["SUBSCRIBE","fz:ch"]'), fc.constantFrom(1_000, 40_000, MAX_BODY - 1).map((n) => 'x'.repeat(n))), {
      freq: 3,
    }),
    chunked: fc.boolean(),
  })
  .map((p): GenRequest => {
    const headers: [string, string][] = [['Accept', p.accept]]
    if (!p.viaQuery) headers.push(['Authorization', `Bearer ${p.token}`])
    if (p.sync !== null) headers.push(['upstash-sync-token', p.sync])
    // RUN_MARK is replaced by a per-run prefix when sent, so each run (and each shrinking attempt)
    // subscribes to names of its own and a leak is blamed on the run that caused it.
    const path = `/v1/${p.name === 'g1' ? 'groups' : 'instances'}/${p.name}/${[p.kind, ...p.chans.map((c) => RUN_MARK + segment(c, p.how))].join('/')}`
    return printable({
      transport: 'http',
      method: p.method,
      target: `${path}${p.viaQuery ? `?_token=${p.token}` : ''}`,
      headers,
      body: p.body === null ? null : Buffer.from(p.body),
      chunked: p.chunked,
    })
  })

// ---------------------------------------------------------------------------------------------
// Helpers for the after-run checks

/** Connections of the gateway's own user (and ours); the token-level users' are checked apart. */
async function connectedClients(): Promise<number> {
  return (await redis.gatewayConnections()).own
}

/** Channels and the number of patterns subscribed in the fuzz's redis-server. */
async function subscriptions(): Promise<{ channels: string[]; patterns: number }> {
  const direct = redis.client()
  try {
    const channels = (await direct.pubsub('CHANNELS')) as string[]
    const patterns = Number(await direct.call('PUBSUB', 'NUMPAT'))
    return { channels, patterns }
  } finally {
    direct.disconnect()
  }
}

/** CLIENT LIST of the fuzz's redis-server, for failure messages (without the helper's own connection). */
async function clientList(): Promise<string> {
  const direct = redis.client()
  try {
    const id = await direct.client('ID')
    const list = (await direct.client('LIST')) as string
    return list
      .split('\n')
      .filter((l) => l.length > 0 && !l.startsWith(`id=${id} `))
      .join('\n')
  } finally {
    direct.disconnect()
  }
}

/** Established TCP connections whose local port is the gateway's data port. */
async function establishedOnDataPort(): Promise<string[]> {
  const { stdout } = await run('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`])
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
}

/** One request on its own connection (closed after the reply), so it leaves no socket behind. */
function plain(method: string, path: string, body?: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${WRITE_TOKEN}` }
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers, agent: false, signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', reject)
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) })
          } catch (err) {
            reject(err as Error)
          }
        })
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

async function setGet(value: string): Promise<void> {
  expect(await plain('POST', '/v1/instances/main', JSON.stringify(['SET', 'fz:alive', value]))).toEqual({ status: 200, json: { result: 'OK' } })
  expect(await plain('GET', '/v1/instances/main/get/fz:alive')).toEqual({ status: 200, json: { result: value } })
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({
    instances: [{ name: 'main', endpoints: [redis.url], annotations: { 'redis-gateway.io/groups': 'g1' } }],
    groups: { g1: { strategy: 'round-robin' } },
    tokens: [{ name: 'limited', token: LIMITED_TOKEN, access: 'write', targets: ['other-*'] }],
    extra: { limits: { maxBody: `${MAX_BODY}B`, maxHeader: `${MAX_HEADER}B` } },
  })
  port = gw.gateway.dataAddress.port
  // Warm-up: the gateway's connections to Redis are up once a request went through.
  await waitFor(() => setGet('warm'), { message: 'gateway serving' })
  baselineClients = await connectedClients()
})

afterAll(async () => {
  agent.destroy()
  await gw?.stop()
  await redis?.stop()
})

// Inputs that once broke a property, run before the generated ones whatever the seed.
const ex = (r: Partial<GenRequest> & Pick<GenRequest, 'method' | 'target'>): GenRequest =>
  printable({ transport: 'http', headers: [], body: null, chunked: false, ...r })
const REGRESSIONS: GenRequest[][] = [
  // The HTTP adapter could not build a Request (backslash in the path, bad Host, no leading
  // slash) and answered an empty 400 without a sync token.
  [ex({ method: 'GET', target: '/v1/instances/main/\\/', body: Buffer.from('["GET","fz:a"]') })],
  [ex({ transport: 'raw', method: 'GET', target: '/v1/instances/g1/', host: 'a/b' })],
  [ex({ method: 'POST', target: '*main/pipeline', body: Buffer.from('[[" "]]') })],
  // HEAD answered by the HTTP parser's error handler (431, or 400 for a bad request target).
  [ex({ method: 'HEAD', target: `/v1/instances/${'a'.repeat(MAX_HEADER + 100)}` })],
  [ex({ method: 'HEAD', target: 'main' })],
]
const SSE_REGRESSIONS: GenRequest[][] = [
  // A subscribe whose body was never read: the client's hang-up went unnoticed.
  [ex({ method: 'POST', target: `/v1/instances/main/subscribe/${RUN_MARK}`, headers: [['Accept', 'text/event-stream'], ['Authorization', `Bearer ${ADMIN_TOKEN}`]], body: Buffer.from('x'.repeat(MAX_BODY - 1)) })],
  // Streams opening together while the subscriber connection connects.
  [
    ex({ method: 'POST', target: `/v1/instances/main/subscribe/${RUN_MARK}a`, headers: [['Accept', 'text/event-stream'], ['Authorization', `Bearer ${ADMIN_TOKEN}`]] }),
    ex({ method: 'GET', target: `/v1/instances/main/psubscribe/${RUN_MARK}b*/${RUN_MARK}c`, headers: [['Accept', 'text/event-stream'], ['Authorization', `Bearer ${ADMIN_TOKEN}`]] }),
    ex({ method: 'GET', target: `/v1/groups/g1/subscribe/${RUN_MARK}d/${RUN_MARK}e`, headers: [['Accept', 'text/event-stream'], ['Authorization', `Bearer ${READ_TOKEN}`]] }),
  ],
]

describe('HTTP fuzz', () => {
  test('generated requests, a few at a time: allowed statuses, JSON bodies, sync-token headers, no hang', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 3 }), (reqs) => check(reqs)),
      { seed: SEED, numRuns: runs(6000), examples: REGRESSIONS.map((reqs) => [reqs]) },
    )
    expect(stats.requests).toBeGreaterThan(runs(6000))
  })

  test('subscribe requests: event streams open and end, errors are JSON', { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(sseRequest, { minLength: 1, maxLength: 3 }), async (reqs) => {
        const mark = `fz${++sseRun}.`
        const before = await subscriptions()
        await check(reqs.map((r) => printable({ ...r, target: r.target.replaceAll(RUN_MARK, mark) })))
        // Every stream was aborted by now: the Redis subscriptions it added must go with it.
        // Compared with the state before this run, so a subscription left by an earlier run (while
        // shrinking) is not blamed on this one.
        await waitFor(
          async () => {
            const after = await subscriptions()
            const added = after.channels.filter((c) => !before.channels.includes(c))
            if (added.length > 0 || after.patterns > before.patterns) {
              throw new Error(`still subscribed in Redis: channels ${JSON.stringify(added)}, patterns ${after.patterns - before.patterns}`)
            }
          },
          { timeoutMs: 2_000, intervalMs: 20, message: 'the subscriptions of the aborted streams to end' },
        )
      }),
      { seed: SEED + 1, numRuns: runs(400), examples: SSE_REGRESSIONS.map((reqs) => [reqs]) },
    )
  })

  test('the gateway still serves, and nothing leaked', { timeout: 60_000 }, async () => {
    console.log(
      `fuzz: ${stats.requests} requests (${stats.raw} raw, ${stats.sse} event streams); statuses ${JSON.stringify(Object.fromEntries([...stats.byStatus].sort((a, b) => a[0] - b[0])))}; errors ${JSON.stringify(Object.fromEntries([...stats.byError].sort((a, b) => b[1] - a[1])))}${stats.unavailable.map((u) => `\n  5xx: ${u}`).join('')}`,
    )
    await setGet('after-fuzz')
    // The subscriber connection closes once the last stream is gone.
    await waitFor(async () => expect(await connectedClients(), await clientList()).toBe(baselineClients), {
      message: `redis connected_clients back to the gateway's baseline of ${baselineClients}`,
    })
    // At most one connection per token-level user, and no subscriber once the streams are gone.
    await waitFor(async () => expect((await redis.gatewayConnections()).subscribers, await clientList()).toBe(0))
    for (const n of Object.values((await redis.gatewayConnections()).levels)) expect(n).toBe(1)
    agent.destroy()
    await waitFor(async () => expect(await establishedOnDataPort()).toEqual([]), {
      message: 'no established connections on the gateway data port',
    })
  })
})
