// A replica that turns slow under live reads: its fault proxy delays every chunk by 50 ms in each
// direction, so a read there takes 100 ms or more. Read p99 must stay within 2x the healthy p99:
// - least-request (peak-EWMA x in-flight, power of two choices) steers reads away from it;
// - least-request with `hedge-after: 10ms` also sends a read still unanswered after 10 ms to the
//   other replica: hedges are sent, and they win;
// - round-robin with `hedge-after: 10ms`: hedges are sent and win, and they stay within the hedge
//   budget (5% of requests plus the floor of 1 per second). Its p99 is printed, not asserted:
//   round-robin sends half the reads to the slow replica and the budget lets at most ~5% be
//   hedged, so the p99 of that combination is the slow replica's latency by design.
//
// Real primary and two real replicas. Each instance X reads through its own two proxies, one per
// replica; the one to the first replica turns slow when X's case starts, so every strategy meets
// the slowdown from a healthy start (the gateway keeps one latency estimate per endpoint: behind
// a shared proxy, a later case would find the replica already known as slow, and least-request
// would send it hardly a read to hedge). A twin X-twin with the same annotations reads the same
// replicas through proxies q1/q2 that stay healthy. The healthy p99 is measured first (both, no
// delay); with the delay, X and its twin are measured interleaved in one load run, so both
// figures see the same machine noise (the gateway, the proxies and the load generator share one
// event loop, and other test files run alongside).

import { beforeAll, describe, expect, it } from 'vitest'
import { RESILIENCE_DEFAULTS } from '../../src/resilience/defaults.js'
import type { FaultProxy } from '../helpers/fault-proxy.js'
import type { TestGateway } from '../helpers/gateway.js'
import type { Topology } from '../integration/replication-env.js'
import { A, faultBed, fmt, linkedReplica, metric, percentile, runLoad, scrape, seed, tally, type Result } from './fault-env.js'

const DELAY_MS = 50
/** Concurrent clients, split evenly between an instance and its twin. */
const CONCURRENCY = 20
/** Reads per instance per measurement, after WARMUP unmeasured ones (per instance). */
const N = 2_000
const WARMUP = 100
/** Measurements of the slow phase; one must pass (every one is printed). */
const ATTEMPTS = 3

const STRATEGIES = {
  lr: { [`${A}strategy`]: 'least-request' },
  'lr-hedge': { [`${A}strategy`]: 'least-request', [`${A}hedge-after`]: '10ms' },
  'rr-hedge': { [`${A}strategy`]: 'round-robin', [`${A}hedge-after`]: '10ms' },
} as const
type Name = keyof typeof STRATEGIES
const NAMES = Object.keys(STRATEGIES) as Name[]

const bed = faultBed()
const { client, endpointOf } = bed
let topo: Topology
/** Instance X's proxies: to the first replica (turns slow in X's case) and to the second. */
const slow = {} as Record<Name, FaultProxy>
const other = {} as Record<Name, FaultProxy>
let q1: FaultProxy
let q2: FaultProxy
let gw: TestGateway

beforeAll(async () => {
  topo = await bed.topology()
  for (const name of NAMES) [slow[name], other[name]] = await Promise.all([bed.proxy(topo.r1), bed.proxy(topo.r2)])
  ;[q1, q2] = await Promise.all([bed.proxy(topo.r1), bed.proxy(topo.r2)])
  const instances = NAMES.flatMap((name) => [
    {
      name,
      endpoints: [topo.primary.url, slow[name].url, other[name].url],
      annotations: { [`${A}read-policy`]: 'replica', ...STRATEGIES[name] },
    },
    { name: `${name}-twin`, endpoints: [topo.primary.url, q1.url, q2.url], annotations: { [`${A}read-policy`]: 'replica', ...STRATEGIES[name] } },
  ])
  gw = await bed.gateway({ instances })
  await bed.waitForEndpoints([...Object.values(slow), ...Object.values(other), q1, q2], linkedReplica, 'every proxied replica healthy and linked')
  await seed(topo, 'k', 'v')
})

interface Measured {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly results: Result[]
}

function stats(results: Result[]): Measured {
  const ms = results.map((r) => r.ms)
  return { p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), max: Math.max(...ms), results }
}

const show = (m: Measured): string => `p50 ${fmt(m.p50)}, p99 ${fmt(m.p99)}, max ${fmt(m.max)}`

/**
 * Reads `name` and `name-twin` interleaved (even requests to one, odd to the other): WARMUP each
 * unmeasured (returned as `warmup` for the instance), then N each, measured.
 */
async function measurePair(name: Name): Promise<{ subject: Measured; twin: Measured; warmup: Result[] }> {
  const run = async (count: number): Promise<{ subject: Result[]; twin: Result[] }> => {
    const subject: Result[] = []
    const twin: Result[] = []
    await runLoad({ concurrency: CONCURRENCY, count: 2 * count }, async (i) => {
      const r = await client.post(gw.base(i % 2 === 0 ? name : `${name}-twin`), ['GET', 'k'])
      ;(i % 2 === 0 ? subject : twin).push(r)
      return r
    })
    return { subject, twin }
  }
  const warm = await run(WARMUP)
  const { subject, twin } = await run(N)
  for (const [label, rs] of [[name, subject], [`${name}-twin`, twin]] as const) {
    const bad = rs.filter((r) => r.status !== 200 || r.result !== 'v')
    expect(bad.slice(0, 3), `${label}: ${JSON.stringify(tally(rs))}`).toEqual([])
  }
  return { subject: stats(subject), twin: stats(twin), warmup: warm.subject }
}

/** The gateway's hedge counters of `name` (its twin not included): hedges sent, and those that answered first. */
async function hedges(name: Name): Promise<{ sent: number; won: number; refused: number }> {
  const text = await scrape(gw.opsUrl)
  const count = (result: 'sent' | 'won'): number => metric(text, 'redis_gateway_hedges_total', { redis_instance: name, result })
  const refused = metric(text, 'redis_gateway_budget_exhausted_total', { redis_instance: name, budget: 'hedge' })
  return { sent: count('sent'), won: count('won'), refused }
}

const healthy = new Map<Name, Measured>()
const slowShare = (m: Measured): number => m.results.filter((r) => r.ms >= DELAY_MS).length / m.results.length

/**
 * With its first replica slow, `name`'s p99 must stay within 2x the healthy p99 of its twin measured in the same
 * run. A single GC pause or a busy neighbour can still add several ms to a p99 of a few ms, so up
 * to ATTEMPTS measurements are taken and one must pass. What the slow replica itself costs is
 * checked on every attempt without that leeway: under 1% more reads than the twin's may take
 * DELAY_MS or longer, or p99 could not stay low.
 */
async function within2x(name: Name): Promise<Result[]> {
  let ok = false
  let firstWarmup: Result[] = []
  let last: { subject: Measured; twin: Measured } | undefined
  let lastExcess = 1
  for (let attempt = 1; attempt <= ATTEMPTS && !ok; attempt++) {
    const m = await measurePair(name)
    if (attempt === 1) firstWarmup = m.warmup
    last = m
    const [share, twinShare] = [slowShare(m.subject), slowShare(m.twin)]
    console.log(
      `[faults/slow-replica] slow ${name} (attempt ${attempt}): ${show(m.subject)}; healthy twin in the same run: ${show(m.twin)} ` +
        `(ratio ${(m.subject.p99 / m.twin.p99).toFixed(2)}); healthy p99 measured first ${fmt(healthy.get(name)!.p99)}; ` +
        `${(share * 100).toFixed(2)}% of reads took >= ${DELAY_MS} ms (twin ${(twinShare * 100).toFixed(2)}%)`,
    )
    // Reads >= DELAY_MS beyond what the healthy twin saw in the same run (machine noise). Like the
    // p99 bound, judged again on a fresh pair when a busy machine spoils one attempt.
    lastExcess = share - twinShare
    ok = lastExcess < 0.01 && m.subject.p99 <= 2 * m.twin.p99
  }
  expect(lastExcess).toBeLessThan(0.01)
  expect(last!.subject.p99).toBeLessThanOrEqual(2 * last!.twin.p99)
  return firstWarmup
}

describe('a slow replica (+50 ms each way through its proxy)', () => {
  it('healthy p99 of each instance and its twin, no delay', async () => {
    // Warm the JIT, the sockets and every replica's latency estimate before anything is measured.
    for (const name of NAMES) await measurePair(name)
    for (const name of NAMES) {
      const { subject, twin } = await measurePair(name)
      healthy.set(name, subject)
      console.log(`[faults/slow-replica] healthy ${name}: ${show(subject)}; twin ${show(twin)} (${N} reads each, ${CONCURRENCY} concurrent in all)`)
    }
  })

  it('least-request keeps p99 within 2x the healthy p99', async () => {
    slow.lr.delay(DELAY_MS)
    const warmup = await within2x('lr')
    console.log(
      `[faults/slow-replica] least-request: ${warmup.filter((r) => r.ms >= DELAY_MS).length} of the first ${warmup.length} reads after ` +
        `the slowdown took >= ${DELAY_MS} ms (until the first slow reply raised the estimate); latency estimates: slow replica ` +
        `${fmt(endpointOf(slow.lr).state.load.latency.get(performance.now()))}, other ${fmt(endpointOf(other.lr).state.load.latency.get(performance.now()))}`,
    )
  })

  it('least-request with hedge-after 10ms keeps p99 within 2x the healthy p99, and hedges', async () => {
    slow['lr-hedge'].delay(DELAY_MS)
    const before = await hedges('lr-hedge')
    await within2x('lr-hedge')
    const after = await hedges('lr-hedge')
    const [sent, won, refused] = [after.sent - before.sent, after.won - before.won, after.refused - before.refused]
    console.log(`[faults/slow-replica] least-request + hedging: hedges sent ${sent} (won ${won})`)
    // Until the first slow reply raises the replica's estimate, least-request sends it reads like
    // the other one (the 'lr' case prints how many); each is still unanswered after 10 ms, so it is
    // hedged to the other replica, which answers first. Without hedging, none is sent.
    expect(sent).toBeGreaterThan(0)
    expect(won).toBeGreaterThan(0)
  })

  it('round-robin with hedge-after 10ms: hedges are sent and won, within the hedge budget', async () => {
    slow['rr-hedge'].delay(DELAY_MS)
    const started = performance.now()
    const before = await hedges('rr-hedge')
    const { subject: m, twin } = await measurePair('rr-hedge')
    const durationS = (performance.now() - started) / 1000
    const after = await hedges('rr-hedge')
    const [sent, won, refused] = [after.sent - before.sent, after.won - before.won, after.refused - before.refused]
    // Budget over this run: ratio x its requests, plus the floor. The sliding window (10 s) may
    // still hold requests of the healthy runs, which raise the allowance: count every request the
    // instance ever had, so the bound is an upper bound whatever the window held.
    const requestsEver = 3 * (N + WARMUP)
    const { ratio, minPerSecond, windowMs } = RESILIENCE_DEFAULTS.hedgeBudget
    const budget = ratio * requestsEver + minPerSecond * (durationS + windowMs / 1000)
    const requests = N + WARMUP
    console.log(
      `[faults/slow-replica] slow round-robin + hedging: ${show(m)}; healthy twin ${show(twin)} (ratio ${(m.p99 / twin.p99).toFixed(2)}; ` +
        `not asserted, see the header); hedges sent ${sent} (won ${won}) for ${requests} requests in ${durationS.toFixed(1)} s ` +
        `(${((sent / requests) * 100).toFixed(1)}%), budget bound ${budget.toFixed(0)}, ${refused} refused by the budget; ${(slowShare(m) * 100).toFixed(1)}% of reads took >= ${DELAY_MS} ms`,
    )
    expect(sent).toBeGreaterThan(0)
    expect(won).toBeGreaterThan(0)
    expect(sent).toBeLessThanOrEqual(budget)
    // Half the reads are slow and the budget allows ~5 % to be hedged: the rest is counted as refused.
    expect(refused).toBeGreaterThan(0)
    // Hedging did cut the tail it was allowed to: fewer reads than round-robin's half paid the delay.
    expect(slowShare(m)).toBeLessThan(0.5)
  })
})
