// The gateway bounds what it holds for an endpoint that cannot answer, on live traffic:
// - Pending bound (limits.maxPendingPerEndpoint, set to 1000 here; default 10,000): the endpoint's
//   port refuses connections from the start, so every request waits (up to the connect timeout)
//   for a connection; of 1200 concurrent requests, 1000 wait and the other 200 get OVERLOADED
//   right away instead of growing memory.
// - In-flight bound (limits.maxInflightPerEndpoint, default 1000): the endpoint is connected but
//   its proxy stalls, so requests are sent and never answered; of 1200 concurrent requests 1000 are
//   in flight and the other 200 wait for a slot (upstream/slot-queue.ts). No slot frees in their
//   time: they get OVERLOADED, never sent, just before the 1000 time out.
// Every request still ends by its deadline; afterwards (heal) the instance serves again.
// 1200 concurrent HTTP requests are fine on a 2-core machine (each is a socket and a promise).
// The same bounds are also unit-tested in src/upstream/when-connected.test.ts and
// src/upstream/slot-queue.test.ts, and end to end with a tiny bound in test/integration/overload-queue.test.ts.

import { beforeAll, describe, expect, it } from 'vitest'
import { DEFAULTS } from '../../src/config/schema.js'
import { sendFloorMs } from '../../src/upstream/dispatch.js'
import type { FaultProxy } from '../helpers/fault-proxy.js'
import type { TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { faultBed, fmt, HttpClient, maxMs, tally, type Result } from './fault-env.js'

const REQUESTS = 1_200
const COMMAND_TIMEOUT_MS = 4_000
const CONNECT_TIMEOUT_MS = 3_000
const DEADLINE_MS = COMMAND_TIMEOUT_MS + 250
const MAX_PENDING = 1_000
const MAX_INFLIGHT = DEFAULTS.limits.maxInflightPerEndpoint

const bed = faultBed()
const { endpointOf } = bed
let refused: FaultProxy
let stalled: FaultProxy
let gw: TestGateway

beforeAll(async () => {
  const server = await bed.redis()
  ;[refused, stalled] = await Promise.all([bed.proxy(server), bed.proxy(server)])
  await refused.refuse(true)
  gw = await bed.gateway({
    instances: [
      { name: 'direct', endpoints: [server.url] },
      { name: 'refused', endpoints: [refused.url] },
      { name: 'stalled', endpoints: [stalled.url] },
    ],
    extra: {
      // Long timeouts so that all 1200 requests are held at once; health checks rare, so the
      // stalled endpoint stays "healthy" and the in-flight bound (not health) is what answers.
      redis: { commandTimeout: `${COMMAND_TIMEOUT_MS}ms`, connectTimeout: `${CONNECT_TIMEOUT_MS}ms` },
      health: { interval: '60s', timeout: '1s' },
      limits: { maxPendingPerEndpoint: MAX_PENDING },
    },
  })
  await bed.waitForEndpoints([stalled], (ep) => ep.client.up && ep.state.healthy, 'the stalled-to-be endpoint connected and checked')
})

/**
 * Sends REQUESTS concurrent reads to `instance`; `whileHeld` runs once the OVERLOADED answers are
 * in (`bound` of the requests are still held by the gateway then).
 */
async function burst(instance: string, bound: number, whileHeld: () => void | Promise<void>): Promise<Result[]> {
  const client = new HttpClient()
  try {
    await client.warm(gw.base('direct'), REQUESTS)
    let overloaded = 0
    const all = Promise.all(
      Array.from({ length: REQUESTS }, async () => {
        const r = await client.post(gw.base(instance), ['GET', 'k'])
        if (r.code === 'OVERLOADED') overloaded++
        return r
      }),
    )
    await waitFor(() => overloaded >= REQUESTS - bound, { timeoutMs: 10_000, message: 'the OVERLOADED answers' })
    await whileHeld()
    return await all
  } finally {
    client.close()
  }
}

function report(name: string, results: Result[], held: Result[], overloaded: Result[]): void {
  const spread = Math.max(...results.map((r) => r.startedAt)) - Math.min(...results.map((r) => r.startedAt))
  console.log(
    `[faults/overload] ${name}: ${REQUESTS} concurrent requests sent over ${fmt(spread)}: ${JSON.stringify(tally(results))}; ` +
      `OVERLOADED answered in at most ${fmt(maxMs(overloaded))}, the held ones after ${fmt(Math.min(...held.map((r) => r.ms)))}` +
      `..${fmt(maxMs(held))}`,
  )
}

describe('overload bounds under 1200 concurrent requests', () => {
  it('an endpoint that refuses connections: 1000 wait for it, the rest get 503 OVERLOADED at once', async () => {
    // What the gateway holds for the endpoint while the 1000 wait: one waiter (and connect-timeout
    // timer) per admitted request, none for the refused ones, and no listener on the socket per request.
    let waiting = 0
    let socketListeners = 0
    const results = await burst('refused', MAX_PENDING, () => {
      waiting = endpointOf(refused).client.waiting
      socketListeners = endpointOf(refused).client.connection.socketListeners
    })
    const overloaded = results.filter((r) => r.status === 503 && r.code === 'OVERLOADED')
    const held = results.filter((r) => r.code !== 'OVERLOADED')
    report('pending bound (connection refused)', results, held, overloaded)
    console.log(`[faults/overload] while the requests wait: ${waiting} waiters, ${socketListeners} listeners on the connection's socket`)
    expect(overloaded.length).toBe(REQUESTS - MAX_PENDING)
    // The waiting ones gave up after the connect timeout: 503 NOENDPOINT, each by its deadline.
    expect(held.every((r) => r.status === 503 && r.code === 'NOENDPOINT')).toBe(true)
    expect(Math.min(...held.map((r) => r.ms))).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50)
    expect(maxMs(results)).toBeLessThan(DEADLINE_MS + 1_000)
    // "At once": the excess did not wait for the endpoint.
    expect(maxMs(overloaded)).toBeLessThan(CONNECT_TIMEOUT_MS / 2)
    expect(overloaded.every((r) => r.retryAfter !== null && Number(r.retryAfter) >= 1)).toBe(true)
    expect(endpointOf(refused).state.pending).toBe(0)

    await refused.refuse(false)
    const client = new HttpClient()
    await waitFor(async () => (await client.post(gw.base('refused'), ['GET', 'k'])).status === 200, {
      timeoutMs: 10_000,
      message: 'the instance to serve once its endpoint accepts connections',
    })
    client.close()
    // Exactly the admitted requests waited (none left by the 200 refused ones), and the socket's
    // listeners do not grow with them.
    expect(waiting).toBe(MAX_PENDING)
    expect(socketListeners).toBeLessThan(10)
  })

  it('an endpoint that stops answering: 1000 in flight, the rest wait for a slot and get 503 OVERLOADED, never sent, by their deadline', async () => {
    const ep = endpointOf(stalled)
    // Connected before it stalls: the connection of the token's Redis user is open (it opens on
    // first use; one opened during the stall would time out in its handshake: NOENDPOINT).
    const warm = new HttpClient()
    expect((await warm.post(gw.base('stalled'), ['GET', 'k'])).status).toBe(200)
    warm.close()
    stalled.stall()
    const results = await burst('stalled', MAX_INFLIGHT, () => {})
    const overloaded = results.filter((r) => r.status === 503 && r.code === 'OVERLOADED')
    const held = results.filter((r) => r.code !== 'OVERLOADED')
    report('in-flight bound (stalled)', results, held, overloaded)
    expect(overloaded.length).toBe(REQUESTS - MAX_INFLIGHT)
    // The ones in flight ended at their deadline with 504.
    expect(held.every((r) => r.status === 504 && r.code === 'TIMEOUT')).toBe(true)
    expect(maxMs(results)).toBeLessThan(DEADLINE_MS + 1_000)
    // The rest waited for a slot (not refused at once) until only the least time an attempt is
    // sent with was left, and were answered without being sent, before the 1000 timed out.
    expect(Math.min(...overloaded.map((r) => r.ms))).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - sendFloorMs(COMMAND_TIMEOUT_MS) - 100)
    expect(overloaded.every((r) => /not sent/.test(r.error ?? ''))).toBe(true)
    expect(overloaded.every((r) => r.retryAfter !== null && Number(r.retryAfter) >= 1)).toBe(true)
    expect(ep.slots.waiting).toBe(0)

    stalled.resume()
    await waitFor(() => ep.state.load.inflight === 0, { timeoutMs: 10_000, message: 'nothing left in flight after resume' })
    // 1000 timeouts opened the breaker; after its open time a probe closes it and reads flow again.
    const client = new HttpClient()
    await waitFor(async () => (await client.post(gw.base('stalled'), ['GET', 'k'])).status === 200, {
      timeoutMs: 10_000,
      message: 'the instance to serve again after resume',
    })
    client.close()
  })
})
