// Endpoints that flap: their fault proxies cycle for a few seconds through reset (every connection
// killed with an RST), refuse (the port closed, connects get ECONNREFUSED) and heal, every
// 100-200 ms, while 30 clients read and 10 write through the gateway. Every request must still
// end within its command timeout plus a small margin:
// - No request hangs: every one settles, within the deadline plus 1 s; nothing answers 500.
// - At the end, after heal, nothing leaked: each redis-server has its baseline number of clients
//   (the gateway's one command connection; no subscriber connection), each proxy holds exactly
//   the gateway's connection, the gateway's HTTP server holds no socket once the client closed
//   its own, no request is counted in flight or pending, and the connections' listener counts
//   stay small.
//
// Topology: real primary with two real replicas; the first replica is behind a flapping proxy
// (instance `flap`, prefer-replica, round-robin). A separate real standalone server behind a
// second flapping proxy takes INCRs (instance `flapw`), so writes see the faults too.

import { beforeAll, describe, expect, it } from 'vitest'
import type { FaultProxy } from '../helpers/fault-proxy.js'
import type { TestGateway } from '../helpers/gateway.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import type { Topology } from '../integration/replication-env.js'
import {
  A,
  backgroundLoad,
  breakerClosed,
  connectedClients,
  establishedOnPort,
  faultBed,
  fmt,
  HttpClient,
  MAX_SETTLE_MS,
  maxMs,
  metric,
  scrape,
  seed,
  sleep,
  tally,
  type Result,
} from './fault-env.js'

const FLAP_MS = 3_000
/** Listeners the gateway registers per connection are a handful; growth means a leak. */
const MAX_LISTENERS = 10

const bed = faultBed()
const { endpointOf } = bed
let topo: Topology
let standalone: RedisServer
let pf: FaultProxy
let pw: FaultProxy
let gw: TestGateway

beforeAll(async () => {
  ;[topo, standalone] = await Promise.all([bed.topology(), bed.redis()])
  ;[pf, pw] = await Promise.all([bed.proxy(topo.r1), bed.proxy(standalone)])
  gw = await bed.gateway({
    instances: [
      {
        name: 'flap',
        endpoints: [topo.primary.url, pf.url, topo.r2.url],
        annotations: { [`${A}read-policy`]: 'prefer-replica', [`${A}strategy`]: 'round-robin' },
      },
      { name: 'flapw', endpoints: [pw.url] },
    ],
  })
  await seed(topo, 'k', 'v')
})

/** Both flapping endpoints healthy, connected and with a closed breaker. */
function settled(): boolean {
  return [pf, pw].every((p) => {
    const ep = endpointOf(p)
    return ep.client.up && ep.state.healthy && breakerClosed(ep)
  })
}

/** A fixed pseudo-random sequence (LCG), so every run flaps the same way. */
function sequence(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31
    return x / 2 ** 31
  }
}

async function flap(proxy: FaultProxy, seed: number, untilMs: number): Promise<string[]> {
  const random = sequence(seed)
  const log: string[] = []
  let i = 0
  while (performance.now() < untilMs) {
    const step = (i++ + seed) % 3
    if (step === 0) {
      await proxy.refuse(false)
      await proxy.reset()
      log.push('reset')
    } else if (step === 1) {
      await proxy.refuse(true)
      await proxy.reset()
      log.push('refuse')
    } else {
      await proxy.heal()
      log.push('heal')
    }
    await sleep(100 + Math.floor(random() * 100))
  }
  await proxy.heal()
  return log
}

describe('flapping endpoints under load', () => {
  it('no request hangs or 500s, and no connection, socket or listener leaks afterwards', async () => {
    await waitFor(settled, { timeoutMs: 10_000, intervalMs: 20, message: 'both proxied endpoints up' })
    await waitFor(() => endpointOf(pf).state.role === 'replica' && endpointOf(pf).state.link === 'connected', {
      message: 'the proxied replica known as a linked replica',
    })
    const client = new HttpClient()
    // The write token's Redis user connects on first use: open it on both proxied endpoints.
    await waitFor(
      async () => {
        await client.post(gw.base('flap'), ['GET', 'k'])
        return endpointOf(pf).client.userConnectionsReady === 1
      },
      { message: "the token's connection to the proxied replica" },
    )
    expect((await client.post(gw.base('flapw'), ['GET', 'n'])).status).toBe(200)
    // Baselines with the gateway connected and idle (connected_clients includes the replica's
    // link to its primary on r1; on the standalone server it is the gateway alone: its own
    // connection and the write token's).
    const baseline = { r1: await connectedClients(topo.r1), standalone: await connectedClients(standalone) }
    expect(baseline.standalone).toBe(2)
    expect(pf.connections).toBe(2)
    expect(pw.connections).toBe(2)

    const pace = async (r: Result): Promise<Result> => {
      if (r.status !== 200) await sleep(10)
      return r
    }
    const reads = backgroundLoad({ concurrency: 30 }, async () => pace(await client.post(gw.base('flap'), ['GET', 'k'])))
    const writes = backgroundLoad({ concurrency: 10 }, async () => pace(await client.post(gw.base('flapw'), ['INCR', 'n'])))
    let readResults: Result[] = []
    let writeResults: Result[] = []
    let steps: string[][] = []
    try {
      await waitFor(() => reads.results.length >= 300 && writes.results.length >= 100, { timeoutMs: 20_000, message: 'warm-up load' })
      const until = performance.now() + FLAP_MS
      steps = await Promise.all([flap(pf, 1, until), flap(pw, 2, until)])
      // Healed: keep the load on until both endpoints are back and their breakers closed again
      // (an open breaker closes only through a probe, i.e. a request).
      await waitFor(settled, { timeoutMs: 15_000, intervalMs: 20, message: 'both endpoints back with closed breakers' })
    } finally {
      readResults = await reads.stop()
      writeResults = await writes.stop()
    }

    const all = [...readResults, ...writeResults]
    const direct = standalone.client()
    const final = Number(await direct.get('n'))
    direct.disconnect()
    const writesOk = writeResults.filter((r) => r.status === 200).length
    const writesUnknown = writeResults.filter((r) => r.code === 'UPSTREAMRESET' || r.status === 504).length
    console.log(
      `[faults/flapping] ${steps[0]!.length} + ${steps[1]!.length} fault steps in ${FLAP_MS} ms; ` +
        `reads ${JSON.stringify(tally(readResults))}, writes ${JSON.stringify(tally(writeResults))}; ` +
        `max latency ${fmt(maxMs(all))} (bound ${MAX_SETTLE_MS} ms); INCR final ${final}, acked ${writesOk}, unknown ${writesUnknown}`,
    )
    // Every request settled (no client-side timeout), within the bound, and none was a 500.
    expect(all.filter((r) => r.status === 0)).toEqual([])
    expect(all.filter((r) => r.status >= 500 && r.status !== 503 && r.status !== 504)).toEqual([])
    expect(maxMs(all)).toBeLessThan(MAX_SETTLE_MS)
    // Writes through the flapping: none lost, none doubled.
    expect(final).toBeGreaterThanOrEqual(writesOk)
    expect(final).toBeLessThanOrEqual(writesOk + writesUnknown)

    // Leaks. HTTP: close the client's sockets; the gateway must then hold none.
    client.close()
    const dataPort = gw.gateway.dataAddress.port
    await waitFor(async () => (await establishedOnPort(dataPort)) === 0, {
      timeoutMs: 5_000,
      message: `no established socket left on the gateway's data port ${dataPort}`,
    })
    // Upstream: one command connection per endpoint and user, as before the faults; no subscriber.
    await waitFor(async () => (await connectedClients(standalone)) === baseline.standalone, {
      timeoutMs: 5_000,
      message: `standalone server back to ${baseline.standalone} client(s)`,
    })
    await waitFor(async () => (await connectedClients(topo.r1)) === baseline.r1, {
      timeoutMs: 5_000,
      message: `flapped replica back to ${baseline.r1} client(s)`,
    })
    // The gateway's connections to an endpoint: its command connection, the token user's, plus
    // the subscriber connection if one is open (none here: nothing subscribed).
    const gatewayConnections = (p: FaultProxy): number => {
      const ep = endpointOf(p)
      return (ep.client.up ? 1 : 0) + ep.client.userConnectionsReady + (ep.pubsub.size.connected ? 1 : 0)
    }
    await waitFor(() => pf.connections === gatewayConnections(pf) && pw.connections === gatewayConnections(pw), {
      timeoutMs: 5_000,
      message: `each proxy to hold exactly the gateway's connections (have ${pf.connections}, ${pw.connections})`,
    })
    expect([gatewayConnections(pf), gatewayConnections(pw)]).toEqual([2, 2])
    expect([endpointOf(pf).pubsub.size.connected, endpointOf(pw).pubsub.size.connected]).toEqual([false, false])
    // Every command gets its reply. Health checks (ROLE and INFO, every 200 ms here) share the
    // command connection, so one may be in flight at the moment of any single look: a leak is a
    // count that stays, so wait for a moment when none is outstanding.
    await waitFor(() => [...gw.gateway.pool.all()].every((ep) => ep.client.pending === 0), {
      timeoutMs: 5_000,
      intervalMs: 5,
      message: "every endpoint's commands answered (commands without a reply stayed)",
    })
    const listeners: Record<string, Record<string, number>> = {}
    for (const ep of gw.gateway.pool.all()) {
      listeners[ep.id] = { socket: ep.client.connection.socketListeners, waiting: ep.client.waiting, unanswered: ep.client.pending }
      expect(ep.state.load.inflight, `${ep.id} in flight`).toBe(0)
      expect(ep.state.pending, `${ep.id} pending`).toBe(0)
    }
    const inflight = metric(await scrape(gw.opsUrl), 'redis_gateway_inflight_requests')
    console.log(
      `[faults/flapping] after heal: r1 clients ${await connectedClients(topo.r1)} (baseline ${baseline.r1}), standalone ` +
        `${await connectedClients(standalone)} (baseline ${baseline.standalone}), proxy connections ${pf.connections}/${pw.connections} ` +
        `(accepted over the run ${pf.accepted}/${pw.accepted}), gateway HTTP sockets 0, in flight ${inflight}; listeners ${JSON.stringify(listeners)}`,
    )
    expect(inflight).toBe(0)
    for (const [id, counts] of Object.entries(listeners)) {
      expect(counts.socket, `${id} socket listeners`).toBeLessThan(MAX_LISTENERS)
      expect(counts.waiting, `${id} requests waiting for the connection`).toBe(0)
    }
  })
})
