// An endpoint that stops answering while the connection stays open (the fault proxy holds every
// byte, as a SIGSTOPped process or a black-holed network would), under load:
// - requests on it end by their deadline (command timeout + margin): 504 TIMEOUT when no other
//   endpoint can take them, or 200 after one retry on the other replica;
// - its breaker opens (redis_gateway_breaker_state = 2) and traffic moves to the other replica;
// - after resume the breaker goes half-open, one probe succeeds, it closes (state 0) and the
//   endpoint takes traffic again.
// A second case does the same with SIGSTOP/SIGCONT on the replica process itself.
//
// Topology: real primary, two real replicas, each replica behind its own fault proxy. Instance
// `st` reads from both replicas (round-robin); instance `solo` lists only the first replica, so
// its requests have nowhere else to go and show the 504s.

import { beforeAll, describe, expect, it } from 'vitest'
import type { BreakerEvent } from '../../src/core/events.js'
import type { FaultProxy } from '../helpers/fault-proxy.js'
import type { TestGateway } from '../helpers/gateway.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import type { Topology } from '../integration/replication-env.js'
import {
  A,
  backgroundLoad,
  breakerClosed,
  COMMAND_TIMEOUT_MS,
  faultBed,
  fmt,
  gauge,
  linkedReplica,
  MAX_SETTLE_MS,
  maxMs,
  metric,
  scrape,
  seed,
  sleep,
  tally,
  type Result,
} from './fault-env.js'

const bed = faultBed()
const { client, endpointOf } = bed
let topo: Topology
let p1: FaultProxy
let p2: FaultProxy
let gw: TestGateway
const transitions: BreakerEvent[] = []

beforeAll(async () => {
  topo = await bed.topology()
  ;[p1, p2] = await Promise.all([bed.proxy(topo.r1), bed.proxy(topo.r2)])
  gw = await bed.gateway({
    instances: [
      {
        name: 'st',
        endpoints: [topo.primary.url, p1.url, p2.url],
        annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'round-robin' },
      },
      { name: 'solo', endpoints: [p1.url], annotations: { [`${A}read-policy`]: 'replica' } },
    ],
  })
  gw.gateway.events.on('breaker', (e) => transitions.push(e))
  await waitForReplicas()
  await seed(topo, 'k', 'v')
})

async function waitForReplicas(): Promise<void> {
  await bed.waitForEndpoints([p1, p2], (ep) => linkedReplica(ep) && breakerClosed(ep), 'both replicas healthy, linked and with a closed breaker')
}

/** Upstream round trips the gateway finished on an endpoint (all outcomes, or one). */
async function upstreamCount(id: string, outcome?: string): Promise<number> {
  return metric(await scrape(gw.opsUrl), 'redis_gateway_upstream_duration_seconds_count', {
    redis_endpoint: id,
    ...(outcome ? { outcome } : {}),
  })
}

async function breakerGauge(id: string): Promise<number | undefined> {
  return gauge(await scrape(gw.opsUrl), 'redis_gateway_breaker_state', { redis_instance: 'st', redis_endpoint: id })
}

interface Fault {
  readonly name: string
  start(): void | Promise<void>
  stop(): void | Promise<void>
}

/** Runs the whole stall scenario with one way of stalling the first replica. */
async function stallScenario(fault: Fault): Promise<void> {
  await waitForReplicas()
  transitions.length = 0
  const ep = endpointOf(p1)
  const id = ep.id
  const pace = async (r: Result): Promise<Result> => {
    // Fast 503s must not spin the CPU; pacing only.
    if (r.status !== 200) await sleep(10)
    return r
  }
  const st = backgroundLoad({ concurrency: 30 }, async () => pace(await client.post(gw.base('st'), ['GET', 'k'])))
  const solo = backgroundLoad({ concurrency: 10 }, async () => pace(await client.post(gw.base('solo'), ['GET', 'k'])))
  try {
    await waitFor(() => st.results.length >= 500 && solo.results.length >= 100, { timeoutMs: 20_000, message: 'warm-up load' })

    const transitionCounts = async (): Promise<Record<string, number>> => {
      const text = await scrape(gw.opsUrl)
      const labels = { redis_instance: 'st', redis_endpoint: id }
      return Object.fromEntries(['open', 'half-open', 'closed'].map((to) => [to, gauge(text, 'redis_gateway_breaker_transitions_total', { ...labels, to }) ?? -1]))
    }
    const countsBefore = await transitionCounts()
    const eventsBefore = transitions.length

    const stalledAt = performance.now()
    await fault.start()
    await waitFor(async () => (await breakerGauge(id)) === 2, { timeoutMs: 5_000, intervalMs: 20, message: `breaker of ${id} open` })
    const openedAt = performance.now()
    const openedMs = openedAt - stalledAt

    // Traffic moves: once nothing is left in flight on the stalled endpoint, no new round trip
    // goes there while the other replica keeps serving every read of `st`. (A scrape counts every
    // round trip that released its in-flight slot, even in the same turn: /metrics flushes the
    // deferred events first.) The only round trips allowed there are half-open probes: the first
    // open period is 1 s, which the wait plus 300 reads can outlast on a busy machine, and each
    // half-open period admits one probe (halfOpenProbes 1), which fails and reopens the breaker.
    await waitFor(() => ep.state.load.inflight === 0, { timeoutMs: 5_000, message: 'requests on the stalled endpoint to end' })
    const [onStalled, onOther] = [await upstreamCount(id), await upstreamCount(endpointOf(p2).id)]
    const mark = st.results.length
    await waitFor(() => st.results.length >= mark + 300, { timeoutMs: 10_000, message: '300 more reads while stalled' })
    const movedReads = st.results.slice(mark)
    const [onStalledAfter, onOtherAfter] = [await upstreamCount(id), await upstreamCount(endpointOf(p2).id)]
    const halfOpenings = transitions.filter((t) => t.endpoint === id && t.from === 'open' && t.to === 'half-open').length
    console.log(
      `[faults/stall ${fault.name}] while open: ${onStalledAfter - onStalled} round trips on the stalled endpoint ` +
        `(${halfOpenings} half-open periods so far), ${onOtherAfter - onOther} on the other, ${fmt(performance.now() - openedAt)} after opening`,
    )
    expect(onStalledAfter - onStalled).toBeLessThanOrEqual(halfOpenings)
    expect(onOtherAfter - onOther).toBeGreaterThanOrEqual(300)
    expect(movedReads.filter((r) => r.status !== 200)).toEqual([])

    // Resume: half-open, one probe, closed; then traffic returns.
    const resumedAt = performance.now()
    await fault.stop()
    await waitFor(async () => (await breakerGauge(id)) === 0, { timeoutMs: 10_000, intervalMs: 20, message: `breaker of ${id} closed again` })
    const closedMs = performance.now() - resumedAt
    // The transition counters saw every change, even a half-open period shorter than any scrape.
    const countsAfter = await transitionCounts()
    for (const to of ['open', 'half-open', 'closed']) {
      const n = transitions.slice(eventsBefore).filter((t) => t.endpoint === id && t.instances.includes('st') && t.to === to).length
      expect(countsAfter[to]! - countsBefore[to]!, to).toBe(n)
      expect(n, to).toBeGreaterThanOrEqual(1)
    }
    const okBefore = await upstreamCount(id, 'ok')
    await waitFor(async () => (await upstreamCount(id, 'ok')) >= okBefore + 50, {
      timeoutMs: 5_000,
      message: 'traffic back on the resumed endpoint',
    })
    const mine = transitions.filter((t) => t.endpoint === id).map((t) => `${t.from}->${t.to} (${t.reason})`)
    const stResults = await st.stop()
    const soloResults = await solo.stop()

    const all = [...stResults, ...soloResults]
    const timeouts = all.filter((r) => r.status === 504)
    const slowOk = stResults.filter((r) => r.status === 200 && r.ms >= COMMAND_TIMEOUT_MS)
    const stFailed = stResults.filter((r) => r.status !== 200)
    console.log(
      `[faults/stall ${fault.name}] breaker open ${fmt(openedMs)} after the stall, closed ${fmt(closedMs)} after resume; ` +
        `transitions ${JSON.stringify(mine)}; st ${JSON.stringify(tally(stResults))} (${slowOk.length} answered after a retry, ${stFailed.length} failed although the other replica was healthy), ` +
        `solo ${JSON.stringify(tally(soloResults))}; 504s: ${timeouts.length}, max ${fmt(maxMs(timeouts))}; ` +
        `max latency ${fmt(maxMs(all))} (bound ${MAX_SETTLE_MS} ms)`,
    )
    // Requests on the stalled endpoint end with 504 by the deadline; nothing hangs, nothing 500s.
    expect(timeouts.length).toBeGreaterThan(0)
    expect(timeouts.every((r) => r.code === 'TIMEOUT')).toBe(true)
    expect(maxMs(all)).toBeLessThan(MAX_SETTLE_MS)
    expect(all.filter((r) => r.status === 0 || r.status >= 500 && r.status !== 503 && r.status !== 504)).toEqual([])
    // Reads of `st` that hit the stall end by the deadline too: 200 after a retry on the other
    // replica, or 504. Only requests sent before the breaker opened may fail; none after.
    // (Reads written on the stalled connection end together when it is reset as stalled: those
    // whose request deadline leaves no room for a retry get 504.)
    expect(stFailed.filter((r) => r.code !== 'TIMEOUT' || r.startedAt >= openedAt)).toEqual([])
    // The breaker opened, went half-open after its open time, and one probe closed it.
    const opened = mine.findIndex((t) => t.startsWith('closed->open'))
    const halfOpen = mine.findIndex((t, i) => i > opened && t.startsWith('open->half-open'))
    const closed = mine.findIndex((t, i) => i > halfOpen && t === 'half-open->closed (probe-succeeded)')
    expect(opened).toBeGreaterThanOrEqual(0)
    expect(halfOpen).toBeGreaterThan(opened)
    expect(closed).toBeGreaterThan(halfOpen)
    expect(ep.state.breaker.state.kind).toBe('closed')
  } finally {
    await Promise.all([st.stop(), solo.stop()])
  }
}

describe('a stalled endpoint', () => {
  it('fault proxy stall(): 504 within the deadline, breaker opens, traffic moves, a half-open probe closes it', async () => {
    await stallScenario({ name: 'proxy', start: () => p1.stall(), stop: () => p1.resume() })
  })

  it('SIGSTOP of the replica process: same outcome after SIGCONT', async () => {
    const r1: RedisServer = topo.r1
    await stallScenario({ name: 'sigstop', start: () => r1.pause(), stop: () => r1.resume() })
  })
})
