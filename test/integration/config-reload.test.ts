// Live config reload end to end (the file is watched and changes apply live): real
// redis-servers, a real gateway watching its config file, edits made by atomic rewrites. Every
// wait is a waitFor with a deadline; nothing sleeps.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, startGateway, WRITE_TOKEN, type TestGateway, type TestGatewayOptions, type TestInstance } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

let r1: RedisServer
let r2: RedisServer
const gateways: TestGateway[] = []

beforeAll(async () => {
  ;[r1, r2] = await Promise.all([startRedis(), startRedis()])
})
afterAll(async () => {
  await Promise.all([r1?.stop(), r2?.stop()])
})
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop()
})

async function start(opts: Omit<TestGatewayOptions, 'watch'>): Promise<TestGateway> {
  const gw = await startGateway({ ...opts, watch: true })
  gateways.push(gw)
  return gw
}

interface Reply {
  status: number
  body: { result?: unknown; error?: string }
  headers: Headers
}

async function command(gw: TestGateway, instance: string, args: unknown[], token = WRITE_TOKEN): Promise<Reply> {
  const res = await fetch(gw.base(instance), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(args),
  })
  return { status: res.status, body: (await res.json()) as Reply['body'], headers: res.headers }
}

/** Sum of a metric's samples whose labels include `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const got: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[l[1]!] = l[2]!
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3])
  }
  return sum
}

async function discoveryErrors(gw: TestGateway): Promise<number> {
  const text = await (await fetch(`${gw.opsUrl}/metrics`)).text()
  return metricSum(text, 'redis_gateway_discovery_events_total', { source: 'static', outcome: 'error' })
}

const RELOAD_DEADLINE = { timeoutMs: 5_000, intervalMs: 25 }

describe('config reload', () => {
  it('(a) an instance added to the file becomes routable; removed, it is a 404', async () => {
    const one: TestInstance = { name: 'one', endpoints: [r1.url] }
    const two: TestInstance = { name: 'two', endpoints: [r2.url] }
    const gw = await start({ instances: [one] })

    const before = await command(gw, 'two', ['GET', 'k'])
    expect(before.status).toBe(404)
    expect(before.body.error).toMatch(/^NOTFOUND /)

    await gw.rewrite({ instances: [one, two] })
    await waitFor(async () => (await command(gw, 'two', ['SET', 'reload:a', 'on-two'])).status === 200, {
      ...RELOAD_DEADLINE,
      message: "instance 'two' routable after it was added to the file",
    })
    // It really went to the second server, and 'one' still serves its own.
    expect(await r2.client().get('reload:a')).toBe('on-two')
    expect(await r1.client().get('reload:a')).toBeNull()
    expect((await command(gw, 'one', ['PING'])).status).toBe(200)

    await gw.rewrite({ instances: [one] })
    await waitFor(async () => (await command(gw, 'two', ['GET', 'reload:a'])).status === 404, {
      ...RELOAD_DEADLINE,
      message: "instance 'two' gone (404) after it was removed from the file",
    })
    const gone = await command(gw, 'two', ['GET', 'reload:a'])
    expect(gone.body.error).toMatch(/^NOTFOUND /)
    expect((await command(gw, 'one', ['PING'])).body).toEqual({ result: 'PONG' })
  })

  it('(b) maintenance: drain gives 503 DRAINING with Retry-After; back to off gives 200', async () => {
    const gw = await start({ instances: [{ name: 'main', endpoints: [r1.url] }] })
    expect((await command(gw, 'main', ['SET', 'reload:b', '1'])).status).toBe(200)

    await gw.rewrite({
      instances: [{ name: 'main', endpoints: [r1.url], annotations: { 'redis-gateway.io/maintenance': 'drain' } }],
    })
    const drained = await waitFor(
      async () => {
        const r = await command(gw, 'main', ['GET', 'reload:b'])
        return r.status === 503 ? r : null
      },
      { ...RELOAD_DEADLINE, message: '503 after maintenance: drain' },
    )
    expect(drained.body.error).toMatch(/^DRAINING /)
    expect(Number(drained.headers.get('retry-after'))).toBeGreaterThan(0)
    // Writes are refused too, and nothing reached Redis.
    expect((await command(gw, 'main', ['SET', 'reload:b', '2'])).status).toBe(503)
    expect(await r1.client().get('reload:b')).toBe('1')

    await gw.rewrite({
      instances: [{ name: 'main', endpoints: [r1.url], annotations: { 'redis-gateway.io/maintenance': 'off' } }],
    })
    const back = await waitFor(
      async () => {
        const r = await command(gw, 'main', ['GET', 'reload:b'])
        return r.status === 200 ? r : null
      },
      { ...RELOAD_DEADLINE, message: '200 after maintenance: off' },
    )
    expect(back.body).toEqual({ result: '1' })
  })

  it('(c) a bad edit is rejected: the last good config keeps serving, the error is counted, a later good edit applies', async () => {
    const main: TestInstance = { name: 'main', endpoints: [r1.url] }
    const gw = await start({ instances: [main] })
    const errors0 = await discoveryErrors(gw)

    // 1. An unknown key. The same edit drains 'main': that must NOT take effect.
    await gw.rewrite({
      instances: [{ ...main, annotations: { 'redis-gateway.io/maintenance': 'drain' } }],
      extra: { redis: { comandTimeout: '2s' } },
    })
    await waitFor(async () => (await discoveryErrors(gw)) >= errors0 + 1, {
      ...RELOAD_DEADLINE,
      message: 'discovery_events_total{source="static",outcome="error"} to count the unknown key',
    })
    expect((await command(gw, 'main', ['SET', 'reload:c', 'still-served'])).status).toBe(200)
    expect(await r1.client().get('reload:c')).toBe('still-served')

    // 2. A wrong type. The same edit removes 'main': that must NOT take effect either.
    const errors1 = await discoveryErrors(gw)
    await gw.rewrite({ instances: [], extra: { redis: { tls: 'yes' } } })
    await waitFor(async () => (await discoveryErrors(gw)) >= errors1 + 1, {
      ...RELOAD_DEADLINE,
      message: 'discovery_events_total{source="static",outcome="error"} to count the wrong type',
    })
    expect((await command(gw, 'main', ['GET', 'reload:c'])).body).toEqual({ result: 'still-served' })

    // 3. A good edit applies.
    await gw.rewrite({ instances: [{ ...main, annotations: { 'redis-gateway.io/maintenance': 'drain' } }] })
    await waitFor(async () => (await command(gw, 'main', ['GET', 'reload:c'])).status === 503, {
      ...RELOAD_DEADLINE,
      message: 'the good edit (drain) to apply after the rejected ones',
    })
    const text = await (await fetch(`${gw.opsUrl}/metrics`)).text()
    expect(metricSum(text, 'redis_gateway_discovery_events_total', { source: 'static', outcome: 'ok' })).toBeGreaterThanOrEqual(1)
    // Exactly the two bad edits were counted as errors.
    expect(metricSum(text, 'redis_gateway_discovery_events_total', { source: 'static', outcome: 'error' })).toBe(errors0 + 2)
  })

  it('(d) token changes apply live: a removed token gets 401, an added one 200', async () => {
    const main: TestInstance = { name: 'main', endpoints: [r1.url] }
    const temp = { name: 'temp', token: 'temp-token-1', access: 'write', targets: ['*'] }
    const gw = await start({ instances: [main], tokens: [temp] })
    expect((await command(gw, 'main', ['PING'], 'temp-token-1')).status).toBe(200)
    expect((await command(gw, 'main', ['PING'], 'later-token-2')).status).toBe(401)

    await gw.rewrite({ instances: [main] })
    await waitFor(async () => (await command(gw, 'main', ['PING'], 'temp-token-1')).status === 401, {
      ...RELOAD_DEADLINE,
      message: 'the removed token to be refused',
    })
    const refused = await command(gw, 'main', ['PING'], 'temp-token-1')
    expect(refused.body).toEqual({ error: 'Unauthorized' })
    // The tokens that stayed keep working.
    expect((await command(gw, 'main', ['PING'])).status).toBe(200)

    await gw.rewrite({
      instances: [main],
      tokens: [{ name: 'later', token: 'later-token-2', access: 'read', targets: ['main'] }],
    })
    await waitFor(async () => (await command(gw, 'main', ['PING'], 'later-token-2')).status === 200, {
      ...RELOAD_DEADLINE,
      message: 'the added token to be accepted',
    })
    // With its access level and targets, not more.
    expect((await command(gw, 'main', ['SET', 'reload:d', 'x'], 'later-token-2')).status).toBe(403)
    expect((await command(gw, 'main', ['PING'], 'temp-token-1')).status).toBe(401)
  })

  it('(e) in-flight requests are not failed by a reload of an unrelated part of the file', async () => {
    const main: TestInstance = { name: 'main', endpoints: [r1.url] }
    const other: TestInstance = { name: 'other', endpoints: [r2.url] }
    // A command timeout well above the pause below, so held requests wait rather than time out.
    const extra = { redis: { commandTimeout: '8s', connectTimeout: '1s' } }
    const gw = await start({ instances: [main, other], extra })
    const redis = r1.client()
    await redis.set('reload:e', 'value')
    // The write token's Redis user connects on first use: before the pause, so requests are sent.
    expect((await command(gw, 'main', ['PING'])).status).toBe(200)

    // 1. Requests held in flight by CLIENT PAUSE while the reload applies.
    await redis.call('CLIENT', 'PAUSE', '2000', 'ALL')
    let settled = 0
    const held = Array.from({ length: 20 }, (_, i) =>
      command(gw, 'main', i % 2 === 0 ? ['GET', 'reload:e'] : ['INCR', `reload:e:${i}`]).finally(() => settled++),
    )
    await gw.rewrite({ instances: [main, other], groups: { g1: { strategy: 'round-robin' } }, extra })
    await waitFor(() => gw.gateway.table.current.groups.has('g1'), { ...RELOAD_DEADLINE, message: 'reload 1 applied' })
    // The reload happened while they were still waiting on Redis.
    expect(settled).toBe(0)
    const heldReplies = await Promise.all(held)
    heldReplies.forEach((r, i) => {
      expect(r.status, JSON.stringify(r.body)).toBe(200)
      expect(r.body).toEqual({ result: i % 2 === 0 ? 'value' : 1 })
    })

    // 2. Continuous concurrent traffic across several more reloads.
    let stop = false
    const failures: string[] = []
    let ok = 0
    const worker = async (w: number): Promise<void> => {
      for (let n = 0; !stop; n++) {
        try {
          const r = await command(gw, 'main', n % 2 === 0 ? ['SET', `reload:e:w${w}`, String(n)] : ['GET', `reload:e:w${w}`])
          const expected = n % 2 === 0 ? 'OK' : String(n - 1)
          if (r.status !== 200 || r.body.result !== expected) failures.push(`${r.status} ${JSON.stringify(r.body)}`)
          else ok++
        } catch (err) {
          failures.push(String(err))
        }
      }
    }
    const workers = Array.from({ length: 8 }, (_, w) => worker(w))
    for (const weight of ['50', '25', '75']) {
      const okBefore = ok
      await gw.rewrite({
        instances: [main, { ...other, annotations: { 'redis-gateway.io/weight': weight } }],
        groups: { g1: { strategy: 'round-robin' } },
        extra,
      })
      await waitFor(() => gw.gateway.table.current.instances.get('other')?.spec.policy.weight === Number(weight), {
        ...RELOAD_DEADLINE,
        message: `reload to weight ${weight} applied`,
      })
      // Traffic kept flowing around this reload.
      await waitFor(() => ok >= okBefore + 20, { ...RELOAD_DEADLINE, message: 'requests completing after the reload' })
    }
    stop = true
    await Promise.all(workers)
    expect(failures).toEqual([])
    expect(ok).toBeGreaterThan(60)
    // The admin token is untouched by the reloads too.
    expect((await command(gw, 'main', ['DBSIZE'], ADMIN_TOKEN)).status).toBe(200)
  })
})

describe('bad annotations', () => {
  it('are reported and counted, the default is used, and the instance keeps serving', async () => {
    const gw = await start({
      instances: [
        {
          name: 'odd',
          endpoints: [r1.url],
          annotations: { 'redis-gateway.io/maintenance': 'Drain', 'redis-gateway.io/weight': 'heavy' },
        },
      ],
    })
    const text = await (await fetch(`${gw.opsUrl}/metrics`)).text()
    expect(metricSum(text, 'redis_gateway_discovery_events_total', { source: 'static', outcome: 'bad_annotation' })).toBe(2)
    // `Drain` is not `drain`: the default (off) is used, so the instance is not draining.
    const r = await command(gw, 'odd', ['SET', 'ann:k', 'v'])
    expect([r.status, r.body]).toEqual([200, { result: 'OK' }])
  })
})
