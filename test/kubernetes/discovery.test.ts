// Kubernetes discovery against a real kube-apiserver + etcd, with the gateway routing real
// traffic to real redis-servers that run in network namespaces created here (EndpointSlices
// refuse loopback addresses).
//
// - least privilege: the gateway's token may only list/watch services and endpointslices in
//   the watched namespaces; a watched namespace it may not read gives a 403 error, no crash;
// - annotation and endpoint changes reach routing within 1 s of the API write (measured);
// - the routing table survives an apiserver outage; changes after it still arrive;
// - an etcd compaction followed by an apiserver restart forces 410 Gone, and a relist.
//
// The tests of a describe block run in order and share one cluster and one gateway.
// Watching every namespace (namespaces ["*"]) is tested in all-namespaces.test.ts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RedisServer } from '../helpers/redis-server.js'
import { startCluster, type KubeCluster } from './helpers/cluster.js'
import {
  annotate,
  command,
  createRedisService,
  deleteRedisService,
  directly,
  elapsedUntil,
  grantDiscovery,
  ok,
  service,
  slice,
  slicePath,
  startKubeGateway,
  svcPath,
  waitUntil,
  type KubeGateway,
} from './helpers/kube-gateway.js'
import { createNetns, type Netns } from './helpers/netns.js'

const SYSTEM = 'redis-system'
const APPS = 'redis-apps'
const FORBIDDEN = 'redis-forbidden'

/** Measured propagation times, printed at the end (and kept for the report). */
const timings: Record<string, number> = {}

const WATCHED = [SYSTEM, APPS].flatMap((ns) => [`services/${ns}`, `endpointslices/${ns}`])

/**
 * Waits until every watched resource's latest list/watch event since `outage` (when the API server
 * went away) is 'watching' (a watch open, no error or 410 after it); returns ms from `back` (when
 * the API server was ready again) to the moment the last one opened, at least 0.
 */
async function recovered(gw: KubeGateway, outage: number, back: number, timeoutMs = 40_000): Promise<number> {
  const latest = (r: string) =>
    gw.discovery.filter((e) => e.at > outage && e.resource === r && ['watching', 'listed', 'gone', 'error'].includes(e.kind)).at(-1)
  await waitUntil('all watches open again', async () => WATCHED.every((r) => latest(r)?.kind === 'watching'), timeoutMs)
  return Math.max(0, ...WATCHED.map((r) => latest(r)!.at - back))
}

/** The longest backoff the watcher sleeps after an error (LIST_WATCH_DEFAULTS.backoffMaxMs), plus slack. */
const BACKOFF_CAP_MS = 30_000 + 2_000

// ---------------------------------------------------------------------------------------------

let cluster: KubeCluster
let netA: Netns
let netB: Netns
let redisA: RedisServer
let redisB: RedisServer
let gw: KubeGateway
let gatewayToken: string

beforeAll(async () => {
  cluster = await startCluster({ users: ['gateway'] })
  gatewayToken = cluster.tokenFor('gateway')
  ;[netA, netB] = await Promise.all([createNetns(), createNetns()])
  ;[redisA, redisB] = await Promise.all([netA.startRedis(), netB.startRedis()])
  // Tell the servers apart through the gateway.
  await directly(redisA, (c) => c.set('whoami', 'A'))
  await directly(redisB, (c) => c.set('whoami', 'B'))

  for (const ns of [SYSTEM, APPS, FORBIDDEN]) await ok(cluster, 'POST', '/api/v1/namespaces', { metadata: { name: ns } })
  await grantDiscovery(cluster, SYSTEM)
  await grantDiscovery(cluster, APPS)
  // RBAC reaches the authorizer through its informers: wait until the grant is in force.
  for (const ns of [SYSTEM, APPS]) {
    await waitUntil(`RBAC grant in ${ns}`, async () => {
      const res = await cluster.request('GET', slicePath(ns), undefined, { token: gatewayToken })
      return res.status === 200
    })
  }

  gw = await startKubeGateway([SYSTEM, APPS], cluster.kubeconfigFor(gatewayToken))
  await waitUntil('gateway /readyz', async () => (await fetch(`${gw.gateway.opsUrl}/readyz`)).status === 200)
}, 180_000)

afterAll(async () => {
  if (timings && Object.keys(timings).length) console.log(`propagation times (ms): ${JSON.stringify(timings)}`)
  // Every step runs even when an earlier one fails; the failures are reported together.
  const results = [
    await Promise.allSettled([gw?.stop()]),
    await Promise.allSettled([netA?.destroy(), netB?.destroy()]),
    await Promise.allSettled([cluster?.stop()]),
  ].flat()
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failures.length) throw new AggregateError(failures.map((f) => f.reason), 'teardown failed')
})

describe('least privilege', () => {
  it('the token may do only what the Role grants', async () => {
    const as = (path: string) => cluster.request('GET', path, undefined, { token: gatewayToken }).then((r) => r.status)
    expect(await as(svcPath(SYSTEM))).toBe(200)
    expect(await as(slicePath(APPS))).toBe(200)
    expect(await as(`/api/v1/namespaces/${SYSTEM}/secrets`)).toBe(403)
    expect(await as(`/api/v1/namespaces/${SYSTEM}/pods`)).toBe(403)
    expect(await as(svcPath(FORBIDDEN))).toBe(403)
    expect(await as('/api/v1/services')).toBe(403) // no cluster-wide list
    const write = await cluster.request('POST', svcPath(SYSTEM), service('redis-nope'), { token: gatewayToken })
    expect(write.status).toBe(403)
  })

  it('is enough: the gateway syncs and routes with it', async () => {
    expect(await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' })).toBe(0)
    expect(await gw.metric('redis_gateway_discovery_last_sync_timestamp_seconds', { source: 'kubernetes' })).toBeGreaterThan(0)
    await createRedisService(cluster, APPS, 'redis-cache', redisB)
    await waitUntil('redis-cache routed', async () => (await command(gw, 'cache', ['GET', 'whoami'])).body.result === 'B')
    await deleteRedisService(cluster, APPS, 'redis-cache')
    await waitUntil('redis-cache removed', async () => (await command(gw, 'cache', ['GET', 'whoami'])).status === 404)
  })

  it('a watched namespace it may not read: 403 in logs and metrics, no crash, the rest works', async () => {
    const other = await startKubeGateway([APPS, FORBIDDEN], cluster.kubeconfigFor(gatewayToken))
    try {
      await waitUntil(
        'discovery error metric',
        async () => (await other.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' })) >= 2,
      )
      const errors = other.logs.filter((l) => l.includes('discovery watch error'))
      const forbidden = errors.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => String(e['resource'] ?? '').endsWith(FORBIDDEN))
      expect(forbidden.length, errors.join('\n')).toBeGreaterThanOrEqual(2) // services and endpointslices
      for (const e of forbidden) {
        expect(e['status'], JSON.stringify(e)).toBe(403)
        expect(String(e['msg']), JSON.stringify(e)).toMatch(/forbidden|403/i)
      }
      // No error for the namespace it may read.
      expect(errors.filter((l) => l.includes(`/${APPS}`))).toEqual([])

      // Still serving: the readable namespace works through this gateway.
      await createRedisService(cluster, APPS, 'redis-side', redisA)
      await waitUntil('redis-side routed', async () => (await command(other, 'side', ['GET', 'whoami'])).body.result === 'A')
      expect((await fetch(`${other.gateway.opsUrl}/healthz`)).status).toBe(200)
      // Readiness: a namespace refused with 403 is reported, not waited for: the gateway is ready
      // for the namespaces it can serve.
      await waitUntil('ready despite the unreadable namespace', async () => (await fetch(`${other.gateway.opsUrl}/readyz`)).status === 200)
      await deleteRedisService(cluster, APPS, 'redis-side')
    } finally {
      await other.stop()
    }
  })
})

describe('changes reach routing within one second', () => {
  it('a new Service serves SET/GET on the netns redis', async () => {
    const t0 = performance.now()
    await createRedisService(cluster, SYSTEM, 'redis-orders', redisA)
    timings['create'] = await elapsedUntil(t0, 'orders routed', async () => (await command(gw, 'orders', ['GET', 'whoami'])).body.result === 'A')
    expect(await command(gw, 'orders', ['SET', 'orders:1', 'paid'])).toEqual({ status: 200, body: { result: 'OK' } })
    expect((await command(gw, 'orders', ['GET', 'orders:1'])).body).toEqual({ result: 'paid' })
    // The value is really in the redis-server inside netns A, seen from the host side.
    expect(redisA.host).toBe(netA.address)
    expect(await directly(redisA, (c) => c.get('orders:1'))).toBe('paid')
  })

  it('maintenance: drain -> 503 DRAINING within 1 s, and back', async () => {
    let t0 = performance.now()
    await annotate(cluster, SYSTEM, 'redis-orders', 'drain')
    const drain = await elapsedUntil(t0, 'DRAINING', async () => {
      const r = await command(gw, 'orders', ['GET', 'whoami'])
      return r.status === 503 && /^DRAINING/.test(r.body.error ?? '')
    })
    timings['annotation drain'] = drain
    expect(drain).toBeLessThan(1000)

    t0 = performance.now()
    await annotate(cluster, SYSTEM, 'redis-orders', null)
    const undrain = await elapsedUntil(t0, 'undrained', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 200)
    timings['annotation removed'] = undrain
    expect(undrain).toBeLessThan(1000)
  })

  it('endpoint change: traffic moves to the second redis within 1 s', async () => {
    const t0 = performance.now()
    await ok(cluster, 'PUT', slicePath(SYSTEM, 'redis-orders-1'), slice('redis-orders-1', 'redis-orders', redisB))
    const moved = await elapsedUntil(t0, 'traffic on B', async () => (await command(gw, 'orders', ['GET', 'whoami'])).body.result === 'B')
    timings['endpoint change'] = moved
    expect(moved).toBeLessThan(1000)
    expect((await command(gw, 'orders', ['SET', 'orders:2', 'on-b'])).status).toBe(200)
    expect(await directly(redisB, (c) => c.get('orders:2'))).toBe('on-b')
    expect(await directly(redisA, (c) => c.get('orders:2'))).toBe(null)
    // And back to A, for the next tests.
    await ok(cluster, 'PUT', slicePath(SYSTEM, 'redis-orders-1'), slice('redis-orders-1', 'redis-orders', redisA))
    await waitUntil('traffic back on A', async () => (await command(gw, 'orders', ['GET', 'whoami'])).body.result === 'A')
  })

  it('a quiet watch still delivers within 1 s (after the 25 s server-side watch timeout)', async () => {
    // Nothing changes for 27 s: every watch is renewed at least once meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 27_000))
    const t0 = performance.now()
    await annotate(cluster, SYSTEM, 'redis-orders', 'drain')
    const quiet = await elapsedUntil(t0, 'DRAINING after quiet period', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 503)
    timings['annotation after 27 s quiet'] = quiet
    expect(quiet).toBeLessThan(1000)
    await annotate(cluster, SYSTEM, 'redis-orders', null)
    await waitUntil('undrained', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 200)
  }, 60_000)
})

describe('watcher resilience', () => {
  /** Sends GETs back to back until stopped; counts outcomes. */
  function traffic(): { stop(): Promise<{ ok: number; failed: string[] }> } {
    let running = true
    const failed: string[] = []
    let okCount = 0
    const loop = (async () => {
      while (running) {
        try {
          const r = await command(gw, 'orders', ['GET', 'whoami'])
          if (r.status === 200 && r.body.result === 'A') okCount++
          else failed.push(`${r.status} ${JSON.stringify(r.body)}`)
        } catch (error) {
          failed.push(String(error))
        }
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    return {
      async stop() {
        running = false
        await loop
        return { ok: okCount, failed }
      },
    }
  }

  it('keeps routing while the API server is down, and sees changes after it is back', async () => {
    const errorsBefore = await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' })
    const flow = traffic()
    const outage = performance.now()
    await cluster.stopApiServer()
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    await cluster.startApiServer()
    const back = performance.now()
    // A change written as soon as the API server is ready again: it arrives once the watcher's
    // backoff sleep (capped exponential, full jitter) ends and it reconnects.
    await annotate(cluster, SYSTEM, 'redis-orders', 'drain')
    const after = await elapsedUntil(back, 'DRAINING after apiserver restart', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 503, BACKOFF_CAP_MS + 5_000)
    timings['annotation written right after apiserver restart'] = after
    const { ok: okCount, failed } = await flow.stop()
    // Requests kept succeeding (the routing table was kept) until the drain arrived.
    expect(failed.filter((f) => !f.startsWith('503 {"error":"DRAINING')), failed.slice(0, 5).join('\n')).toEqual([])
    expect(okCount).toBeGreaterThan(50)
    expect(await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' })).toBeGreaterThan(errorsBefore)
    expect(await gw.metric('redis_gateway_routing_table_instances', {})).toBeGreaterThanOrEqual(1)
    expect(after).toBeLessThan(BACKOFF_CAP_MS)

    timings['watch recovery after apiserver restart'] = await recovered(gw, outage, back)
    // The outage as an operator sees it: the API server went away, then lists and watches work again
    // (a warning and an info line, and the discovery_events_total outcomes).
    const api = gw.discovery.filter((e) => e.at > outage && e.resource === 'apiserver').map((e) => e.kind)
    expect(api[0]).toBe('api_down')
    expect(api.at(-1)).toBe('api_up')
    expect(gw.logs.filter((l) => /"level":"?(warn|40)/.test(l) && l.includes('kubernetes API server unreachable'))).not.toEqual([])
    expect(gw.logs.some((l) => l.includes('kubernetes API server back'))).toBe(true)
    expect(await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'api_down' })).toBeGreaterThan(0)
    expect(await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'api_up' })).toBeGreaterThan(0)
    // Once the watches are open again, changes are as quick as before.
    const t0 = performance.now()
    await annotate(cluster, SYSTEM, 'redis-orders', null)
    const undrain = await elapsedUntil(t0, 'undrained', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 200)
    timings['annotation after watch recovery'] = undrain
    expect(undrain).toBeLessThan(1000)
  }, 120_000)

  it('relists on 410 Gone after a compaction and an apiserver restart', async () => {
    const goneBefore = await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'gone' })
    const listedBefore = await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'listed' })
    // Advance etcd past every resourceVersion the watches hold (writes in another namespace), then
    // compact: a watch resumed from the old versions gets 410.
    for (let i = 0; i < 3; i++) await ok(cluster, 'POST', '/api/v1/namespaces', { metadata: { name: `filler-${i}` } })
    await cluster.compact()
    const flow = traffic()
    const outage = performance.now()
    await cluster.restartApiServer()
    const back = performance.now()
    await waitUntil(
      '410 Gone seen',
      async () => (await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'gone' })) > goneBefore,
      30_000,
    )
    await waitUntil(
      'relisted',
      async () => (await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'listed' })) > listedBefore,
      30_000,
    )
    timings['watch recovery after compaction + restart'] = await recovered(gw, outage, back)
    const { failed } = await flow.stop()
    expect(failed).toEqual([])
    expect(gw.logs.some((l) => l.includes('410 Gone'))).toBe(true)
    const gone = gw.discovery.filter((e) => e.at > outage && e.kind === 'gone').map((e) => e.resource)
    console.log(`410 Gone after compaction + restart for: ${gone.join(', ')}`)
    // At least one watch resumed from a compacted resourceVersion and relisted. Which ones varies
    // from run to run: a watch whose resourceVersion moved past the compaction revision before
    // the restart (e.g. through a bookmark) resumes without 410, which is also correct.
    const trace = gw.discovery.filter((e) => e.at > outage && e.resource !== undefined).map((e) => `${Math.round(e.at - outage)}ms ${e.resource} ${e.kind}`)
    expect(gone.length, trace.join('\n')).toBeGreaterThan(0)
    for (const resource of gone) {
      const relisted = gw.discovery.some((e) => e.at > outage && e.resource === resource && e.kind === 'listed')
      expect(relisted, `${resource} relisted after 410\n${trace.join('\n')}`).toBe(true)
    }

    // A change after the relist is still seen, and quickly.
    let t0 = performance.now()
    await annotate(cluster, SYSTEM, 'redis-orders', 'drain')
    timings['annotation after 410 relist'] = await elapsedUntil(t0, 'DRAINING after relist', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 503, 30_000)
    expect(timings['annotation after 410 relist']).toBeLessThan(1000)
    await annotate(cluster, SYSTEM, 'redis-orders', null)
    await waitUntil('undrained', async () => (await command(gw, 'orders', ['GET', 'whoami'])).status === 200, 30_000)

    // Deleting the Service removes the instance.
    t0 = performance.now()
    await deleteRedisService(cluster, SYSTEM, 'redis-orders')
    const removed = await elapsedUntil(t0, 'orders 404', async () => {
      const r = await command(gw, 'orders', ['GET', 'whoami'])
      return r.status === 404 && /^NOTFOUND/.test(r.body.error ?? '')
    })
    timings['service delete'] = removed
    expect(removed).toBeLessThan(1000)
  }, 120_000)
})
