// The HTTP contract of the data plane (README "API"), checked over the wire: Node's fetch, and raw
// sockets where fetch cannot express a request (`..` in paths, hand-written chunked bodies).
// A real redis-server per gateway, started here; ioredis talks to it directly to check effects.

import { Buffer } from 'node:buffer'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { chunk, head, LAST_CHUNK, rawRequest } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const MAX_BODY = 4096

let redis: RedisServer
let gw: TestGateway
let direct: Redis
let base: string
let port: number
/** connected_clients on the main server after warm-up (gateway command connection + `direct`). */
let baselineClients: number

beforeAll(async () => {
  redis = await startRedis()
  const ep = [redis.url]
  gw = await startGateway({
    instances: [
      { name: 'main', endpoints: ep },
      { name: 'a-one', endpoints: ep },
      { name: 'drained', endpoints: ep, annotations: { 'redis-gateway.io/maintenance': 'drain' } },
      { name: 'ro', endpoints: ep, annotations: { 'redis-gateway.io/maintenance': 'read-only' } },
    ],
    tokens: [{ name: 'only-a', token: 'tok-a', access: 'write', targets: ['a-*'] }],
    extra: { limits: { maxBody: `${MAX_BODY}B` } },
  })
  base = gw.base('main')
  port = gw.gateway.dataAddress.port
  direct = redis.client()
  await direct.ping()
  // Warm-up: the gateway's command connection is up once a command went through.
  await waitFor(async () => (await cmd(['PING'])).status === 200, { message: 'gateway serving' })
  baselineClients = await connectedClients(redis)
})

afterAll(async () => {
  await gw?.stop()
  await redis?.stop()
})

// ---------------------------------------------------------------------------------------------
// helpers

interface Reply {
  status: number
  headers: Headers
  text: string
  /** Parsed JSON body (undefined if the body is not JSON). */
  json: any
}

interface CallOptions {
  method?: string
  body?: string | Uint8Array
  /** Bearer token; null = no Authorization header. Default WRITE_TOKEN. */
  token?: string | null
  headers?: Record<string, string>
}

async function call(url: string, o: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) }
  const token = o.token === undefined ? WRITE_TOKEN : o.token
  if (token !== null) headers.authorization = `Bearer ${token}`
  const res = await fetch(url, {
    method: o.method ?? (o.body === undefined ? 'GET' : 'POST'),
    headers,
    ...(o.body !== undefined ? { body: o.body } : {}),
  })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

/** POST {base} with a JSON command. */
function cmd(args: unknown[], o: Omit<CallOptions, 'body'> & { url?: string } = {}): Promise<Reply> {
  return call(o.url ?? base, { ...o, method: 'POST', body: JSON.stringify(args) })
}

const B64 = { 'upstash-encoding': 'base64' }
const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64')

/** Connections of the gateway's own user (and ours); the token-level users' are checked apart. */
async function connectedClients(server: RedisServer): Promise<number> {
  return (await server.gatewayConnections()).own
}

/** Expects a gateway-made error: status, JSON body `{"error": "<CODE> ..."}`, sync-token header. */
function expectGatewayError(r: Reply, status: number, prefix: string): void {
  expect({ status: r.status, body: r.json }, r.text).toMatchObject({ status, body: { error: expect.any(String) } })
  expect(r.json.error.startsWith(prefix), `error ${JSON.stringify(r.json.error)} should start with ${prefix}`).toBe(true)
  expect(r.headers.get('content-type')).toMatch(/^application\/json/)
  expect(r.headers.get('upstash-sync-token')).not.toBeNull()
}

// ---------------------------------------------------------------------------------------------

describe('request forms', () => {
  test('POST {base} with a JSON command: 200 {"result":"OK"}', async () => {
    const r = await cmd(['SET', 'f:k', 'v'])
    expect(r.status).toBe(200)
    expect(r.text).toBe('{"result":"OK"}')
    expect(r.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await direct.get('f:k')).toBe('v')
  })

  test('GET path form runs the command; command names are case-insensitive', async () => {
    const set = await call(`${base}/set/f:path/v1`)
    expect([set.status, set.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('f:path')).toBe('v1')
    const get = await call(`${base}/get/f:path`)
    expect([get.status, get.text]).toEqual([200, '{"result":"v1"}'])
    const mixed = await call(`${base}/GeT/f:path`)
    expect([mixed.status, mixed.text]).toEqual([200, '{"result":"v1"}'])
    // Percent-encoded path segments are decoded: a value with a slash and a space.
    await call(`${base}/set/f:enc/a%2Fb%20c`)
    expect(await direct.get('f:enc')).toBe('a/b c')
  })

  test('POST path form appends the raw body as the last argument', async () => {
    const value = 'body with spaces, "quotes", /slashes/ and ?query=chars\n'
    const r = await call(`${base}/set/f:body`, { method: 'POST', body: value })
    expect([r.status, r.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('f:body')).toBe(value)
  })

  test('POST path form with an empty body appends no argument (Upstash: POST /publish/chat/hello), on both HTTP paths', async () => {
    const sub = direct.duplicate()
    const got: string[] = []
    sub.on('message', (ch: string, msg: string) => got.push(`${ch}:${msg}`))
    await sub.subscribe('f:chat')
    try {
      // Content-Length: 0, served by the fast lane.
      const r = await call(`${base}/publish/f:chat/hello`, { method: 'POST', body: '' })
      expect([r.status, r.text]).toEqual([200, '{"result":1}'])
      // No body at all, chunked: node:http's path.
      const auth = { authorization: `Bearer ${WRITE_TOKEN}` }
      const n = await rawRequest(port, head('POST', '/v1/instances/main/publish/f:chat/again', { ...auth, 'transfer-encoding': 'chunked' }) + LAST_CHUNK)
      expect([n.status, n.text]).toEqual([200, '{"result":1}'])
      await waitFor(() => got.length === 2, { message: 'both messages arrive' })
      expect(got).toEqual(['f:chat:hello', 'f:chat:again'])
    } finally {
      sub.disconnect()
    }
    // So SET with only a key and an empty body is Redis's wrong-arity error, and the value in the
    // path is used as is.
    const e = await call(`${base}/set/f:empty`, { method: 'POST', body: '' })
    expect([e.status, e.json]).toEqual([400, { error: "ERR wrong number of arguments for 'set' command" }])
    const v = await call(`${base}/set/f:empty/v`, { method: 'POST', body: '' })
    expect([v.status, v.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('f:empty')).toBe('v')
  })

  test('query parameters other than _token are appended as KEY VALUE', async () => {
    const r = await call(`${base}/set/f:q/v?EX=100`)
    expect([r.status, r.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('f:q')).toBe('v')
    const ttl = await direct.ttl('f:q')
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(100)

    // POST: body first, then the query pairs: SET k <body> EX 100.
    const p = await call(`${base}/set/f:q2?EX=100`, { method: 'POST', body: 'from-body' })
    expect([p.status, p.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('f:q2')).toBe('from-body')
    expect(await direct.ttl('f:q2')).toBeGreaterThan(0)
  })

  test('?_token= authenticates and is not passed on as an argument', async () => {
    await direct.set('f:tok', 'tv')
    const r = await call(`${base}/get/f:tok?_token=${WRITE_TOKEN}`, { token: null })
    // GET with one extra argument would be a Redis arity error.
    expect([r.status, r.text]).toEqual([200, '{"result":"tv"}'])
    const c = await call(`${base}?_token=${WRITE_TOKEN}`, { token: null, method: 'POST', body: '["GET","f:tok"]' })
    expect([c.status, c.text]).toEqual([200, '{"result":"tv"}'])
    const bad = await call(`${base}/get/f:tok?_token=wrong`, { token: null })
    expect([bad.status, bad.text]).toEqual([401, '{"error":"Unauthorized"}'])
  })

  test('/pipeline: 200 with one item per command, in order, errors per item', async () => {
    await direct.del('f:p', 'f:pl')
    const r = await call(`${base}/pipeline`, {
      body: JSON.stringify([
        ['SET', 'f:p', 'v'],
        ['INCR', 'f:p'],
        ['LPUSH', 'f:pl', 'a'],
        ['GET', 'f:pl'],
        ['GET', 'f:p'],
        ['GET', 'f:nothing'],
      ]),
    })
    expect(r.status).toBe(200)
    expect(r.json).toEqual([
      { result: 'OK' },
      { error: 'ERR value is not an integer or out of range' },
      { result: 1 },
      { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' },
      { result: 'v' },
      { result: null },
    ])
    // `error` only on failed items, and no `result` on them (Upstash's shape: the SDK's
    // keepErrors results then have `result` undefined).
    expect(Object.keys(r.json[0])).toEqual(['result'])
    expect(Object.keys(r.json[1])).toEqual(['error'])
    expect(Object.keys(r.json[5])).toEqual(['result'])
  })

  test('/multi-exec: atomic, a results array', async () => {
    await direct.del('f:m')
    const r = await call(`${base}/multi-exec`, {
      body: JSON.stringify([
        ['SET', 'f:m', '1'],
        ['INCR', 'f:m'],
        ['GET', 'f:m'],
      ]),
    })
    expect(r.status).toBe(200)
    expect(r.json).toEqual([{ result: 'OK' }, { result: 2 }, { result: '2' }])
    expect(await direct.get('f:m')).toBe('2')
  })

  test('/multi-exec: a runtime error inside EXEC is a per-item error; the rest still applies', async () => {
    await direct.del('f:mr', 'f:mr2')
    const r = await call(`${base}/multi-exec`, {
      body: JSON.stringify([
        ['SET', 'f:mr', 'text'],
        ['INCR', 'f:mr'],
        ['SET', 'f:mr2', 'x'],
      ]),
    })
    expect(r.status).toBe(200)
    expect(r.json).toEqual([
      { result: 'OK' },
      { error: 'ERR value is not an integer or out of range' },
      { result: 'OK' },
    ])
    expect(await direct.get('f:mr2')).toBe('x')
  })

  test('/multi-exec aborted by a wrong-arity command: 400, one EXECABORT error, nothing applied', async () => {
    await direct.del('f:ma')
    const r = await call(`${base}/multi-exec`, {
      body: JSON.stringify([
        ['SET', 'f:ma', '1'],
        ['SET', 'f:ma'],
      ]),
    })
    expect(r.status, r.text).toBe(400)
    expect(Array.isArray(r.json)).toBe(false)
    expect(r.json.error).toMatch(/^EXECABORT /)
    expect(r.json.error).toContain("wrong number of arguments for 'set' command")
    expect(await direct.exists('f:ma')).toBe(0)
  })

  test('/multi-exec aborted by an unknown command: 400, one EXECABORT error, nothing applied', async () => {
    await direct.del('f:mu')
    const r = await call(`${base}/multi-exec`, {
      body: JSON.stringify([
        ['SET', 'f:mu', '1'],
        ['NOSUCHCMD', 'x'],
      ]),
    })
    expect(r.status, r.text).toBe(400)
    expect(Array.isArray(r.json)).toBe(false)
    expect(r.json.error).toContain("unknown command 'NOSUCHCMD'")
    expect(await direct.exists('f:mu')).toBe(0)
    // Redis's own word for an aborted transaction, as with the wrong-arity case.
    expect(r.json.error).toMatch(/^EXECABORT /)
  })

  test('numbers and booleans are sent as their text', async () => {
    expect((await cmd(['SET', 'f:num', 42])).text).toBe('{"result":"OK"}')
    expect(await direct.get('f:num')).toBe('42')
    await cmd(['SET', 'f:float', 1.5])
    expect(await direct.get('f:float')).toBe('1.5')
    await cmd(['SET', 'f:neg', -7])
    expect(await direct.get('f:neg')).toBe('-7')
    await cmd(['SET', 'f:t', true])
    await cmd(['SET', 'f:f', false])
    expect(await direct.mget('f:t', 'f:f')).toEqual(['true', 'false'])
    const r = await cmd(['INCRBY', 'f:num', 8])
    expect([r.status, r.text]).toEqual([200, '{"result":50}'])
    const ex = await cmd(['SET', 'f:ex', 'v', 'EX', 100])
    expect(ex.status).toBe(200)
    expect(await direct.ttl('f:ex')).toBeGreaterThan(0)
  })

  test('"result" is always present: null for a missing key, no "error" on success', async () => {
    const r = await cmd(['GET', 'f:missing'])
    expect([r.status, r.text]).toEqual([200, '{"result":null}'])
    const e = await cmd(['LRANGE', 'f:missing', 0, -1])
    expect(e.text).toBe('{"result":[]}')
  })

  test('a Redis error reply is 400 with Redis full message', async () => {
    await direct.del('f:list')
    await direct.lpush('f:list', 'a')
    const r = await cmd(['GET', 'f:list'])
    expect(r.status).toBe(400)
    expect(r.json).toEqual({ error: 'WRONGTYPE Operation against a key holding the wrong kind of value' })
    expect(r.headers.get('upstash-sync-token')).toBeTruthy()
    const s = await cmd(['SET', 'f:x', 'v', 'EX', 'soon'])
    expect(s.status).toBe(400)
    expect(s.json).toEqual({ error: 'ERR value is not an integer or out of range' })
    const a = await cmd(['GET'])
    expect(a.status).toBe(400)
    expect(a.json).toEqual({ error: "ERR wrong number of arguments for 'get' command" })
  })
})

describe('encoding', () => {
  test('Upstash-Encoding: base64 encodes bulk and status strings, keeps OK, numbers and null', async () => {
    const set = await cmd(['SET', 'e:k', 'hello'], { headers: B64 })
    expect(set.text).toBe('{"result":"OK"}')
    expect((await cmd(['GET', 'e:k'], { headers: B64 })).text).toBe(`{"result":"${b64('hello')}"}`)
    // Status replies other than OK are base64 too.
    expect((await cmd(['TYPE', 'e:k'], { headers: B64 })).text).toBe(`{"result":"${b64('string')}"}`)
    expect((await cmd(['PING'], { headers: B64 })).text).toBe(`{"result":"${b64('PONG')}"}`)
    // A bulk "OK" may come back as "OK" (RESP2 cannot tell it from the status): it decodes the same.
    await direct.set('e:ok', 'OK')
    expect(['OK', b64('OK')]).toContain((await cmd(['GET', 'e:ok'], { headers: B64 })).json.result)
    await direct.set('e:n', '41')
    expect((await cmd(['INCR', 'e:n'], { headers: B64 })).text).toBe('{"result":42}')
    expect((await cmd(['GET', 'e:none'], { headers: B64 })).text).toBe('{"result":null}')
    // Path form and pipelines honour the header too.
    expect((await call(`${base}/get/e:k`, { headers: B64 })).text).toBe(`{"result":"${b64('hello')}"}`)
    const p = await call(`${base}/pipeline`, { headers: B64, body: JSON.stringify([['GET', 'e:k'], ['STRLEN', 'e:k'], ['GET', 'e:none']]) })
    expect(p.json).toEqual([{ result: b64('hello') }, { result: 5 }, { result: null }])
    // The header value is case-insensitive.
    expect((await cmd(['GET', 'e:k'], { headers: { 'upstash-encoding': 'BASE64' } })).json.result).toBe(b64('hello'))
  })

  test('nested arrays (XRANGE) are encoded recursively', async () => {
    await direct.del('e:s')
    await direct.xadd('e:s', '1-1', 'field', 'välue')
    await direct.xadd('e:s', '2-1', 'a', '1', 'b', '2')
    const plain = await cmd(['XRANGE', 'e:s', '-', '+'])
    expect(plain.json).toEqual({
      result: [
        ['1-1', ['field', 'välue']],
        ['2-1', ['a', '1', 'b', '2']],
      ],
    })
    const enc = await cmd(['XRANGE', 'e:s', '-', '+'], { headers: B64 })
    expect(enc.json).toEqual({
      result: [
        [b64('1-1'), [b64('field'), b64('välue')]],
        [b64('2-1'), [b64('a'), b64('1'), b64('b'), b64('2')]],
      ],
    })
    // Mixed arrays: integers inside an array stay numbers.
    await direct.del('e:z')
    await direct.zadd('e:z', 1, 'm')
    const mixed = await cmd(['ZSCORE', 'e:z', 'm'], { headers: B64 })
    expect(mixed.json).toEqual({ result: b64('1') })
    const exec = await call(`${base}/multi-exec`, { headers: B64, body: JSON.stringify([['ZCARD', 'e:z'], ['ZRANGE', 'e:z', 0, -1]]) })
    expect(exec.json).toEqual([{ result: 1 }, { result: [b64('m')] }])
  })

  test('without the header strings are UTF-8 text', async () => {
    const text = 'héllo ✓ 日本 🚀'
    expect((await cmd(['SET', 'e:u', text])).status).toBe(200)
    expect(await direct.get('e:u')).toBe(text)
    expect((await cmd(['GET', 'e:u'])).json).toEqual({ result: text })
    await direct.del('e:h')
    await direct.hset('e:h', 'f1', 'v1')
    // HGETALL is Redis's flat array.
    expect((await cmd(['HGETALL', 'e:h'])).json).toEqual({ result: ['f1', 'v1'] })
    // Path-form arguments are UTF-8 after percent-decoding.
    await call(`${base}/set/e:u2/${encodeURIComponent(text)}`)
    expect(await direct.get('e:u2')).toBe(text)
  })

  test('binary values: POST path form stores raw bytes, base64 GET returns them exactly', async () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x0a, 0x00])
    const set = await call(`${base}/set/e:bin`, { method: 'POST', body: new Uint8Array(bytes) })
    expect([set.status, set.text]).toEqual([200, '{"result":"OK"}'])
    expect(Buffer.compare((await direct.getBuffer('e:bin'))!, bytes)).toBe(0)
    const get = await call(`${base}/get/e:bin`, { headers: B64 })
    expect(get.status).toBe(200)
    expect(Buffer.from(get.json.result, 'base64').equals(bytes)).toBe(true)
    // A SET from a Buffer read back with base64 from a pipeline.
    const p = await call(`${base}/pipeline`, { headers: B64, body: JSON.stringify([['GET', 'e:bin']]) })
    expect(Buffer.from(p.json[0].result, 'base64').equals(bytes)).toBe(true)
  })

  test('integers beyond 2^53 stay exact in the JSON text', async () => {
    await cmd(['SET', 'e:big', '9007199254740993'])
    const r = await cmd(['INCR', 'e:big'])
    expect(r.status).toBe(200)
    expect(r.text).toBe('{"result":9007199254740994}')
    const neg = await cmd(['INCRBY', 'e:big', '-18014398509481989'])
    expect(neg.text).toBe('{"result":-9007199254740995}')
    expect(await direct.get('e:big')).toBe('-9007199254740995')
  })
})

describe('Upstash-Response-Format (REST API docs, "RESP2 Format Responses")', () => {
  const RESP2 = { 'upstash-response-format': 'resp2' }
  /** The reply's bytes, as latin1 text (one character per byte). */
  async function bytes(url: string, init: RequestInit = {}): Promise<{ status: number; type: string | null; text: string }> {
    const res = await fetch(url, { ...init, headers: { authorization: `Bearer ${WRITE_TOKEN}`, ...RESP2, ...(init.headers as Record<string, string>) } })
    return { status: res.status, type: res.headers.get('content-type'), text: Buffer.from(await res.arrayBuffer()).toString('latin1') }
  }

  test('resp2: the RESP2 bytes of the reply, as application/octet-stream', async () => {
    await direct.set('rf:k', 'bar')
    await direct.set('rf:bin', Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x41]))
    await direct.rpush('rf:l', 'a', 'bc')
    const cases: [string, Promise<{ status: number; type: string | null; text: string }>, number, string][] = [
      ['SET (path form)', bytes(`${base}/set/rf:s/v`), 200, '+OK\r\n'],
      ['GET', bytes(`${base}/get/rf:k`), 200, '$3\r\nbar\r\n'],
      ['GET missing', bytes(`${base}/get/rf:none`), 200, '$-1\r\n'],
      ['INCR', bytes(`${base}/incr/rf:n`), 200, ':1\r\n'],
      ['binary', bytes(`${base}/get/rf:bin`), 200, '$5\r\n\x00\xff\r\nA\r\n'],
      ['LRANGE (command form)', bytes(base, { method: 'POST', body: '["LRANGE","rf:l",0,-1]' }), 200, '*2\r\n$1\r\na\r\n$2\r\nbc\r\n'],
      ['Redis error', bytes(base, { method: 'POST', body: '["SET","rf:x"]' }), 400, "-ERR wrong number of arguments for 'set' command\r\n"],
      ['pipeline', bytes(`${base}/pipeline`, { method: 'POST', body: '[["SET","rf:p","1"],["INCR","rf:p"],["LPUSH","rf:p","x"],["NOSUCH"]]' }), 200,
        "+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n-ERR unknown command 'NOSUCH'\r\n"],
    ]
    for (const [what, pending, status, text] of cases) {
      const r = await pending
      expect({ what, status: r.status, type: r.type, text: r.text }).toEqual({ what, status, type: 'application/octet-stream', text })
    }
    // node:http's path (a chunked body) gives the same bytes.
    const n = await rawRequest(port, head('POST', '/v1/instances/main', { authorization: `Bearer ${WRITE_TOKEN}`, ...RESP2, 'transfer-encoding': 'chunked' }) + chunk('["GET","rf:bin"]').toString('latin1') + LAST_CHUNK)
    expect([n.status, n.headers['content-type'], n.body.toString('latin1')]).toEqual([200, 'application/octet-stream', '$5\r\n\x00\xff\r\nA\r\n'])
  })

  test('json is the default and may be named; /multi-exec answers JSON whatever was asked; other values and resp2 with base64 are 400', async () => {
    await direct.set('rf:j', 'v')
    const json = await call(`${base}/get/rf:j`, { headers: { 'upstash-response-format': 'json' } })
    expect([json.status, json.text, json.headers.get('content-type')]).toEqual([200, '{"result":"v"}', 'application/json'])
    const tx = await call(`${base}/multi-exec`, { body: '[["INCR","rf:t"],["INCR","rf:t"]]', headers: RESP2 })
    expect([tx.status, tx.json]).toEqual([200, [{ result: 1 }, { result: 2 }]])
    for (const headers of [{ 'upstash-response-format': 'xml' }, { ...RESP2, 'upstash-encoding': 'base64' }]) {
      const r = await call(`${base}/get/rf:j`, { headers })
      expectGatewayError(r, 400, 'BADREQUEST')
      expect(r.json.error).toContain('Upstash-Response-Format')
    }
  })
})

describe('upstash-sync-token', () => {
  test('is present on every reply: success, Redis error, gateway 4xx and 5xx', async () => {
    const replies: [string, Reply][] = [
      ['200', await cmd(['GET', 's:k'])],
      ['200 path', await call(`${base}/get/s:k`)],
      ['200 pipeline', await call(`${base}/pipeline`, { body: '[["GET","s:k"]]' })],
      ['400 redis', await cmd(['SET', 's:k'])],
      ['400 bad json', await call(base, { body: '[' })],
      ['400 refused', await cmd(['MULTI'])],
      ['401', await cmd(['GET', 's:k'], { token: null })],
      ['403', await cmd(['SET', 's:k', 'v'], { token: READ_TOKEN })],
      ['404', await cmd(['GET', 's:k'], { url: gw.base('nope') })],
      ['405', await call(base, { method: 'DELETE', body: '["GET","k"]' })],
      ['413', await call(base, { body: JSON.stringify(['SET', 's:k', 'x'.repeat(MAX_BODY)]) })],
      ['503', await cmd(['GET', 's:k'], { url: gw.base('drained') })],
      // Made outside the Hono app (the HTTP parser refuses the request), but a reply all the same.
      ['431', await call(`${base}/get/${'k'.repeat(100 * 1024)}`)],
    ]
    for (const [what, r] of replies) {
      expect(r.headers.get('upstash-sync-token'), `${what}: ${r.status} ${r.text}`).not.toBeNull()
    }
    // A client's token comes back on gateway errors, so it never goes backwards.
    const t = (await cmd(['SET', 's:k', 'v'])).headers.get('upstash-sync-token')!
    expect(t).not.toBe('')
    const echoed = await cmd(['GET', 's:k'], { url: gw.base('nope'), headers: { 'upstash-sync-token': t } })
    expect(echoed.status).toBe(404)
    expect(echoed.headers.get('upstash-sync-token')).toBe(t)
  })

  test('changes after every write (command, path, pipeline, multi-exec) and is stable across reads', async () => {
    const tokens: string[] = []
    const push = (r: Reply): void => {
      expect(r.status, r.text).toBe(200)
      const t = r.headers.get('upstash-sync-token')
      expect(t).toBeTruthy()
      tokens.push(t!)
    }
    push(await cmd(['SET', 's:w', '1']))
    push(await cmd(['SET', 's:w', '1']))
    push(await call(`${base}/incr/s:w`))
    push(await call(`${base}/pipeline`, { body: '[["GET","s:w"],["INCR","s:w"]]' }))
    push(await call(`${base}/multi-exec`, { body: '[["INCR","s:w"]]' }))
    expect(new Set(tokens).size, tokens.join('\n')).toBe(tokens.length)

    const r1 = await cmd(['GET', 's:w'])
    const r2 = await cmd(['GET', 's:w'])
    const r3 = await call(`${base}/pipeline`, { body: '[["GET","s:w"],["STRLEN","s:w"]]' })
    const read = [r1, r2, r3].map((r) => r.headers.get('upstash-sync-token'))
    expect(read[0]).toBeTruthy()
    expect(read[1]).toBe(read[0])
    expect(read[2]).toBe(read[0])
    // Sending the last write's token back with a read does not make later reads unstable.
    const withTok = await cmd(['GET', 's:w'], { headers: { 'upstash-sync-token': tokens[tokens.length - 1]! } })
    expect(withTok.status).toBe(200)
    expect(withTok.headers.get('upstash-sync-token')).toBeTruthy()
    const after = await cmd(['SET', 's:w', '2'])
    expect(tokens).not.toContain(after.headers.get('upstash-sync-token'))
  })
})

describe('status codes', () => {
  test('401 {"error":"Unauthorized"}: missing, wrong and malformed credentials', async () => {
    const cases: [string, Promise<Reply>][] = [
      ['no token', cmd(['GET', 'k'], { token: null })],
      ['wrong token', cmd(['GET', 'k'], { token: 'not-a-token' })],
      ['basic scheme', cmd(['GET', 'k'], { token: null, headers: { authorization: `Basic ${b64(`x:${WRITE_TOKEN}`)}` } })],
      ['bearer without token', cmd(['GET', 'k'], { token: null, headers: { authorization: 'Bearer' } })],
      ['bearer with two words', cmd(['GET', 'k'], { token: null, headers: { authorization: `Bearer ${WRITE_TOKEN} extra` } })],
      ['token without scheme', cmd(['GET', 'k'], { token: null, headers: { authorization: WRITE_TOKEN } })],
      ['empty _token', call(`${base}/get/k?_token=`, { token: null })],
      ['path form, no token', call(`${base}/get/k`, { token: null })],
      ['pipeline, no token', call(`${base}/pipeline`, { token: null, body: '[["GET","k"]]' })],
    ]
    for (const [what, p] of cases) {
      const r = await p
      expect([what, r.status, r.text]).toEqual([what, 401, '{"error":"Unauthorized"}'])
      expect(r.headers.get('upstash-sync-token'), what).not.toBeNull()
    }
    // The scheme is case-insensitive.
    expect((await cmd(['PING'], { token: null, headers: { authorization: `bearer ${READ_TOKEN}` } })).status).toBe(200)
  })

  test('403 FORBIDDEN: read token writing, non-admin running admin commands', async () => {
    const read = await cmd(['SET', 'st:k', 'v'], { token: READ_TOKEN })
    expectGatewayError(read, 403, 'FORBIDDEN')
    expect(await direct.exists('st:k')).toBe(0)
    expectGatewayError(await call(`${base}/set/st:k/v`, { token: READ_TOKEN }), 403, 'FORBIDDEN')
    // In a pipeline each command stands alone: the forbidden one is that item's error, not sent.
    const rp = await call(`${base}/pipeline`, { token: READ_TOKEN, body: '[["GET","st:k"],["SET","st:k","v"]]' })
    expect(rp.status).toBe(200)
    expect(rp.json[0]).toEqual({ result: null })
    expect(rp.json[1]).not.toHaveProperty('result')
    expect(rp.json[1].error).toMatch(/^FORBIDDEN /)
    expect(await direct.exists('st:k')).toBe(0)
    // A transaction is all or nothing: 403 for the whole request.
    expectGatewayError(await call(`${base}/multi-exec`, { token: READ_TOKEN, body: '[["GET","st:k"],["SET","st:k","v"]]' }), 403, 'FORBIDDEN')
    expect(await direct.exists('st:k')).toBe(0)
    // Reads are fine with the read token.
    expect((await cmd(['GET', 'st:k'], { token: READ_TOKEN })).status).toBe(200)

    for (const args of [['FLUSHALL'], ['CONFIG', 'GET', 'maxmemory'], ['KEYS', '*'], ['FLUSHDB'], ['CLIENT', 'LIST'], ['MONITOR']]) {
      const r = await cmd(args, { token: WRITE_TOKEN })
      expectGatewayError(r, 403, 'FORBIDDEN')
      expect(r.json.error).toContain(args[0])
    }
    expect(await direct.exists('f:k')).toBe(1) // FLUSHALL did not run
    // Admin may.
    const keys = await cmd(['KEYS', 'f:k'], { token: ADMIN_TOKEN })
    expect([keys.status, keys.text]).toEqual([200, '{"result":["f:k"]}'])
    expect((await cmd(['CONFIG', 'GET', 'maxmemory'], { token: ADMIN_TOKEN })).json).toEqual({ result: ['maxmemory', '0'] })
  })

  test('403 FORBIDDEN: a token whose targets do not match the instance', async () => {
    const r = await cmd(['GET', 'st:k'], { token: 'tok-a' })
    expectGatewayError(r, 403, 'FORBIDDEN')
    expect(r.json.error).toContain("'main'")
    expectGatewayError(await call(`${base}/get/st:k`, { token: 'tok-a' }), 403, 'FORBIDDEN')
    const ok = await cmd(['SET', 'st:a', 'yes'], { token: 'tok-a', url: gw.base('a-one') })
    expect([ok.status, ok.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('st:a')).toBe('yes')
  })

  test('400 REFUSED: commands that need a private or blocking connection', async () => {
    const cases: [unknown[], string][] = [
      [['MULTI'], '/multi-exec'],
      [['EXEC'], '/multi-exec'],
      [['WATCH', 'k'], '/multi-exec'],
      [['SELECT', '1'], 'SELECT'],
      [['SUBSCRIBE', 'ch'], 'text/event-stream'],
      [['PSUBSCRIBE', 'ch*'], 'text/event-stream'],
      [['BLPOP', 'l', 0], 'BLPOP'],
      [['XREAD', 'BLOCK', 0, 'STREAMS', 's', '$'], 'BLOCK'],
      [['WAIT', 1, 0], 'WAIT'],
      [['multi'], '/multi-exec'],
    ]
    for (const [args, mention] of cases) {
      const r = await cmd(args, { token: ADMIN_TOKEN })
      expectGatewayError(r, 400, 'REFUSED')
      expect(r.json.error, JSON.stringify(args)).toContain(mention)
    }
    // The path form is refused alike. In a pipeline the refused command is that item's error and the
    // others run; in a transaction the whole request is refused and nothing runs.
    expectGatewayError(await call(`${base}/subscribe/ch`, { method: 'POST' }), 400, 'REFUSED')
    const p = await call(`${base}/pipeline`, { body: '[["SET","st:pm","1"],["MULTI"],["GET","st:pm"]]' })
    expect(p.status).toBe(200)
    expect(p.json[0]).toEqual({ result: 'OK' })
    expect(p.json[1].error).toMatch(/^REFUSED .*\/multi-exec/)
    expect(p.json[2]).toEqual({ result: '1' })
    const t = await call(`${base}/multi-exec`, { body: '[["SET","st:pt","1"],["MULTI"]]' })
    expectGatewayError(t, 400, 'REFUSED')
    expect(t.json.error).toContain('command 2')
    expect(await direct.exists('st:pt')).toBe(0)
    // XREAD without BLOCK is an ordinary read.
    expect((await cmd(['XREAD', 'COUNT', 1, 'STREAMS', 'e:s', '0'])).status).toBe(200)
    // MONITOR: 400 for an admin (it would take over a shared connection), 403 below admin.
    const mon = await cmd(['MONITOR'], { token: ADMIN_TOKEN })
    expectGatewayError(mon, 400, 'REFUSED')
    expect(mon.json.error).toContain('MONITOR')
    expectGatewayError(await cmd(['MONITOR'], { token: READ_TOKEN }), 403, 'FORBIDDEN')
  })

  test('400 unknown command with Redis wording', async () => {
    const r = await cmd(['NOSUCHCMD', 'a'])
    expect(r.status).toBe(400)
    expect(r.json.error).toBe("ERR unknown command 'NOSUCHCMD'")
    expect(r.headers.get('upstash-sync-token')).not.toBeNull()
    const path = await call(`${base}/nosuchcmd/a`)
    expect(path.status).toBe(400)
    expect(path.json.error).toBe("ERR unknown command 'nosuchcmd'")
    // Same for every token level: unknown is unknown.
    expect((await cmd(['nosuchcmd'], { token: READ_TOKEN })).json.error).toBe("ERR unknown command 'nosuchcmd'")
  })

  test('404: unknown instance, invalid names, paths outside /v1', async () => {
    const viaFetch: [string, string][] = [
      ['unknown instance', `${gw.url}/v1/instances/nope`],
      ['unknown instance, path form', `${gw.url}/v1/instances/nope/get/k`],
      ['uppercase', `${gw.url}/v1/instances/MAIN`],
      ['64 chars', `${gw.url}/v1/instances/${'a'.repeat(64)}`],
      ['%2F in name', `${gw.url}/v1/instances/main%2Fx`],
      ['%2F only', `${gw.url}/v1/instances/%2F`],
      ['empty name', `${gw.url}/v1/instances/`],
      ['root', `${gw.url}/`],
      ['v2', `${gw.url}/v2/instances/main`],
      ['v1 only', `${gw.url}/v1`],
      ['other kind', `${gw.url}/v1/clusters/main`],
      ['ops path', `${gw.url}/metrics`],
      ['admin path', `${gw.url}/admin/routes`],
      ['unknown group', `${gw.url}/v1/groups/nogroup`],
    ]
    for (const [what, url] of viaFetch) {
      const r = await call(url, { method: 'POST', body: '["GET","k"]', token: ADMIN_TOKEN })
      expect([what, r.status], r.text).toEqual([what, 404])
      expect(r.json?.error, what).toMatch(/^NOTFOUND /)
    }
    // 63 characters is a valid (if unknown) name: still 404, but as an unknown instance.
    const long = await cmd(['GET', 'k'], { url: `${gw.url}/v1/instances/${'a'.repeat(63)}`, token: ADMIN_TOKEN })
    expect([long.status, long.json.error]).toEqual([404, `NOTFOUND unknown instance '${'a'.repeat(63)}'`])

    // fetch would normalise these away; send them as written.
    const body = '["GET","k"]'
    const raw: [string, string][] = [
      ['..', '/v1/instances/..'],
      ['.. then a name', '/v1/instances/../instances/main'],
      ['%2e%2e', '/v1/instances/%2e%2e'],
      ['%2E%2E then a name', '/v1/instances/%2E%2E/instances/main'],
      ['.. before v1', '/x/../v1/instances/main'],
      ['. segment', '/v1/instances/./main'],
    ]
    for (const [what, target] of raw) {
      const r = await rawRequest(port, head('POST', target, { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-length': body.length }) + body)
      expect([what, r.status], r.text).toEqual([what, 404])
      expect(JSON.parse(r.text).error, what).toMatch(/^NOTFOUND /)
    }
    // `..` as an argument is just an argument.
    const arg = await rawRequest(port, head('GET', '/v1/instances/main/get/..', { authorization: `Bearer ${WRITE_TOKEN}` }))
    expect([arg.status, arg.text]).toEqual([200, '{"result":null}'])
  })

  test('405 for other methods, GET or HEAD on /pipeline and /multi-exec, HEAD on SSE; Allow lists what is allowed', async () => {
    for (const method of ['DELETE', 'PATCH']) {
      for (const url of [base, `${base}/get/k`, `${base}/pipeline`]) {
        const r = await call(url, { method, body: '["GET","k"]' })
        expect([method, url, r.status], r.text).toEqual([method, url, 405])
        expect(r.json.error).toMatch(/^METHOD /)
      }
    }
    for (const url of [`${base}/pipeline`, `${base}/multi-exec`, base]) {
      const r = await call(url, { method: 'GET' })
      expectGatewayError(r, 405, 'METHOD')
      expect(r.json.error).toContain('POST or PUT')
      expect(r.headers.get('allow')).toBe('POST, PUT, OPTIONS')
      const h = await call(url, { method: 'HEAD' })
      expect([h.status, h.headers.get('allow'), h.text]).toEqual([405, 'POST, PUT, OPTIONS', ''])
    }
    expect((await call(`${base}/get/k`, { method: 'DELETE' })).headers.get('allow')).toBe('GET, HEAD, POST, PUT, OPTIONS')
    const sse = await call(`${base}/subscribe/ch`, { method: 'HEAD', headers: { accept: 'text/event-stream' } })
    expect([sse.status, sse.headers.get('allow')]).toEqual([405, 'GET, POST, PUT, OPTIONS'])
  })

  test('PUT is POST and HEAD is GET without a body (Upstash allows HEAD, GET, POST and PUT)', async () => {
    // PUT: the command form, the path form with its body appended, the pipeline.
    const c = await call(base, { method: 'PUT', body: '["SET","st:put","a"]' })
    expect([c.status, c.text]).toEqual([200, '{"result":"OK"}'])
    const p = await call(`${base}/set/st:put2`, { method: 'PUT', body: 'from PUT body' })
    expect([p.status, p.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('st:put2')).toBe('from PUT body')
    const pl = await call(`${base}/pipeline`, { method: 'PUT', body: '[["GET","st:put"],["GET","st:put2"]]' })
    expect([pl.status, pl.json]).toEqual([200, [{ result: 'a' }, { result: 'from PUT body' }]])
    const tx = await call(`${base}/multi-exec`, { method: 'PUT', body: '[["INCR","st:putn"],["INCR","st:putn"]]' })
    expect([tx.status, tx.json]).toEqual([200, [{ result: 1 }, { result: 2 }]])
    // HEAD: runs like GET (Upstash's semantics: the path form is the command), the reply has no body.
    const h = await call(`${base}/incr/st:headn`, { method: 'HEAD' })
    expect([h.status, h.text, h.headers.get('content-type')]).toEqual([200, '', 'application/json'])
    expect(h.headers.get('upstash-sync-token')).toMatch(/^rg1:main:/)
    expect(await direct.get('st:headn')).toBe('1')
    const miss = await call(`${base}/get/st:nothing`, { method: 'HEAD', token: null })
    expect([miss.status, miss.text]).toEqual([401, ''])
  })

  test('413 for a body over limits.maxBody, with Content-Length and chunked', async () => {
    const big = JSON.stringify(['SET', 'st:big', 'x'.repeat(MAX_BODY)])
    const r = await call(base, { body: big })
    expectGatewayError(r, 413, 'TOOLARGE')
    expect(r.json.error).toContain(String(MAX_BODY))
    // Exactly at the limit is fine.
    const atLimit = JSON.stringify(['SET', 'st:big', ''])
    const fill = JSON.stringify(['SET', 'st:big', 'y'.repeat(MAX_BODY - atLimit.length)])
    expect(Buffer.byteLength(fill)).toBe(MAX_BODY)
    expect((await call(base, { body: fill })).status).toBe(200)
    // Path form and pipeline.
    expectGatewayError(await call(`${base}/set/st:big`, { method: 'POST', body: 'z'.repeat(MAX_BODY + 1) }), 413, 'TOOLARGE')
    expectGatewayError(await call(`${base}/pipeline`, { body: JSON.stringify([['SET', 'st:big', 'x'.repeat(MAX_BODY)]]) }), 413, 'TOOLARGE')
    expect(await direct.strlen('st:big')).toBe(MAX_BODY - atLimit.length)

    // Chunked: no Content-Length, the limit is found while reading.
    const piece = 'a'.repeat(1500)
    const chunked = await rawRequest(port, [
      head('POST', '/v1/instances/main/set/st:chunked', { authorization: `Bearer ${WRITE_TOKEN}`, 'transfer-encoding': 'chunked' }),
      chunk(piece),
      chunk(piece),
      chunk(piece),
      chunk(piece),
      LAST_CHUNK,
    ])
    expect(chunked.status, chunked.text).toBe(413)
    expect(JSON.parse(chunked.text).error).toMatch(/^TOOLARGE /)
    expect(chunked.headers['upstash-sync-token']).toBeDefined()
    expect(await direct.exists('st:chunked')).toBe(0)
    // A chunked body under the limit works.
    const small = await rawRequest(port, [
      head('POST', '/v1/instances/main/set/st:chunked', { authorization: `Bearer ${WRITE_TOKEN}`, 'transfer-encoding': 'chunked' }),
      chunk('part1-'),
      chunk('part2'),
      LAST_CHUNK,
    ])
    expect([small.status, small.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.get('st:chunked')).toBe('part1-part2')
  })

  test('431 JSON for a request line over the header limit (64 KiB default)', async () => {
    const r = await call(`${base}/get/${'k'.repeat(100 * 1024)}`)
    expect(r.status).toBe(431)
    expect(r.headers.get('content-type')).toMatch(/^application\/json/)
    expect(r.json.error).toMatch(/^TOOLARGE /)
    expect(r.json.error).toContain(String(64 * 1024))
    expect((await cmd(['PING'])).status).toBe(200)
  })

  test('maintenance drain: 503 DRAINING with Retry-After for reads and writes', async () => {
    for (const r of [
      await cmd(['GET', 'k'], { url: gw.base('drained') }),
      await cmd(['SET', 'st:d', 'v'], { url: gw.base('drained') }),
      await call(`${gw.base('drained')}/get/k`),
      await call(`${gw.base('drained')}/pipeline`, { body: '[["GET","k"]]' }),
    ]) {
      expectGatewayError(r, 503, 'DRAINING')
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    }
    expect(await direct.exists('st:d')).toBe(0)
  })

  test('maintenance read-only: writes 503 READONLY with Retry-After, reads 200', async () => {
    await direct.set('st:ro', 'kept')
    const ro = gw.base('ro')
    for (const r of [
      await cmd(['SET', 'st:ro', 'changed'], { url: ro }),
      await call(`${ro}/set/st:ro/changed`),
      await call(`${ro}/pipeline`, { body: '[["GET","st:ro"],["SET","st:ro","changed"]]' }),
      await call(`${ro}/multi-exec`, { body: '[["GET","st:ro"]]' }),
    ]) {
      expectGatewayError(r, 503, 'READONLY')
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0)
    }
    expect(await direct.get('st:ro')).toBe('kept')
    expect((await cmd(['GET', 'st:ro'], { url: ro })).text).toBe('{"result":"kept"}')
    expect((await call(`${ro}/get/st:ro`)).text).toBe('{"result":"kept"}')
    expect((await call(`${ro}/pipeline`, { body: '[["GET","st:ro"],["STRLEN","st:ro"]]' })).json).toEqual([{ result: 'kept' }, { result: 4 }])
  })
})

describe('upstream failures', () => {
  let failGw: TestGateway
  let killed: RedisServer
  let paused: RedisServer

  beforeAll(async () => {
    killed = await startRedis()
    paused = await startRedis()
    failGw = await startGateway({
      instances: [
        { name: 'victim-kill', endpoints: [killed.url] },
        { name: 'victim-pause', endpoints: [paused.url] },
      ],
      extra: { redis: { commandTimeout: '300ms', connectTimeout: '300ms' } },
    })
    for (const name of ['victim-kill', 'victim-pause']) {
      await waitFor(async () => (await cmd(['PING'], { url: failGw.base(name) })).status === 200, { message: `${name} serving` })
    }
  })
  afterAll(async () => {
    if (paused?.isPaused) paused.resume()
    await failGw?.stop()
    await killed?.stop()
    await paused?.stop()
  })

  test('503 NOENDPOINT with Retry-After while the redis-server is down; recovers after restart', async () => {
    const url = failGw.base('victim-kill')
    expect((await cmd(['SET', 'u:k', 'before'], { url })).status).toBe(200)
    await killed.kill()
    const down = await waitFor(
      async () => {
        const r = await cmd(['GET', 'u:k'], { url })
        // While the loss is being noticed a request may fail as UPSTREAMRESET; never 200 or 500.
        expect(r.status, r.text).toBe(503)
        return r.json.error.startsWith('NOENDPOINT') ? r : null
      },
      { timeoutMs: 10_000, message: '503 NOENDPOINT' },
    )
    expectGatewayError(down, 503, 'NOENDPOINT')
    expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0)
    const w = await cmd(['SET', 'u:k', 'during'], { url })
    expectGatewayError(w, 503, 'NOENDPOINT')
    expect(w.headers.get('retry-after')).toMatch(/^\d+$/)

    await killed.restart()
    const up = await waitFor(
      async () => {
        const r = await cmd(['SET', 'u:k', 'after'], { url })
        return r.status === 200 ? r : null
      },
      { timeoutMs: 15_000, message: 'SET through the gateway after restart' },
    )
    expect(up.text).toBe('{"result":"OK"}')
    expect(await killed.client().get('u:k')).toBe('after')
  })

  test('504 TIMEOUT while the redis-server is paused (SIGSTOP), then 503 NOENDPOINT while its reset connection cannot get an answer either; recovers after resume', async () => {
    const url = failGw.base('victim-pause')
    expect((await cmd(['SET', 'u:p', 'v'], { url })).status).toBe(200)
    paused.pause()
    try {
      const r = await cmd(['GET', 'u:p'], { url })
      expectGatewayError(r, 504, 'TIMEOUT')
      // Nothing at all came back on that connection while the GET waited: stalled, so the gateway
      // reset it (as Envoy does on a request timeout). The new connection's handshake is not
      // answered either: the requests after it wait for it and get 503 NOENDPOINT (or 504, if they
      // were sent before the reset).
      const path = await call(`${url}/get/u:p`)
      expect(path.status === 504 ? 'TIMEOUT' : path.status === 503 ? 'NOENDPOINT' : path.text).toBe(String(path.json.error).split(' ')[0])
      const pipe = await call(`${url}/pipeline`, { body: '[["GET","u:p"]]' })
      expect(pipe.status === 504 ? 'TIMEOUT' : pipe.status === 503 ? 'NOENDPOINT' : pipe.text).toBe(String(pipe.json.error).split(' ')[0])
    } finally {
      paused.resume()
    }
    await waitFor(
      async () => {
        const r = await cmd(['GET', 'u:p'], { url })
        expect([r.status, r.text]).toEqual([200, '{"result":"v"}'])
      },
      { timeoutMs: 10_000, message: 'GET after resume' },
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

class SseReader {
  text = ''
  closed = false
  private readonly done: Promise<void>
  constructor(readonly res: Response) {
    const reader = res.body!.getReader()
    const dec = new TextDecoder()
    this.done = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          this.text += dec.decode(value, { stream: true })
        }
      } catch {
        // aborted
      } finally {
        this.closed = true
      }
    })()
  }
  /** Waits until the stream carried `line` as a complete event. */
  async event(line: string, timeoutMs = 5_000): Promise<void> {
    await waitFor(
      () => {
        if (this.text.includes(`${line}\n\n`)) return true
        if (this.closed) throw new Error(`stream closed; got ${JSON.stringify(this.text)}`)
        return false
      },
      { timeoutMs, intervalMs: 10, message: `SSE ${JSON.stringify(line)} (have ${JSON.stringify(this.text)})` },
    )
  }
  finished(): Promise<void> {
    return this.done
  }
}

async function openSse(path: string, ac: AbortController, token = READ_TOKEN): Promise<SseReader> {
  const res = await fetch(`${base}/${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    signal: ac.signal,
  })
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
  expect(res.headers.get('upstash-sync-token')).not.toBeNull()
  return new SseReader(res)
}

async function numsub(channel: string): Promise<number> {
  const r = (await direct.pubsub('NUMSUB', channel)) as [string, number]
  return Number(r[1])
}

async function numpat(): Promise<number> {
  return Number(await direct.pubsub('NUMPAT'))
}

describe('SSE subscriptions', () => {
  test('subscribe: subscribe event, then messages published by another client', async () => {
    const ac = new AbortController()
    try {
      const s = await openSse('subscribe/ch1', ac)
      await s.event('data: subscribe,ch1,1')
      expect(await numsub('ch1')).toBe(1)
      await direct.publish('ch1', 'hello')
      await s.event('data: message,ch1,hello')
      await direct.publish('ch1', 'world, with commas')
      await s.event('data: message,ch1,world, with commas')
      await direct.publish('other', 'not for us')
      await direct.publish('ch1', 'last')
      await s.event('data: message,ch1,last')
      expect(s.text).not.toContain('not for us')
    } finally {
      ac.abort()
    }
    await waitFor(async () => (await numsub('ch1')) === 0, { message: 'ch1 unsubscribed' })
  })

  test('psubscribe: pmessage events carry pattern and channel', async () => {
    const ac = new AbortController()
    try {
      const s = await openSse('psubscribe/news.*', ac)
      await s.event('data: psubscribe,news.*,1')
      expect(await numpat()).toBe(1)
      await direct.publish('news.tech', 'hi')
      await s.event('data: pmessage,news.*,news.tech,hi')
    } finally {
      ac.abort()
    }
    await waitFor(async () => (await numpat()) === 0, { message: 'pattern unsubscribed' })
  })

  test('two streams on one channel share ONE subscriber connection; both unsubscribe on abort', async () => {
    const a = new AbortController()
    const b = new AbortController()
    try {
      const s1 = await openSse('subscribe/ch2', a)
      const s2 = await openSse('subscribe/ch2', b)
      await s1.event('data: subscribe,ch2,1')
      await s2.event('data: subscribe,ch2,1')
      expect(await numsub('ch2')).toBe(1)
      const list = (await direct.client('LIST')) as string
      const subscribers = list.split('\n').filter((l) => /\bsub=[1-9]/.test(l) || /\bpsub=[1-9]/.test(l))
      expect(subscribers, list).toHaveLength(1)
      await direct.publish('ch2', 'both')
      await s1.event('data: message,ch2,both')
      await s2.event('data: message,ch2,both')
      // One stream leaving keeps the other subscribed.
      a.abort()
      await s1.finished()
      await direct.publish('ch2', 'second')
      await s2.event('data: message,ch2,second')
      expect(await numsub('ch2')).toBe(1)
    } finally {
      a.abort()
      b.abort()
    }
    await waitFor(async () => (await numsub('ch2')) === 0, { message: 'PUBSUB NUMSUB ch2 = 0' })
  })

  test('subscribe without Accept: text/event-stream is 400', async () => {
    const r = await call(`${base}/subscribe/ch3`, { method: 'POST', token: READ_TOKEN })
    expectGatewayError(r, 400, 'REFUSED')
    expect(r.json.error).toContain('text/event-stream')
    const p = await call(`${base}/psubscribe/ch*`, { method: 'POST', token: READ_TOKEN, headers: { accept: 'application/json' } })
    expectGatewayError(p, 400, 'REFUSED')
    expect(await numsub('ch3')).toBe(0)
    // Subscribing needs a token like everything else.
    expect((await call(`${base}/subscribe/ch3`, { method: 'POST', token: null, headers: { accept: 'text/event-stream' } })).status).toBe(401)
  })

  test('no subscriber connection remains once the last stream has ended', async () => {
    // After warm-up the server saw the gateway's command connection and `direct`; the subscriber
    // connection exists only while SSE streams do.
    await waitFor(async () => expect(await connectedClients(redis)).toBe(baselineClients), {
      message: `connected_clients back to ${baselineClients}`,
    })
    await waitFor(async () => expect((await redis.gatewayConnections()).subscribers).toBe(0))
    for (const n of Object.values((await redis.gatewayConnections()).levels)) expect(n).toBe(1)
  })
})
