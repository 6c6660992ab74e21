// The data plane's fast lane (src/http/fast-lane/) against the real gateway and a real
// redis-server: the same requests give the same status, the same JSON bytes and the same sync
// token through the lane (the default) and with `http.fastLane: false` (everything through
// node:http), and what the lane hands over (chunked bodies, other methods, oversized bodies,
// Server-Sent Events) still works; a lane-served keep-alive connection drains like any other.
//
// Which path answered is read from the raw reply: the lane writes its own header lines (`date:`),
// node:http writes `Date:`.

import { Writable } from 'node:stream'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { ConnectionRefused, KeepAliveConnection } from '../helpers/keep-alive-client.js'
import { chunk, exchange, LAST_CHUNK, parseAll, parseResponse, rawRequest, RawConnection, type RawResponse } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const BASE = '/v1/instances/main'
const MAX_BODY = 1024
const UTF8 = 'h\u00e9llo \u2713 \u{1F600}'

let redis: RedisServer
let direct: Redis
let lane: TestGateway
let plain: TestGateway

const instances = (): { name: string; endpoints: string[] }[] => [{ name: 'main', endpoints: [redis.url] }]
const port = (gw: TestGateway): number => gw.gateway.dataAddress.port

beforeAll(async () => {
  // DEBUG SLEEP makes a request that is still in flight when the drain starts.
  redis = await startRedis({ args: ['--enable-debug-command', 'yes'] })
  direct = redis.client()
  await direct.set('fl:k', UTF8)
  await direct.set('fl:n', '41')
  ;[lane, plain] = await Promise.all([
    startGateway({ instances: instances(), extra: { limits: { maxBody: `${MAX_BODY}B` } } }),
    startGateway({ instances: instances(), extra: { limits: { maxBody: `${MAX_BODY}B` }, http: { fastLane: false } } }),
  ])
  // Both gateways know the primary's replication id, so their sync tokens can be compared.
  await waitFor(
    async () => {
      const [a, b] = await Promise.all([lane, plain].map((gw) => send(gw, { method: 'GET', path: `${BASE}/get/fl:k` })))
      return a!.status === 200 && a!.headers['upstash-sync-token'] === b!.headers['upstash-sync-token'] && !/^rg1:main:0:/.test(a!.headers['upstash-sync-token']!)
    },
    { message: 'both gateways serving with the same sync token' },
  )
})

afterAll(async () => {
  direct?.disconnect()
  await Promise.all([lane?.stop(), plain?.stop()])
  await redis?.stop()
})

interface Req {
  method: string
  path: string
  /** Default WRITE_TOKEN; null sends no Authorization. */
  token?: string | null
  /** Extra header lines, sent as latin1 bytes. */
  headers?: Record<string, string>
  body?: string
  /** HTTP version in the request line; default 1.1. */
  version?: string
}

function requestBytes(r: Req, connection = 'close'): Buffer {
  const lines = [`${r.method} ${r.path} HTTP/${r.version ?? '1.1'}`, 'Host: 127.0.0.1', `Connection: ${connection}`]
  const token = r.token === undefined ? WRITE_TOKEN : r.token
  if (token !== null) lines.push(`Authorization: Bearer ${token}`)
  for (const [k, v] of Object.entries(r.headers ?? {})) lines.push(`${k}: ${v}`)
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body, 'utf8')
  if (r.body !== undefined && !Object.keys(r.headers ?? {}).some((k) => /^transfer-encoding$/i.test(k))) {
    lines.push(`Content-Length: ${body.length}`)
  }
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body])
}

function send(gw: TestGateway, r: Req): Promise<RawResponse> {
  return rawRequest(port(gw), requestBytes(r))
}

/** Which server wrote the reply: the lane writes lower-case `date:`, node:http `Date:`. */
function via(res: RawResponse): 'lane' | 'node' {
  const head = res.raw.subarray(0, res.raw.indexOf('\r\n\r\n') + 2).toString('latin1')
  if (head.includes('\r\ndate: ')) return 'lane'
  if (head.includes('\r\nDate: ')) return 'node'
  throw new Error(`cannot tell who wrote ${JSON.stringify(head)}`)
}

/** A sync token with its nonce (which changes after every write, in either path) blanked out. */
const tokenShape = (t: string | undefined): string | undefined => t?.replace(/:[0-9a-z]+$/, ':<nonce>')

interface Case {
  name: string
  req: Req
  status: number
  /** Who answers on the lane gateway (the other one always answers through node:http). */
  lanePath: 'lane' | 'node'
  /** A write: the sync token carries a fresh nonce each time. */
  write?: boolean
  /** Further headers that must be equal (and present) in both replies. */
  same?: string[]
  /** The expected body, when it is worth spelling out. */
  body?: unknown
}

const CASES: Case[] = [
  { name: 'GET, path form', req: { method: 'GET', path: `${BASE}/get/fl:k` }, status: 200, lanePath: 'lane', body: { result: UTF8 } },
  { name: 'GET, path form with a query argument and _token', req: { method: 'GET', path: `${BASE}/set/fl:q/v1?EX=100&_token=${WRITE_TOKEN}`, token: null }, status: 200, lanePath: 'lane', write: true, body: { result: 'OK' } },
  { name: 'POST JSON command (write, UTF-8 value)', req: { method: 'POST', path: BASE, body: JSON.stringify(['SET', 'fl:w', UTF8]) }, status: 200, lanePath: 'lane', write: true, body: { result: 'OK' } },
  { name: 'POST JSON command (read)', req: { method: 'POST', path: BASE, body: '["GET","fl:k"]' }, status: 200, lanePath: 'lane', body: { result: UTF8 } },
  { name: 'POST, path form with the value as the body', req: { method: 'POST', path: `${BASE}/set/fl:pb`, body: 'body value' }, status: 200, lanePath: 'lane', write: true },
  {
    name: 'pipeline, with a Redis error, an unknown and a refused command',
    req: { method: 'POST', path: `${BASE}/pipeline`, body: JSON.stringify([['SET', 'fl:p', '1'], ['GET', 'fl:p'], ['INCR', 'fl:k'], ['NOSUCHCMD'], ['BLPOP', 'fl:l', '1']]) },
    status: 200,
    lanePath: 'lane',
    write: true,
  },
  { name: 'multi-exec', req: { method: 'POST', path: `${BASE}/multi-exec`, body: JSON.stringify([['SET', 'fl:m', 'v'], ['GET', 'fl:m']]) }, status: 200, lanePath: 'lane', write: true, body: [{ result: 'OK' }, { result: 'v' }] },
  { name: 'base64 encoding', req: { method: 'GET', path: `${BASE}/get/fl:k`, headers: { 'Upstash-Encoding': 'base64' } }, status: 200, lanePath: 'lane', body: { result: Buffer.from(UTF8).toString('base64') } },
  { name: 'base64 encoding, pipeline', req: { method: 'POST', path: `${BASE}/pipeline`, headers: { 'Upstash-Encoding': 'base64' }, body: '[["GET","fl:k"],["GET","fl:n"]]' }, status: 200, lanePath: 'lane' },
  // Base64 results are written as ASCII (latin1, Content-Length = length); error texts are not
  // ASCII-safe (they quote what was sent): these must come out as UTF-8, as node:http sends them.
  {
    name: 'base64 pipeline whose error items quote non-ASCII (Redis error, unknown command)',
    req: { method: 'POST', path: `${BASE}/pipeline`, headers: { 'Upstash-Encoding': 'base64' }, body: JSON.stringify([['GET', 'fl:k'], ['OBJECT', 'n\u00f6pe', 'fl:k'], ['N\u00d6PE']]) },
    status: 200,
    lanePath: 'lane',
    body: [
      { result: Buffer.from(UTF8).toString('base64') },
      { error: "ERR unknown subcommand 'n\u00f6pe'. Try OBJECT HELP." },
      { error: "ERR unknown command 'N\u00d6PE'" },
    ],
  },
  { name: 'base64, Redis error reply quoting non-ASCII', req: { method: 'POST', path: BASE, headers: { 'Upstash-Encoding': 'base64' }, body: JSON.stringify(['OBJECT', 'n\u00f6pe', 'fl:k']) }, status: 400, lanePath: 'lane', body: { error: "ERR unknown subcommand 'n\u00f6pe'. Try OBJECT HELP." } },
  { name: 'base64, unknown command quoting non-ASCII', req: { method: 'POST', path: BASE, headers: { 'Upstash-Encoding': 'base64' }, body: JSON.stringify(['N\u00d6PE', 'x']) }, status: 400, lanePath: 'lane' },
  // A no-break space is not whitespace in HTTP: node:http keeps it in the value, so must the lane.
  { name: 'Upstash-Encoding with a trailing no-break space', req: { method: 'GET', path: `${BASE}/get/fl:k`, headers: { 'Upstash-Encoding': 'base64\xa0' } }, status: 200, lanePath: 'lane' },
  { name: 'a read with a newer sync token is answered with that token', req: { method: 'GET', path: `${BASE}/get/fl:k`, headers: { 'Upstash-Sync-Token': 'rg1:main:PLACEHOLDER:999999:0' } }, status: 200, lanePath: 'lane' },
  { name: '401, bad token', req: { method: 'GET', path: `${BASE}/get/fl:k`, token: 'not-a-token' }, status: 401, lanePath: 'lane', same: ['www-authenticate'] },
  { name: '401, no token', req: { method: 'POST', path: BASE, token: null, body: '["GET","fl:k"]' }, status: 401, lanePath: 'lane', same: ['www-authenticate'] },
  { name: '403, read token writing', req: { method: 'POST', path: BASE, token: READ_TOKEN, body: '["SET","fl:k","x"]' }, status: 403, lanePath: 'lane' },
  { name: '404, unknown instance', req: { method: 'GET', path: '/v1/instances/nope/get/k' }, status: 404, lanePath: 'lane' },
  { name: '404, not a data route', req: { method: 'GET', path: '/nothing/here' }, status: 404, lanePath: 'lane' },
  { name: '400, bad JSON', req: { method: 'POST', path: BASE, body: '["SET","fl:k"' }, status: 400, lanePath: 'lane' },
  { name: '400, unknown command', req: { method: 'POST', path: BASE, body: '["NOSUCHCMD","x"]' }, status: 400, lanePath: 'lane' },
  { name: '400, refused command', req: { method: 'POST', path: BASE, body: '["BLPOP","fl:l","1"]' }, status: 400, lanePath: 'lane' },
  { name: '400, Redis error reply', req: { method: 'POST', path: BASE, body: '["INCR","fl:k"]' }, status: 400, lanePath: 'lane', write: true },
  { name: '405, GET on the pipeline route (in the lane)', req: { method: 'GET', path: `${BASE}/pipeline` }, status: 405, lanePath: 'lane', same: ['allow'] },
  { name: 'PUT, as POST (node in both)', req: { method: 'PUT', path: BASE, body: '["GET","fl:k"]' }, status: 200, lanePath: 'node', body: { result: UTF8 } },
  { name: '405, PATCH (node in both)', req: { method: 'PATCH', path: BASE, body: '["GET","fl:k"]' }, status: 405, lanePath: 'node', same: ['allow'] },
  { name: '405, DELETE on a path form (node in both)', req: { method: 'DELETE', path: `${BASE}/get/fl:k` }, status: 405, lanePath: 'node', same: ['allow'] },
  { name: '413, body above limits.maxBody (node in both)', req: { method: 'POST', path: BASE, body: JSON.stringify(['SET', 'fl:big', 'x'.repeat(MAX_BODY)]) }, status: 413, lanePath: 'node', same: ['connection'] },
  { name: 'chunked POST (node in both)', req: { method: 'POST', path: BASE, headers: { 'Transfer-Encoding': 'chunked' }, body: `${chunk('["GET",').toString()}${chunk('"fl:k"]').toString()}${LAST_CHUNK}` }, status: 200, lanePath: 'node', body: { result: UTF8 } },
  { name: 'HTTP/1.0 (node in both)', req: { method: 'GET', path: `${BASE}/get/fl:k`, version: '1.0' }, status: 200, lanePath: 'node', body: { result: UTF8 } },
  // node:http joins the two values, which then authenticate nobody.
  { name: 'duplicate Authorization (node in both)', req: { method: 'GET', path: `${BASE}/get/fl:k`, headers: { Authorization: `Bearer ${READ_TOKEN}` } }, status: 401, lanePath: 'node', same: ['www-authenticate'] },
]

describe('the same replies through the fast lane and through node:http', () => {
  let replId = ''
  beforeAll(async () => {
    const r = await send(plain, { method: 'GET', path: `${BASE}/get/fl:k` })
    replId = /^rg1:main:([0-9a-f]+):/.exec(r.headers['upstash-sync-token'] ?? '')![1]!
  })

  test.each(CASES)('$name', async (c) => {
    const req: Req = { ...c.req, headers: Object.fromEntries(Object.entries(c.req.headers ?? {}).map(([k, v]) => [k, v.replace('PLACEHOLDER', replId)])) }
    const a = await send(lane, req)
    const b = await send(plain, req)
    expect([via(a), via(b)]).toEqual([c.lanePath, 'node'])
    expect(a.status, a.text).toBe(c.status)
    expect(b.status, b.text).toBe(c.status)
    expect(a.body.equals(b.body), `lane ${a.text}\nnode ${b.text}`).toBe(true)
    expect(a.headers['content-type']).toBe('application/json')
    expect(b.headers['content-type']).toBe('application/json')
    expect(a.headers['content-length']).toBe(String(a.body.length))
    if (c.body !== undefined) expect(JSON.parse(a.text)).toEqual(c.body)
    else expect(() => JSON.parse(a.text)).not.toThrow()
    for (const name of c.same ?? []) {
      expect(a.headers[name], name).toBeDefined()
      expect([name, a.headers[name]]).toEqual([name, b.headers[name]])
    }
    const ta = a.headers['upstash-sync-token']
    const tb = b.headers['upstash-sync-token']
    expect(ta).toBeDefined()
    if (c.write) {
      expect(tokenShape(ta)).toBe(tokenShape(tb))
      expect(ta).toMatch(/:[1-9a-z][0-9a-z]*$/)
      expect(tb).toMatch(/:[1-9a-z][0-9a-z]*$/)
    } else {
      expect(ta).toBe(tb)
    }
  })
})

describe('what the lane hands over still works', () => {
  test('a chunked POST on a keep-alive connection in the same write right after a lane-served request; then node serves the connection', async () => {
    const s = await RawConnection.open(port(lane))
    s.write(
      Buffer.concat([
        requestBytes({ method: 'GET', path: `${BASE}/get/fl:k` }, 'keep-alive'),
        requestBytes(
          {
            method: 'POST',
            path: BASE,
            headers: { 'Transfer-Encoding': 'chunked' },
            body: `${chunk('["SET","fl:chunk",').toString()}${chunk(JSON.stringify(UTF8)).toString()}${chunk(']').toString()}${LAST_CHUNK}`,
          },
          'keep-alive',
        ),
      ]),
    )
    const [first, chunked] = await s.replies(2)
    expect([via(first!), via(chunked!)]).toEqual(['lane', 'node'])
    expect(JSON.parse(first!.text)).toEqual({ result: UTF8 })
    expect([chunked!.status, JSON.parse(chunked!.text)]).toEqual([200, { result: 'OK' }])
    expect(chunked!.headers.connection).toBe('keep-alive')
    expect(await direct.get('fl:chunk')).toBe(UTF8)
    // The rest of the connection belongs to node:http.
    s.write(requestBytes({ method: 'GET', path: `${BASE}/get/fl:chunk` }, 'keep-alive'))
    const [, , after] = await s.replies(3)
    expect([via(after!), after!.status, JSON.parse(after!.text)]).toEqual(['node', 200, { result: UTF8 }])
    s.close()
  })

  test.each([
    ['GET', undefined],
    ['POST', '[]'],
  ])('SSE subscribe (%s .../subscribe/ch, Accept: text/event-stream) streams through the lane gateway', async (method, body) => {
    const channel = `fl-ch-${method.toLowerCase()}`
    const s = await RawConnection.open(port(lane))
    s.write(requestBytes({ method, path: `${BASE}/subscribe/${channel}`, headers: { Accept: 'text/event-stream' }, ...(body !== undefined ? { body } : {}) }, 'keep-alive'))
    await s.waitFor((text) => text.includes(`data: subscribe,${channel},1\n\n`), 'the subscribe confirmation')
    const head = s.text().slice(0, s.text().indexOf('\r\n\r\n'))
    expect(head).toMatch(/^HTTP\/1\.1 200 /)
    expect(head).toMatch(/\r\ncontent-type: text\/event-stream/i)
    expect(head).toContain('\r\nDate: ')
    expect(await direct.publish(channel, UTF8)).toBe(1)
    await s.waitFor((text) => text.includes(`data: message,${channel},${UTF8}\n\n`), 'the published message')
    s.close()
    await waitFor(async () => ((await direct.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1] === 0, { message: 'the subscription to end' })
  })

  test('SSE subscribe pipelined after a lane-served request on the same connection', async () => {
    const channel = 'fl-ch-pipelined'
    const s = await RawConnection.open(port(lane))
    s.write(
      Buffer.concat([
        requestBytes({ method: 'GET', path: `${BASE}/get/fl:k` }, 'keep-alive'),
        requestBytes({ method: 'GET', path: `${BASE}/subscribe/${channel}`, headers: { Accept: 'text/event-stream' } }, 'keep-alive'),
      ]),
    )
    await s.waitFor((text) => text.includes(`data: subscribe,${channel},1\n\n`), 'the subscribe confirmation')
    const [first] = parseAll(s.buf())
    expect(via(first!)).toBe('lane')
    expect(JSON.parse(first!.text)).toEqual({ result: UTF8 })
    expect(await direct.publish(channel, 'm1')).toBe(1)
    await s.waitFor((text) => text.includes(`data: message,${channel},m1\n\n`), 'the published message')
    s.close()
    await waitFor(async () => ((await direct.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1] === 0, { message: 'the subscription to end' })
  })

  test('an oversized header section gets the gateway JSON 431 through the lane gateway, as without it', async () => {
    const req: Req = { method: 'GET', path: `${BASE}/get/fl:k`, headers: { 'X-Pad': 'a'.repeat(70 * 1024) } }
    const [a, b] = [await send(lane, req), await send(plain, req)]
    expect([a.status, b.status]).toEqual([431, 431])
    expect(a.body.equals(b.body)).toBe(true)
    expect(JSON.parse(a.text).error).toMatch(/^TOOLARGE /)
  })
})

/** Sends `bytes`, half-closes (FIN), and resolves with everything the server sent until it closed. */
async function sendThenFin(p: number, bytes: Buffer): Promise<string> {
  const x = await exchange(p, [bytes], { timeoutMs: 5_000 })
  if (x.end === 'timeout') throw new Error(`no close within 5 s; got ${JSON.stringify(x.raw.toString('latin1'))}`)
  return x.raw.toString('utf8')
}

describe('the client half-closes (FIN)', () => {
  test('after a complete request: it is still answered, then the connection closes (both paths)', async () => {
    const bytes = requestBytes({ method: 'GET', path: `${BASE}/get/fl:k` }, 'keep-alive')
    for (const [gw, path] of [[lane, 'lane'], [plain, 'node']] as const) {
      const res = parseResponse(Buffer.from(await sendThenFin(port(gw), bytes), 'utf8'), true)!
      expect([res.status, via(res), res.headers.connection, JSON.parse(res.text)]).toEqual([200, path, 'keep-alive', { result: UTF8 }])
    }
  })

  // A FIN in the middle of a request (partial header section or partial body): node:http reports
  // HPE_INVALID_EOF_STATE to 'clientError', where the gateway answers a JSON 400; so does the lane.
  test.each([
    ['a partial header section', Buffer.from(`GET ${BASE}/get/fl:k HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: `, 'latin1')],
    ['a partial body', Buffer.from(`POST ${BASE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${WRITE_TOKEN}\r\nContent-Length: 20\r\n\r\n["GET",`, 'latin1')],
  ])('in the middle of %s: the same JSON 400 as node:http gives', async (_name, bytes) => {
    const b = await sendThenFin(port(plain), bytes)
    expect(b).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(b).toContain('{"error":"BADREQUEST malformed HTTP request"}')
    const a = await sendThenFin(port(lane), bytes)
    // Actual: '' (the connection is closed without a reply).
    expect(a).toBe(b)
  })
})

describe('drain: gateway.stop() and a lane-served keep-alive connection', () => {
  test('a request in flight when the drain starts gets its reply with connection: close; an idle connection is closed after its next request', async () => {
    const logs: Record<string, unknown>[] = []
    const gw = await startGateway({
      instances: instances(),
      extra: { log: { level: 'info' } },
      logDestination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>)
          cb()
        },
      }) as never,
    })
    const dataPort = port(gw)
    const busy = await KeepAliveConnection.open(dataPort)
    const idle = await KeepAliveConnection.open(dataPort)
    try {
      const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }
      // Both connections are kept alive by the lane first.
      for (const c of [busy, idle]) {
        const r = await c.request('POST', BASE, AUTH, '["PING"]')
        expect([r.status, r.text, via(r), r.headers.connection]).toEqual([200, '{"result":"PONG"}', 'lane', 'keep-alive'])
      }
      let started = 0
      const off = gw.gateway.events.on('requestStart', () => started++)
      const inFlight = busy.request('POST', BASE, AUTH, '["DEBUG","SLEEP","0.5"]')
      await waitFor(() => started === 1, { intervalMs: 5, message: 'the slow request to start' })
      off()
      const stopped = gw.gateway.stop({ delayMs: 0, timeoutMs: 10_000, idleCloseMs: 60_000 })
      // The listener is closed: a new connection is refused (the client goes elsewhere).
      await expect(KeepAliveConnection.open(dataPort)).rejects.toBeInstanceOf(ConnectionRefused)
      const r = await inFlight
      expect([r.status, r.text, via(r)]).toEqual([200, '{"result":"OK"}', 'lane'])
      expect(r.headers.connection).toBe('close')
      expect(r.headers['keep-alive']).toBeUndefined()
      await waitFor(() => busy.closed, { message: 'the server to close the drained connection' })
      // The idle connection was left open; its next request is answered, with connection: close.
      expect(idle.closed).toBe(false)
      const last = await idle.request('GET', `${BASE}/get/fl:k`, AUTH)
      expect([last.status, via(last), last.headers.connection]).toEqual([200, 'lane', 'close'])
      await waitFor(() => idle.closed, { message: 'the server to close the idle connection' })
      await stopped
      const done = logs.find((l) => String(l.msg).startsWith('shutdown: in-flight requests done'))
      expect(done, JSON.stringify(logs.map((l) => l.msg))).toMatchObject({ inflightAtStart: 1, connectionsAtStart: 2, requestsDuringDrain: 1, connectionClose: 2, cut: 0, destroyed: 0 })
    } finally {
      busy.close()
      idle.close()
      await gw.stop()
    }
  })
})
