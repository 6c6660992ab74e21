// A replica killed with SIGKILL while 40 clients read through the gateway. Every read must still
// succeed: reads that were on the dead replica's connection (lost: UPSTREAMRESET) or sent to it
// before the gateway noticed (not connected: NOENDPOINT) are retried once on the other replica,
// inside the retry budget. Real primary, two real replicas, the real gateway; read-policy
// `replica`, round-robin so the doomed replica certainly carries half of the reads when it dies.

import { beforeAll, describe, expect, it } from 'vitest'
import type { TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { waitForRoles, type Topology } from '../integration/replication-env.js'
import { A, backgroundLoad, faultBed, fmt, MAX_SETTLE_MS, maxMs, metric, percentile, scrape, seed, tally } from './fault-env.js'

const CONCURRENCY = 40

const bed = faultBed()
const { client, endpointOf } = bed
let topo: Topology
let gw: TestGateway

beforeAll(async () => {
  topo = await bed.topology()
  gw = await bed.gateway({
    instances: [
      {
        name: 'reads',
        endpoints: topo.urls,
        annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'round-robin' },
      },
    ],
  })
  await waitForRoles(gw, [
    { server: topo.primary, role: 'primary' },
    { server: topo.r1, role: 'replica' },
    { server: topo.r2, role: 'replica' },
  ])
})

describe('a replica killed with SIGKILL during reads', () => {
  it('serves every read (retried on the other replica) and counts the retries', async () => {
    await seed(topo, 'k', 'v')
    const base = gw.base('reads')
    const load = backgroundLoad({ concurrency: CONCURRENCY }, () => client.post(base, ['GET', 'k']))

    // Kill once the load is in full swing, then keep reading well past the moment the gateway
    // notices (the dead replica is unhealthy) so requests before, during and after are all seen.
    await waitFor(() => load.results.length >= 1_000, { timeoutMs: 20_000, message: '1000 reads before the kill' })
    const beforeKill = load.results.length
    // Reads certainly in flight on r1 when it dies: its clients paused first, so the reads sent to
    // it wait there. Left to chance, a kill between two replies can find none in flight and leave
    // no retry to count (a CI run counted 0, the run before it 1).
    const r1 = endpointOf(topo.r1)
    const direct = topo.r1.client()
    try {
      await direct.call('CLIENT', 'PAUSE', '10000', 'ALL')
    } finally {
      direct.disconnect()
    }
    await waitFor(() => r1.state.load.inflight > 0, { timeoutMs: 5_000, intervalMs: 1, message: 'reads in flight on the paused replica' })
    await topo.r1.kill('SIGKILL')
    await waitFor(() => !r1.state.healthy, { timeoutMs: 5_000, message: 'the gateway to mark the killed replica down' })
    const noticed = load.results.length
    await waitFor(() => load.results.length >= noticed + 1_000, { timeoutMs: 20_000, message: '1000 reads after the kill' })
    const results = await load.stop()

    const metrics = await scrape(gw.opsUrl)
    const retries = metric(metrics, 'redis_gateway_retries_total', { redis_instance: 'reads' })
    const byCode = Object.fromEntries(
      [...metrics.matchAll(/^redis_gateway_retries_total\{([^}]*)\} (\d+)/gm)].map((m) => [/code="(\w+)"/.exec(m[1]!)?.[1], Number(m[2])]),
    )
    const failed = results.filter((r) => r.status !== 200 || r.result !== 'v')
    console.log(
      `[faults/replica-kill] ${results.length} reads (${beforeKill} before the kill, ${noticed - beforeKill} until the gateway noticed), ` +
        `outcomes ${JSON.stringify(tally(results))}, retries ${retries} ${JSON.stringify(byCode)}, ` +
        `p99 ${fmt(percentile(results.map((r) => r.ms), 0.99))}, max ${fmt(maxMs(results))}`,
    )
    expect(failed.slice(0, 5)).toEqual([])
    expect(failed.length).toBe(0)
    // The killed replica carried half of the reads: some were in flight or sent before the gateway
    // noticed, so retries must have happened; a retry per read at most, so never more than reads.
    expect(retries).toBeGreaterThan(0)
    expect(retries).toBeLessThanOrEqual(results.length)
    expect(maxMs(results)).toBeLessThan(MAX_SETTLE_MS)
    // Read-policy replica: nothing fell back to the primary.
    const primaryGets = /cmdstat_get:calls=(\d+)/.exec(await topo.primary.info('commandstats'))
    expect(Number(primaryGets?.[1] ?? 0)).toBe(0)
  })
})
