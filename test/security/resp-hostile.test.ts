// Attacks from the Redis side: a Redis that speaks hostile RESP (a compromised or
// buggy server, or anything that answers on its port) must not take the gateway down or make it
// hold memory without bound. The gateway runs in-process with two instances: `hostile`, whose one
// endpoint is a fake Redis (test/helpers/fake-redis.ts) scripted to answer a client's GET with the
// bytes under test, and `healthy`, a real redis-server whose clients must keep being served during
// and after each attack.
//
// The contract (written for the iterative streaming RESP parser that replaces redis-parser):
// - Well-formed but too big or too deep (more than limits.maxReply bytes, counting
//   REPLY_ELEMENT_BYTES = 48 per element, or arrays nested deeper than 128): 413 TOOLARGE naming
//   the limit; what was sent is skipped, so the connection stays usable (the next GET is served on
//   it, and the fake sees no new connection); nothing is held beyond the limit. A reply declared
//   too big whose rest never comes (a 10 GB bulk, 2^31 elements) is answered 413 at once; the
//   fake then drops the connection, and the gateway reconnects.
// - Protocol violations (a bad type byte, RESP3 types on this RESP2 connection, a bad or negative
//   length other than -1, a bulk not followed by CRLF, a line over 64 KiB without CRLF, an integer
//   that is not a number, a reply nobody asked for, garbage): the gateway resets that connection
//   and reconnects by itself, the request in flight gets a 5xx JSON error (503 UPSTREAMRESET or
//   502), and redis_gateway_faults_total{where="redis_connection"} grows (the `fault` event that
//   RespConnectionHooks.onFault feeds through the pool to gateway.ts).
// - A reply cut short by the server closing: 503 UPSTREAMRESET (a lost connection, not a fault).
// - Always: no exception escapes (in-process, an uncaught one would land in the test runner), and
//   the healthy instance is served meanwhile and afterwards.
//
// The contract's checks use expect.soft, so a failing case reports every way in which it fails.
// Every response is printed. Nothing is timed: waits are waitFor with generous deadlines.

import v8 from 'node:v8'
import vm from 'node:vm'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest'
import { createPrng } from '../../src/balancer/prng.js'
import { REPLY_ELEMENT_BYTES } from '../../src/resilience/byte-budget.js'
import { resp, startFakeRedis, type FakeRedis } from '../helpers/fake-redis.js'
import { READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { post } from '../helpers/rest.js'
import { waitFor } from '../helpers/wait.js'

// A case passes in well under a few seconds; one that fails waits out several SETTLE_MS deadlines.
vi.setConfig({ testTimeout: 90_000 })

const MiB = 1024 * 1024
/** limits.maxReply, set for these tests (the default is larger: 64 MiB). */
const MAX_REPLY = 10 * MiB
/** Deepest array nesting a reply may have. */
const MAX_DEPTH = 128
/** How long the gateway may take to notice, reset, reconnect: generous, never a timing goal. */
const SETTLE_MS = 10_000

// Forced GC, to measure what the gateway still references (not garbage waiting for a collection).
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
function externalBytes(): number {
  gc()
  gc()
  return process.memoryUsage().arrayBuffers
}

interface Reply {
  status: number
  text: string
  json: { result?: unknown; error?: string } | null
}

async function call(gw: TestGateway, instance: string, body: unknown, token = READ_TOKEN): Promise<Reply> {
  const { status, text, json } = await post(gw.base(instance), body, { token, timeoutMs: 30_000 })
  // A body that is not JSON is printed and asserted on by the caller: every reply must be JSON.
  return {
    status,
    text: text.length > 300 ? `${text.slice(0, 300)}... (${text.length} chars)` : text,
    json: json === undefined ? null : (json as Reply['json']),
  }
}

const show = (what: string, r: Reply): void => console.log(`[resp-hostile] ${what}: ${r.status} ${r.text}`)

async function faults(gw: TestGateway): Promise<number> {
  const text = await (await fetch(`${gw.opsUrl}/metrics`)).text()
  const m = /^redis_gateway_faults_total\{where="redis_connection"\} (\d+)$/m.exec(text)
  return m ? Number(m[1]) : 0
}

/** Runs `check` until it passes or SETTLE_MS is over; a timeout is a soft failure naming `what`. */
async function eventually(what: string, check: () => unknown, timeoutMs = SETTLE_MS): Promise<boolean> {
  try {
    await waitFor(check, { timeoutMs, intervalMs: 25, message: what })
    return true
  } catch (err) {
    expect.soft(false, `${what}: ${(err as Error).message.split('\n')[0]}`).toBe(true)
    return false
  }
}

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
}, 30_000)
afterAll(async () => {
  await redis?.stop()
})

/** What a test attacks with: the fake, and a gateway serving `hostile` (the fake) and `healthy` (real Redis). */
let fake: FakeRedis
let gw: TestGateway
/** Exceptions that escaped to the process while the test ran (the gateway runs in this process). */
let escaped: unknown[] = []
const onEscape = (e: unknown): void => void escaped.push(e)

beforeEach(async () => {
  escaped = []
  process.on('uncaughtException', onEscape)
  process.on('unhandledRejection', onEscape)
  fake = await startFakeRedis()
  gw = await startGateway({
    instances: [
      { name: 'hostile', endpoints: [fake.url] },
      { name: 'healthy', endpoints: [redis.url] },
    ],
    extra: { limits: { maxReply: '10MiB' } },
  })
  // Ready: the fake answered the ready check and a health check, and a GET goes through.
  await waitFor(async () => (await call(gw, 'hostile', ['GET', 'warm'])).status === 200, { timeoutMs: 15_000, message: 'hostile instance serving' })
  await waitFor(async () => (await call(gw, 'healthy', ['SET', 'warm', '1'], WRITE_TOKEN)).status === 200, { timeoutMs: 15_000, message: 'healthy instance serving' })
  expect(fake.connections).toHaveLength(1)
})

afterEach(async () => {
  try {
    await gw?.stop()
    await fake?.close()
  } finally {
    process.off('uncaughtException', onEscape)
    process.off('unhandledRejection', onEscape)
  }
})

/**
 * Runs `attack` while a second client reads and writes the healthy instance in a loop; checks that
 * every one of its requests was served (none while the attack ran is allowed to fail), and once more after.
 */
async function whileHealthyServed<T>(attack: () => Promise<T>): Promise<T> {
  let done = false
  const running = attack().finally(() => (done = true))
  let served = 0
  const failures: string[] = []
  const bystander = (async () => {
    do {
      const w = await call(gw, 'healthy', ['INCR', 'bystander'], WRITE_TOKEN)
      const r = await call(gw, 'healthy', ['GET', 'bystander'])
      if (w.status !== 200 || r.status !== 200 || typeof r.json?.result !== 'string') failures.push(`${w.status} ${w.text} / ${r.status} ${r.text}`)
      else served++
    } while (!done)
  })()
  const [result] = await Promise.all([running, bystander])
  expect.soft(failures, 'requests to the healthy instance that failed during the attack').toEqual([])
  expect.soft(served, 'requests to the healthy instance served during the attack').toBeGreaterThan(0)
  return result
}

/** The checks every case ends with: nothing escaped, the healthy instance serves a write and a read. */
async function survived(): Promise<void> {
  expect.soft(escaped.map(String), 'exceptions that escaped to the process').toEqual([])
  const key = `after:${Math.random()}`
  expect.soft(await call(gw, 'healthy', ['SET', key, 'fine'], WRITE_TOKEN)).toMatchObject({ status: 200, json: { result: 'OK' } })
  expect.soft(await call(gw, 'healthy', ['GET', key])).toMatchObject({ status: 200, json: { result: 'fine' } })
}

/** The hostile instance serves a GET normally again: the fake answers by default from now on. */
async function hostileServesAgain(): Promise<boolean> {
  fake.reset()
  fake.store.set('after', Buffer.from('ok'))
  return eventually('the hostile instance to serve a normal GET again', async () => {
    const r = await call(gw, 'hostile', ['GET', 'after'])
    return r.status === 200 && r.json?.result === 'ok'
  })
}

/** A well-formed reply over a limit: 413 naming it, and the same connection serves the next GET. */
async function expectTooLarge(what: string, r: Reply, names: RegExp): Promise<void> {
  show(what, r)
  expect.soft(r.status, `${what}: status`).toBe(413)
  expect.soft(r.json?.error, `${what}: error`).toMatch(/^TOOLARGE /)
  expect.soft(r.json?.error, `${what}: names the limit`).toMatch(names)
  fake.reset()
  fake.store.set('after', Buffer.from('ok'))
  const next = await call(gw, 'hostile', ['GET', 'after'])
  show(`${what}, then a GET on the same instance`, next)
  expect.soft(next, `${what}: the next GET`).toMatchObject({ status: 200, json: { result: 'ok' } })
  expect.soft(fake.connections.length, `${what}: connections the fake saw (the first one must be kept)`).toBe(1)
  expect.soft(fake.connections[0]!.closed, `${what}: the gateway's connection still open`).toBe(false)
  expect.soft(gw.gateway.budget.highWater, `${what}: bytes held (budget high water)`).toBeLessThanOrEqual(MAX_REPLY)
  await survived()
}

/** A protocol violation: 5xx JSON error, the gateway resets and reconnects, a fault is counted. */
async function expectReset(what: string, r: Reply | null, faultsBefore: number): Promise<void> {
  if (r !== null) {
    show(what, r)
    expect.soft(r.status, `${what}: a 5xx`).toBeGreaterThanOrEqual(500)
    expect.soft(r.status, `${what}: a 5xx`).toBeLessThan(600)
    expect.soft(r.json?.error, `${what}: a JSON error`).toEqual(expect.any(String))
  }
  const first = fake.connections[0]!
  await eventually(`${what}: the gateway to reset its connection to the fake`, () => first.closed && first.closedBy === 'client')
  await eventually(`${what}: redis_gateway_faults_total{where="redis_connection"} to grow from ${faultsBefore}`, async () => (await faults(gw)) > faultsBefore)
  if (await hostileServesAgain()) expect.soft(fake.connections.length, `${what}: a new connection`).toBeGreaterThan(1)
  await survived()
}

/** A reply cut short by the server: 503 UPSTREAMRESET, reconnect, served again. */
async function expectLost(what: string, r: Reply): Promise<void> {
  show(what, r)
  expect.soft(r.status, `${what}: status`).toBe(503)
  expect.soft(r.json?.error, `${what}: error`).toMatch(/^UPSTREAMRESET /)
  await hostileServesAgain()
  await survived()
}

/** The fake answers GET with `bytes` (then keeps the connection open unless `end`). */
function answerGet(bytes: string | Buffer, opts: { end?: boolean } = {}): void {
  fake.on('GET', (_, socket) => (opts.end ? socket.end(bytes) : socket.write(bytes)))
}

const getK = (): Promise<Reply> => call(gw, 'hostile', ['GET', 'k'])

describe('well-formed replies over a limit: 413, and the connection stays usable', () => {
  test(`a bulk string of ${MAX_REPLY / MiB} MiB + 1 byte, sent whole`, async () => {
    answerGet(resp.bulk(Buffer.alloc(MAX_REPLY + 1, 'b')))
    const r = await whileHealthyServed(getK)
    await expectTooLarge('bulk over maxReply', r, /limits\.maxReply/)
  })

  test(`an array of 300,000 integers (${REPLY_ELEMENT_BYTES} bytes each count: over maxReply), sent whole`, async () => {
    const n = 300_000
    expect(n * REPLY_ELEMENT_BYTES).toBeGreaterThan(MAX_REPLY)
    answerGet(Buffer.from(`*${n}\r\n${':1\r\n'.repeat(n)}`))
    const r = await whileHealthyServed(getK)
    await expectTooLarge('300,000 elements', r, /limits\.maxReply/)
  })

  test.each([100_000, 7_500, MAX_DEPTH + 1])('an array nested %i levels deep (*1 repeated, then :1)', async (depth) => {
    answerGet(`${'*1\r\n'.repeat(depth)}:1\r\n`)
    const r = await whileHealthyServed(getK)
    await expectTooLarge(`${depth} levels deep`, r, new RegExp(`\\b${MAX_DEPTH}\\b`))
  })

  test(`an array nested exactly ${MAX_DEPTH} levels deep is served`, async () => {
    answerGet(`${'*1\r\n'.repeat(MAX_DEPTH)}:1\r\n`)
    const r = await whileHealthyServed(getK)
    show(`${MAX_DEPTH} levels deep`, r)
    let v: unknown = r.json?.result
    let depth = 0
    while (Array.isArray(v) && v.length === 1) {
      v = v[0]
      depth++
    }
    expect.soft([r.status, depth, v]).toEqual([200, MAX_DEPTH, 1])
    await survived()
  })

  test('an array declaring 2^31 elements (then nothing): 413 at once; the hostile instance works again once the fake drops the connection', async () => {
    answerGet('*2147483648\r\n')
    const r = await whileHealthyServed(getK)
    show('2^31 elements', r)
    expect.soft(r.status).toBe(413)
    expect.soft(r.json?.error).toMatch(/^TOOLARGE .*limits\.maxReply/)
    expect.soft(gw.gateway.budget.highWater).toBeLessThanOrEqual(MAX_REPLY)
    // The rest never comes: the fake gives up on the connection and the gateway reconnects.
    fake.drop()
    await hostileServesAgain()
    await survived()
  })

  test('a bulk declaring 9,999,999,999 bytes, then nothing: 413 at once', async () => {
    answerGet('$9999999999\r\n')
    const r = await whileHealthyServed(getK)
    show('$9999999999 then nothing', r)
    expect.soft(r.status).toBe(413)
    expect.soft(r.json?.error).toMatch(/^TOOLARGE .*limits\.maxReply/)
    fake.drop()
    await hostileServesAgain()
    await survived()
  })

  test('a bulk declaring 9,999,999,999 bytes, then nothing, the connection kept open: 413 at once, and the stalled connection is reset at the next timeout, not kept forever', async () => {
    answerGet('$9999999999\r\n')
    const r = await whileHealthyServed(getK)
    show('$9999999999 then silence', r)
    expect.soft(r.status).toBe(413)
    // The fake keeps the connection and sends nothing more: the next command on it gets no reply
    // within the command timeout, nothing at all arrived meanwhile, so the gateway resets it.
    fake.reset()
    fake.store.set('after', Buffer.from('ok'))
    const stuck = await call(gw, 'hostile', ['GET', 'after'])
    show('GET behind the stalled reply', stuck)
    expect.soft(stuck.status).toBeGreaterThanOrEqual(500)
    await eventually('the gateway to reset its stalled connection to the fake', () => fake.connections[0]?.closed === true && fake.connections[0]?.closedBy === 'client')
    await hostileServesAgain()
    await survived()
  })

  test('a bulk declaring 9,999,999,999 bytes, then 64 MiB of them: 413, and the 64 MiB are not kept', async () => {
    const before = externalBytes()
    let sent!: Promise<void>
    fake.on('GET', (_, socket) => {
      socket.write('$9999999999\r\n')
      const chunk = Buffer.alloc(MiB, 'z')
      sent = (async () => {
        for (let i = 0; i < 64; i++) {
          // Each write's callback: handed to the kernel, so the gateway has read all but what the
          // loopback buffers hold (a few MiB).
          await new Promise<void>((resolve, reject) => socket.write(chunk, (err) => (err ? reject(err) : resolve())))
        }
      })()
    })
    const r = await whileHealthyServed(getK)
    show('$9999999999 then 64 MiB', r)
    expect.soft(r.status).toBe(413)
    expect.soft(r.json?.error).toMatch(/^TOOLARGE .*limits\.maxReply/)
    await sent.catch(() => {})
    const held = externalBytes() - before
    console.log(`[resp-hostile] $9999999999: external memory held after 64 MiB were sent: ${(held / MiB).toFixed(1)} MiB`)
    expect.soft(held, 'bytes held by the process after 64 MiB of an oversized bulk arrived').toBeLessThan(16 * MiB)
    expect.soft(gw.gateway.budget.highWater).toBeLessThanOrEqual(MAX_REPLY)
    fake.drop()
    await hostileServesAgain()
    await survived()
  })
})

describe('protocol violations: 5xx, the connection reset and counted as a fault, then served again', () => {
  const cases: [string, string | Buffer][] = [
    ['an unknown type byte ?', '?\r\n'],
    ['a RESP3 map %1', '%1\r\n+a\r\n+b\r\n'],
    ['a RESP3 null _', '_\r\n'],
    ['a RESP3 push >2', '>2\r\n+a\r\n+b\r\n'],
    ['a RESP3 boolean #t', '#t\r\n'],
    ['a negative bulk length $-5', '$-5\r\n'],
    ['a negative array length *-7', '*-7\r\n'],
    ['a bulk length that is not a number $abc', '$abc\r\n'],
    ['an array length with a stray character *1x', '*1x\r\n:1\r\n'],
    ['an empty bulk length $', '$\r\n'],
    ['a bulk followed by XY instead of CRLF', '$3\r\nabcXY'],
    ['a bulk followed by LF CR', '$3\r\nabc\n\r'],
    ['an integer reply that is not a number :abc', ':abc\r\n'],
    ['an empty integer reply :', ':\r\n'],
    ['an integer reply carrying JSON :1,"x":2', ':1,"x":2\r\n'],
    ['a simple string line of 10 MB without CRLF', Buffer.concat([Buffer.from('+'), Buffer.alloc(10_000_000, 'a')])],
    ['an error line of 100 KiB without CRLF', Buffer.concat([Buffer.from('-'), Buffer.alloc(100 * 1024, 'e')])],
  ]
  test.each(cases)('%s', async (what, bytes) => {
    answerGet(bytes)
    const before = await faults(gw)
    const r = await whileHealthyServed(getK)
    await expectReset(what, r, before)
  })

  test('a reply nobody asked for, on an idle connection', async () => {
    const before = await faults(gw)
    await whileHealthyServed(async () => {
      fake.connections[0]!.socket.write('+SURPRISE\r\n')
      await eventually('the gateway to reset the connection', () => fake.connections[0]!.closed)
    })
    await expectReset('unsolicited +SURPRISE', null, before)
  })

  test('an extra reply right behind the answer to a GET: the GET is answered, then the connection is reset', async () => {
    const before = await faults(gw)
    answerGet(Buffer.concat([resp.bulk('v'), Buffer.from(':1\r\n')]))
    const r = await whileHealthyServed(getK)
    show('GET answered with one reply too many', r)
    expect.soft(r).toMatchObject({ status: 200, json: { result: 'v' } })
    await expectReset('one reply too many', null, before)
  })

  test('random garbage (seeded, 20 rounds, then the fake closes): always a JSON answer; a bad first byte is a reset and a fault', async () => {
    const prng = createPrng(15)
    const TYPE_BYTES = new Set([...'+-:$*'].map((c) => c.charCodeAt(0)))
    const allowed = [200, 400, 413, 502, 503, 504]
    let expectedFaults = 0
    const before = await faults(gw)
    for (let round = 0; round < 20; round++) {
      const garbage = Buffer.alloc(1 + prng.int(256))
      for (let i = 0; i < garbage.length; i++) garbage[i] = prng.int(256)
      // Every other round starts like a reply (a RESP2 type byte), so the parser gets past it.
      if (round % 2 === 1) garbage[0] = '+-:$*'.charCodeAt(prng.int(5))
      const badStart = !TYPE_BYTES.has(garbage[0]!)
      if (badStart) expectedFaults++
      answerGet(garbage, { end: true })
      const r = await whileHealthyServed(getK)
      show(`garbage round ${round} (${garbage.length} bytes, first 0x${garbage[0]!.toString(16)})`, r)
      expect.soft(allowed, `round ${round}: status`).toContain(r.status)
      expect.soft(r.json, `round ${round}: a JSON body`).not.toBeNull()
      if (badStart) expect.soft(r.status, `round ${round}: a 5xx for a bad type byte`).toBeGreaterThanOrEqual(500)
      if (!(await hostileServesAgain())) break
    }
    console.log(`[resp-hostile] garbage: ${expectedFaults} rounds began with a byte that is no RESP2 type`)
    await eventually(`faults to grow by at least ${expectedFaults}`, async () => (await faults(gw)) - before >= expectedFaults)
    await survived()
  })
})

describe('replies cut short by the server closing: 503 UPSTREAMRESET, then served again', () => {
  const cases: [string, string][] = [
    ['a bulk of 10 with 3 bytes sent', '$10\r\nabc'],
    ['a bulk without its final LF', '$5\r\nhello\r'],
    ['an array of 3 with one element sent', '*3\r\n:1\r\n'],
    ['a simple string without CRLF', '+OK'],
    ['a type byte alone', '$'],
  ]
  test.each(cases)('%s', async (what, bytes) => {
    answerGet(bytes, { end: true })
    const r = await whileHealthyServed(getK)
    await expectLost(what, r)
  })
})

describe('a real Redis', () => {
  test('a read token\'s EVAL_RO returning a table nested 7,500 deep: 413, and the next request runs on the same connection', async () => {
    const readConnections = async (): Promise<string[]> =>
      (await redis.clientList())
        .filter((c) => (c['user'] ?? '').startsWith('redis-gateway-read-'))
        .map((c) => c['id']!)
        .sort()
    // The read level's connection, opened by a first request.
    expect(await call(gw, 'healthy', ['EVAL_RO', 'return 1', '0'])).toMatchObject({ status: 200, json: { result: 1 } })
    const before = await readConnections()
    expect(before).toHaveLength(1)
    const r = await whileHealthyServed(() => call(gw, 'healthy', ['EVAL_RO', 'local t = {} for i=1,7500 do t = {t} end return t', '0']))
    show('EVAL_RO 7,500 deep', r)
    expect.soft(r.status).toBe(413)
    expect.soft(r.json?.error).toMatch(new RegExp(`^TOOLARGE .*\\b${MAX_DEPTH}\\b`))
    const next = await call(gw, 'healthy', ['EVAL_RO', "return redis.call('GET', KEYS[1])", '1', 'warm'])
    show('EVAL_RO after it', next)
    expect.soft(next).toMatchObject({ status: 200, json: { result: '1' } })
    expect.soft(await readConnections(), 'the read level keeps its connection').toEqual(before)
    await survived()
  })
})
