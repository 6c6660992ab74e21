// Requests over an endpoint's in-flight bound (limits.maxInflightPerEndpoint) wait for a slot,
// first come first served, instead of getting 503 OVERLOADED at once (README "Overload and
// deadlines"); limits.maxPendingPerEndpoint bounds how many wait, and one that gets no slot in its
// time is answered 503 and never sent. A real redis-server behind a fault proxy whose stall holds
// the requests in flight; a tiny bound (2 in flight, 4 waiting) makes the queue visible.
// The queue's logic on a driven clock: src/upstream/slot-queue.test.ts.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { PooledEndpoint } from '../../src/upstream/pool.js'
import { HttpClient, type Result } from '../faults/fault-env.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const COMMAND_TIMEOUT_MS = 3_000
/** The least time a request that waited is sent with (dispatch.ts sendFloorMs): 100 ms here. */
const SEND_FLOOR_MS = 100
const MAX_INFLIGHT = 2
const MAX_PENDING = 4

let redis: RedisServer
let proxy: FaultProxy
let gw: TestGateway
let ep: PooledEndpoint
const client = new HttpClient()

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startFaultProxy({ port: redis.port })
  gw = await startGateway({
    instances: [{ name: 'q', endpoints: [proxy.url] }],
    extra: {
      redis: { commandTimeout: `${COMMAND_TIMEOUT_MS}ms`, connectTimeout: '1s' },
      // Rare health checks: a check stalled with the requests would mark the endpoint down.
      health: { interval: '60s', timeout: '1s' },
      limits: { maxInflightPerEndpoint: MAX_INFLIGHT, maxPendingPerEndpoint: MAX_PENDING },
    },
  })
  ep = [...gw.gateway.pool.all()].find((e) => e.client.spec.port === proxy.port)!
  await waitFor(() => ep.client.up && ep.state.healthy, { message: 'the endpoint up and checked' })
})

afterAll(async () => {
  client.close()
  await gw?.stop()
  await proxy?.close()
  await redis?.stop()
})

/** Posts `cmd`; `settled` says whether its reply is in. */
function post(cmd: string[]): { readonly reply: Promise<Result>; readonly settled: () => boolean } {
  let done = false
  const reply = client.post(gw.base('q'), cmd).then((r) => {
    done = true
    return r
  })
  return { reply, settled: () => done }
}

/** Stalls the proxy with MAX_INFLIGHT GETs in flight (connections of the token's user open first). */
async function fillSlots(): Promise<ReturnType<typeof post>[]> {
  await waitFor(() => ep.client.up, { message: 'the endpoint connected' })
  expect((await client.post(gw.base('q'), ['PING'])).status).toBe(200)
  await redis.resetStats()
  proxy.stall()
  const held = Array.from({ length: MAX_INFLIGHT }, (_, i) => post(['GET', `held:${i}`]))
  await waitFor(() => ep.slots.inflight === MAX_INFLIGHT, { intervalMs: 5, message: 'the slots taken' })
  return held
}

describe('requests over the in-flight bound wait for a slot', () => {
  test('they are served in arrival order once slots free up; beyond the pending bound the answer is 503 at once', async () => {
    const held = await fillSlots()
    const queued: ReturnType<typeof post>[] = []
    for (let i = 0; i < MAX_PENDING; i++) {
      queued.push(post(['RPUSH', 'order', String(i)]))
      // One at a time, so that the order they reach the gateway in is known.
      await waitFor(() => ep.slots.waiting === i + 1, { intervalMs: 5, message: `request ${i} waiting` })
    }
    // The queue is full: the next one is refused at once, and never sent.
    const refused = await client.post(gw.base('q'), ['RPUSH', 'order', 'refused'])
    expect(refused.status).toBe(503)
    expect(refused.code).toBe('OVERLOADED')
    expect(refused.error).toMatch(/limits\.maxPendingPerEndpoint/)
    expect(refused.retryAfter).toBe('1')
    expect(refused.ms).toBeLessThan(COMMAND_TIMEOUT_MS / 2)
    // Without the queue these would have been 503 OVERLOADED at once, like the refused one.
    expect([...held, ...queued].filter((r) => r.settled())).toEqual([])
    // The waiting requests show in /metrics.
    const scrape = await (await fetch(`${gw.opsUrl}/metrics`)).text()
    expect(scrape).toMatch(new RegExp(`^redis_gateway_waiting_requests ${MAX_PENDING}$`, 'm'))
    // And per endpoint in /admin/routes: all waiting for a slot, none for the connection.
    const routes = (await (await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
      instances: { name: string; endpoints: { id: string; inflight: number; pending: number; queued: number }[] }[]
    }
    const seen = routes.instances.find((i) => i.name === 'q')!.endpoints.find((e) => e.id === ep.id)!
    expect(seen).toMatchObject({ inflight: MAX_INFLIGHT, pending: 0, queued: MAX_PENDING })

    proxy.resume()
    const heldResults = await Promise.all(held.map((r) => r.reply))
    const queuedResults = await Promise.all(queued.map((r) => r.reply))
    expect(heldResults.map((r) => r.status)).toEqual([200, 200])
    expect(queuedResults.map((r) => [r.status, r.result])).toEqual([
      [200, 1],
      [200, 2],
      [200, 3],
      [200, 4],
    ])
    const direct = redis.client()
    try {
      expect(await direct.lrange('order', 0, -1)).toEqual(['0', '1', '2', '3'])
    } finally {
      direct.disconnect()
    }
    const stats = await redis.commandStats()
    expect(stats.rpush).toBe(MAX_PENDING)
    expect(stats.get).toBe(MAX_INFLIGHT)
    expect(ep.slots.inflight).toBe(0)
    expect(ep.slots.waiting).toBe(0)
  })

  test('a write that gets no slot in its time is answered 503 OVERLOADED and never sent', async () => {
    const held = await fillSlots()
    const write = post(['SET', 'never-sent', '1'])
    await waitFor(() => ep.slots.waiting === 1, { intervalMs: 5, message: 'the write waiting' })
    const r = await write.reply
    expect(r.status).toBe(503)
    expect(r.code).toBe('OVERLOADED')
    expect(r.error).toMatch(/no in-flight slot of endpoint .* came free within \d+ ms .*not sent/)
    expect(r.retryAfter).toBe('1')
    // It waited for its command timeout less the time an attempt needs at least, then gave up:
    // before the requests ahead of it timed out (which would have freed a slot too late for it).
    expect(r.ms).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - SEND_FLOOR_MS - 50)
    expect(held.some((h) => h.settled())).toBe(false)
    const heldResults = await Promise.all(held.map((h) => h.reply))
    expect(heldResults.map((h) => [h.status, h.code])).toEqual([
      [504, 'TIMEOUT'],
      [504, 'TIMEOUT'],
    ])
    expect(ep.slots.waiting).toBe(0)

    proxy.resume()
    // The held GETs reach Redis (or not, with the connection reset on their timeout); the SET never.
    await waitFor(() => ep.client.up, { message: 'the endpoint reconnected' })
    expect((await client.post(gw.base('q'), ['GET', 'never-sent'])).result).toBeNull()
    expect((await redis.commandStats()).set ?? 0).toBe(0)
  })
})
