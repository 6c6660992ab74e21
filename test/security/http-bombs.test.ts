// Attacks on the HTTP side, each against the fast lane and against node:http's path (a gateway
// with `http.fastLane: false`), on a real redis-server, with a read token or none: header bombs,
// a JSON depth bomb, a pipeline of a million commands, millions of arguments, many 10 MiB bodies
// at once, and clients that never read their replies. Each test asserts the answer (the status and
// code the README documents, nothing sent to Redis for a refused request) and that a second
// client's requests, made while the attack runs, are served. Figures (how long other clients wait,
// memory) are bench/attacks.ts's: nothing here is timed.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { exchange, parseAll, rawRequest, RawConnection, type RawResponse } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const run = promisify(execFile)
const BASE = '/v1/instances/main'
/** limits of the `small` gateways. */
const SMALL = { maxArgs: 10, maxCommands: 3, inflightBytes: 20 * 1024 * 1024, writeTimeoutMs: 1_000 }

let redis: RedisServer
let direct: Redis
/** Default limits, fast lane on / off. */
const dflt: Record<'lane' | 'node', TestGateway> = {} as never
/** Small limits (SMALL), fast lane on / off. */
const small: Record<'lane' | 'node', TestGateway> = {} as never
const PATHS = ['lane', 'node'] as const

beforeAll(async () => {
  redis = await startRedis()
  direct = redis.client()
  const instances = [{ name: 'main', endpoints: [redis.url] }]
  const limits = { maxArgs: SMALL.maxArgs, maxCommands: SMALL.maxCommands, inflightBytes: `${SMALL.inflightBytes}B`, writeTimeout: `${SMALL.writeTimeoutMs}ms` }
  ;[dflt.lane, dflt.node, small.lane, small.node] = await Promise.all([
    startGateway({ instances }),
    startGateway({ instances, extra: { http: { fastLane: false } } }),
    startGateway({ instances, extra: { limits } }),
    startGateway({ instances, extra: { limits, http: { fastLane: false } } }),
  ])
  for (const gw of [dflt.lane, dflt.node, small.lane, small.node]) {
    await waitFor(async () => (await rawRequest(port(gw), get('/ping'))).status === 200, { message: 'gateway serving' })
  }
}, 60_000)

afterAll(async () => {
  direct?.disconnect()
  await Promise.all([dflt.lane, dflt.node, small.lane, small.node].map((gw) => gw?.stop()))
  await redis?.stop()
})

const port = (gw: TestGateway): number => gw.gateway.dataAddress.port

function head(method: string, target: string, lines: string[] = [], token: string | null = WRITE_TOKEN): string {
  const all = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...(token === null ? [] : [`Authorization: Bearer ${token}`]), ...lines]
  return `${all.join('\r\n')}\r\n\r\n`
}
const get = (path: string, token: string | null = WRITE_TOKEN): string => head('GET', `${BASE}${path}`, ['Connection: close'], token)
function post(path: string, body: string | Buffer, token: string | null = WRITE_TOKEN, connection = 'close'): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body
  return Buffer.concat([Buffer.from(head('POST', `${BASE}${path}`, [`Content-Length: ${b.length}`, `Connection: ${connection}`], token)), b])
}

/** The JSON error code of a reply: its first word. */
const code = (r: RawResponse): string => String((JSON.parse(r.text) as { error?: string }).error).split(' ')[0]!

/**
 * Runs `attack` while a second client sends requests one after another (each on its own
 * connection), the first of them at once; resolves with the attack's result once it has settled,
 * after checking that every request of the second client was served. No latency is asserted.
 */
async function whileServing<T>(gw: TestGateway, attack: () => Promise<T>): Promise<T> {
  let done = false
  const running = attack().finally(() => (done = true))
  let served = 0
  const bystander = (async () => {
    do {
      const r = await rawRequest(port(gw), get(`/incr/bystander`), { timeoutMs: 60_000 })
      expect([r.status, r.text]).toEqual([200, expect.stringMatching(/^\{"result":\d+\}$/)])
      served++
    } while (!done)
  })()
  const [result] = await Promise.all([running, bystander])
  expect(served).toBeGreaterThan(0)
  return result
}

describe.each(PATHS)('through the %s path', (path) => {
  test('a header bomb (10,000 short header lines in 64 KiB), ten at once: 431 TOOLARGE before authentication', async () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => `x${i % 10}:1`)
    const bomb = head('GET', `${BASE}/get/k`, lines, null)
    expect(bomb.length).toBeLessThan(64 * 1024)
    const replies = await whileServing(dflt[path], () => Promise.all(Array.from({ length: 10 }, () => rawRequest(port(dflt[path]), bomb))))
    for (const r of replies) {
      expect(r.status).toBe(431)
      expect(JSON.parse(r.text)).toEqual({ error: 'TOOLARGE more than 100 header lines (limits.maxHeaders)' })
      expect(r.headers.connection).toBe('close')
    }
  })

  test('an Authorization after 2,100 header lines is never read: 431, and nothing written', async () => {
    const lines = [...Array.from({ length: 2_100 }, (_, i) => `x-h${i}: v`), `Authorization: Bearer ${WRITE_TOKEN}`, 'Connection: close']
    const r = await whileServing(dflt[path], () => rawRequest(port(dflt[path]), head('GET', `${BASE}/set/bomb:auth:${path}/v`, lines, null)))
    expect([r.status, code(r)]).toEqual([431, 'TOOLARGE'])
    expect(await direct.exists(`bomb:auth:${path}`)).toBe(0)
  })

  test('a JSON depth bomb (5 million [) with a read token: 400, found in one pass', async () => {
    const r = await whileServing(dflt[path], () => rawRequest(port(dflt[path]), post('', '['.repeat(5_000_000), READ_TOKEN), { timeoutMs: 60_000 }))
    expect(r.status).toBe(400)
    expect(JSON.parse(r.text).error).toMatch(/^BADREQUEST body nests arrays or objects too deep/)
  })

  test('a pipeline of 1,000,000 PINGs: 413 naming limits.maxCommands, nothing sent to Redis', async () => {
    const before = (await redis.commandStats())['ping'] ?? 0
    const body = `[${Array.from({ length: 1_000_000 }, () => '["PING"]').join(',')}]`
    const r = await whileServing(dflt[path], () => rawRequest(port(dflt[path]), post('/pipeline', body, READ_TOKEN), { timeoutMs: 60_000 }))
    expect(r.status).toBe(413)
    expect(JSON.parse(r.text)).toEqual({ error: 'TOOLARGE request has more than 10000 commands (limits.maxCommands); send it in parts' })
    // The bystander's INCRs are not PINGs; health checks use ROLE.
    expect((await redis.commandStats())['ping'] ?? 0).toBe(before)
  })

  test('4.9 million ECHO arguments: 413 naming limits.maxArgs, nothing sent to Redis', async () => {
    const before = (await redis.commandStats())['echo'] ?? 0
    const body = `["ECHO"${',1'.repeat(4_900_000)}]`
    expect(body.length).toBeLessThan(10 * 1024 * 1024)
    const r = await whileServing(dflt[path], () => rawRequest(port(dflt[path]), post('', body, READ_TOKEN), { timeoutMs: 60_000 }))
    expect(r.status).toBe(413)
    expect(JSON.parse(r.text)).toEqual({ error: 'TOOLARGE request has more than 100000 arguments (limits.maxArgs); send it in parts' })
    expect((await redis.commandStats())['echo'] ?? 0).toBe(before)
  })

  test('maxArgs and maxCommands: at the limit served; one over is a 413, nothing runs, and the connection is kept', async () => {
    const gw = small[path]
    const k = (name: string): string => `bomb:small:${path}:${name}`
    const cases: { name: string; bytes: (key: string) => Buffer; ok: boolean }[] = [
      { name: 'command of 10 arguments', bytes: (key) => post('', JSON.stringify(['RPUSH', key, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']), WRITE_TOKEN, 'keep-alive'), ok: true },
      { name: 'command of 11 arguments', bytes: (key) => post('', JSON.stringify(['RPUSH', key, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']), WRITE_TOKEN, 'keep-alive'), ok: false },
      { name: 'pipeline of 3 commands, 9 arguments', bytes: (key) => post('/pipeline', JSON.stringify([['SET', key, 'v'], ['SET', `${key}b`, 'v'], ['SET', `${key}c`, 'v']]), WRITE_TOKEN, 'keep-alive'), ok: true },
      { name: 'pipeline of 4 commands', bytes: (key) => post('/pipeline', JSON.stringify([['SET', key, 'v'], ['PING'], ['PING'], ['PING']]), WRITE_TOKEN, 'keep-alive'), ok: false },
      { name: 'transaction of 4 commands', bytes: (key) => post('/multi-exec', JSON.stringify([['SET', key, 'v'], ['PING'], ['PING'], ['PING']]), WRITE_TOKEN, 'keep-alive'), ok: false },
      { name: 'pipeline of 11 arguments in 3 commands', bytes: (key) => post('/pipeline', JSON.stringify([['SET', key, 'v'], ['SET', `${key}b`, 'v'], ['SET', `${key}c`, 'v', 'EX', 100]]), WRITE_TOKEN, 'keep-alive'), ok: false },
      { name: 'path form of 10 arguments', bytes: (key) => Buffer.from(head('GET', `${BASE}/rpush/${key}/a/b/c/d/e/f?g=h`, ['Connection: keep-alive'])), ok: true },
      { name: 'path form of 11 arguments (the POST body counts)', bytes: (key) => post(`/rpush/${key}/a/b/c/d/e/f?g=h`, 'i', WRITE_TOKEN, 'keep-alive'), ok: false },
    ]
    const c = await RawConnection.open(port(gw))
    try {
      await whileServing(gw, async () => {
        for (const [i, x] of cases.entries()) {
          c.write(x.bytes(k(String(i))))
          const r = (await c.replies(i + 1))[i]!
          if (x.ok) expect([x.name, r.status], r.text).toEqual([x.name, 200])
          else {
            expect([x.name, r.status, code(r)], r.text).toEqual([x.name, 413, 'TOOLARGE'])
            expect(JSON.parse(r.text).error).toMatch(/\(limits\.max(Args|Commands)\)/)
            expect(r.headers.connection, x.name).toBe('keep-alive')
            expect(await direct.exists(k(String(i)), `${k(String(i))}b`, `${k(String(i))}2`), x.name).toBe(0)
          }
        }
      })
      expect(c.closed).toBe(false)
    } finally {
      c.close()
    }
  })

  test('many 10 MiB bodies at once against limits.inflightBytes: some 503 OVERLOADED, the budget never over its limit, others served', async () => {
    const gw = small[path]
    const budget = gw.gateway.budget
    const value = 'b'.repeat(9 * 1024 * 1024)
    const big = (i: number): Buffer => post('', JSON.stringify(['SET', `bomb:big:${path}:${i}`, value]))
    const replies = await whileServing(gw, () => Promise.all(Array.from({ length: 8 }, (_, i) => rawRequest(port(gw), big(i), { timeoutMs: 60_000 }))))
    const statuses = replies.map((r) => `${r.status} ${r.status === 200 ? 'OK' : code(r)}`)
    for (const s of statuses) expect(['200 OK', '503 OVERLOADED']).toContain(s)
    expect(statuses).toContain('503 OVERLOADED')
    for (const r of replies.filter((x) => x.status === 503)) {
      expect(r.headers['retry-after']).toBe('1')
      expect(r.headers.connection).toBe('close')
    }
    expect(budget.highWater).toBeLessThanOrEqual(SMALL.inflightBytes)
    await waitFor(() => budget.inUse === 0, { message: 'every request to give its bytes back' })
    // Once the others are gone, a big body is served.
    const alone = await rawRequest(port(gw), big(99), { timeoutMs: 60_000 })
    expect([alone.status, alone.text]).toEqual([200, '{"result":"OK"}'])
    expect(await direct.strlen(`bomb:big:${path}:99`)).toBe(value.length)
  })

  test('clients that never read their big replies are disconnected after limits.writeTimeout, and the budget is back to 0', async () => {
    const gw = small[path]
    const budget = gw.gateway.budget
    const key = `bomb:read:${path}`
    // Six 1 MiB replies in a row are more than the kernel buffers of a loopback connection hold
    // (~4 MiB here): the rest waits in the gateway while the client reads nothing.
    const value = 'r'.repeat(1024 * 1024)
    await direct.set(key, value)
    const ask = head('GET', `${BASE}/get/${key}`, ['Connection: keep-alive']).repeat(6)
    const readers = await Promise.all(Array.from({ length: 2 }, () => RawConnection.open(port(gw))))
    try {
      await whileServing(gw, async () => {
        for (const r of readers) {
          r.socket.pause()
          r.write(ask)
        }
        // The write timeout is 1 s: each connection is closed by the gateway, replies unsent.
        await waitFor(async () => (await Promise.all(readers.map((r) => serverSideOpen(port(gw), r.socket.localPort!)))).every((open) => !open), {
          message: 'the gateway to close the connections of the clients that do not read',
        })
      })
      await waitFor(() => budget.inUse === 0, { message: 'the budget to be back to 0' })
      expect(budget.highWater).toBeLessThanOrEqual(SMALL.inflightBytes)
      // Reading again, each client gets what the kernel held, then the end: never every reply.
      for (const r of readers) r.socket.resume()
      await waitFor(() => readers.every((r) => r.ended), { message: 'each client to see its connection end' })
      for (const r of readers) expect(parseAll(r.buf(), true).length).toBeLessThan(6)
    } finally {
      for (const r of readers) r.close()
    }
  })
})

/** Whether the gateway's side of the connection from `clientPort` is still established. */
async function serverSideOpen(gatewayPort: number, clientPort: number): Promise<boolean> {
  const { stdout } = await run('ss', ['-Htn', 'state', 'established', `( sport = :${gatewayPort} and dport = :${clientPort} )`])
  return stdout.trim().length > 0
}

describe('a throw in the fast lane ends one connection, never the process', () => {
  test('a fault injected into the lane: that connection is destroyed, a fault event says where, other clients are served', async () => {
    const gw = dflt.lane
    const faults: string[] = []
    const off = gw.gateway.events.on('fault', (e) => faults.push(`${e.where}: ${e.error.message}`))
    const budget = gw.gateway.budget
    const tryTake = budget.tryTake.bind(budget)
    try {
      // A body beyond each request's free 64 KiB draws on the shared budget as it arrives: make
      // that throw, as a bug in the lane's body handling would.
      budget.tryTake = () => {
        throw new Error('injected fault')
      }
      const x = await whileServing(gw, () => exchange(port(gw), [post('', JSON.stringify(['SET', 'bomb:fault', 'f'.repeat(200 * 1024)]))], { timeoutMs: 10_000 }))
      expect(x.responses).toEqual([])
      expect(x.end).not.toBe('timeout')
      expect(faults).toEqual(['http_connection: injected fault'])
    } finally {
      budget.tryTake = tryTake
      off()
    }
    expect(await direct.exists('bomb:fault')).toBe(0)
    const metrics = await (await fetch(`${gw.opsUrl}/metrics`)).text()
    expect(metrics).toMatch(/^redis_gateway_faults_total\{where="http_connection"\} 1$/m)
    // And the same request is served once nothing throws.
    const r = await rawRequest(port(gw), post('', JSON.stringify(['SET', 'bomb:fault', 'f'.repeat(200 * 1024)])))
    expect([r.status, r.text]).toEqual([200, '{"result":"OK"}'])
  })
})
