// Watching every namespace (discovery.kubernetes.namespaces ["*"]) against a real kube-apiserver +
// etcd, with the gateway routing real traffic to real redis-servers in network namespaces:
//
// - with a ClusterRole of list/watch on services and endpointslices (nothing else), the gateway
//   lists and watches both cluster-wide (one watch each, resources services/* and
//   endpointslices/*), discovers annotated Services in two namespaces and follows an endpoint change;
// - the same Service name in two namespaces: the older Service provides the instance whatever the
//   order of events (a fresh gateway, whose cluster-wide list returns the newer one first, picks the
//   same), the other is reported once as a conflict, and takes over when the older is deleted;
//   with explicit namespaces, an older Service that becomes readable later takes the name over;
// - a token without cluster-wide rights: 403 on both cluster-wide lists, reported in logs and
//   metrics, and the gateway is ready anyway (it does not wait forever for a refused list).
//
// The tests run in order and share one cluster and one gateway.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RedisServer } from '../helpers/redis-server.js'
import { startCluster, type KubeCluster } from './helpers/cluster.js'
import {
  annotate,
  command,
  createRedisService,
  deleteRedisService,
  directly,
  grantClusterDiscovery,
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

// Alphabetical order matters for the conflict test: TEAM_A sorts before TEAM_B.
const TEAM_A = 'team-a'
const TEAM_B = 'team-b'
const CLUSTER_USER = 'cluster-gateway'
const NAMESPACED_USER = 'gateway'

let cluster: KubeCluster
let netA: Netns
let netB: Netns
let redisA: RedisServer
let redisB: RedisServer
let gw: KubeGateway
let clusterToken: string
const others: KubeGateway[] = []

const conflicts = (g: KubeGateway) => g.discovery.filter((e) => e.kind === 'conflict')
const whoami = async (g: KubeGateway, instance: string): Promise<unknown> => (await command(g, instance, ['GET', 'whoami'])).body.result
const ready = async (g: KubeGateway): Promise<boolean> => (await fetch(`${g.gateway.opsUrl}/readyz`)).status === 200

async function creationTimestamp(ns: string, name: string): Promise<string> {
  const res = await cluster.request<{ metadata: { creationTimestamp: string } }>('GET', svcPath(ns, name))
  if (res.status !== 200) throw new Error(`GET ${svcPath(ns, name)}: ${res.status}`)
  return res.body.metadata.creationTimestamp
}

beforeAll(async () => {
  cluster = await startCluster({ users: [CLUSTER_USER, NAMESPACED_USER] })
  clusterToken = cluster.tokenFor(CLUSTER_USER)
  ;[netA, netB] = await Promise.all([createNetns(), createNetns()])
  ;[redisA, redisB] = await Promise.all([netA.startRedis(), netB.startRedis()])
  await directly(redisA, (c) => c.set('whoami', 'A'))
  await directly(redisB, (c) => c.set('whoami', 'B'))

  for (const ns of [TEAM_A, TEAM_B]) await ok(cluster, 'POST', '/api/v1/namespaces', { metadata: { name: ns } })
  await grantClusterDiscovery(cluster, CLUSTER_USER)
  // The other user may read one namespace only: no cluster-wide list.
  await grantDiscovery(cluster, TEAM_A, NAMESPACED_USER)
  await waitUntil('cluster-wide RBAC grant in force', async () => {
    const res = await cluster.request('GET', '/apis/discovery.k8s.io/v1/endpointslices', undefined, { token: clusterToken })
    return res.status === 200
  })

  gw = await startKubeGateway(['*'], cluster.kubeconfigFor(clusterToken))
  await waitUntil('gateway /readyz', () => ready(gw))
}, 180_000)

afterAll(async () => {
  const results = [
    await Promise.allSettled([gw?.stop(), ...others.map((o) => o.stop())]),
    await Promise.allSettled([netA?.destroy(), netB?.destroy()]),
    await Promise.allSettled([cluster?.stop()]),
  ].flat()
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failures.length) throw new AggregateError(failures.map((f) => f.reason), 'teardown failed')
})

describe('namespaces ["*"]: cluster-wide list and watch', () => {
  it('the ClusterRole lets the token list and watch both resources cluster-wide, and nothing else', async () => {
    const status = (method: string, path: string, body?: unknown) =>
      cluster.request(method, path, body, { token: clusterToken }).then((r) => r.status)
    expect(await status('GET', '/api/v1/services')).toBe(200)
    expect(await status('GET', '/apis/discovery.k8s.io/v1/endpointslices')).toBe(200)
    for (const path of ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices']) {
      expect((await cluster.watchOnce(path, { token: clusterToken, timeoutMs: 2_000 })).status, `watch ${path}`).toBe(200)
    }
    expect(await status('GET', '/api/v1/secrets')).toBe(403)
    expect(await status('GET', '/api/v1/pods')).toBe(403)
    expect(await status('GET', '/api/v1/endpoints')).toBe(403)
    expect(await status('GET', svcPath('default', 'kubernetes'))).toBe(403) // no get
    expect(await status('POST', svcPath(TEAM_A), service('redis-nope'))).toBe(403)
  })

  it('the gateway watches services/* and endpointslices/*, once each, without an error', async () => {
    const resources = new Set(gw.discovery.filter((e) => e.kind === 'listed' || e.kind === 'watching').map((e) => e.resource))
    expect([...resources].sort()).toEqual(['endpointslices/*', 'services/*'])
    expect(gw.discovery.filter((e) => e.kind === 'listed').map((e) => e.resource).sort()).toEqual(['endpointslices/*', 'services/*'])
    expect(gw.discovery.filter((e) => e.kind === 'error')).toEqual([])
    expect(await gw.metric('redis_gateway_discovery_last_sync_timestamp_seconds', { source: 'kubernetes' })).toBeGreaterThan(0)
  })

  it('discovers annotated Services in two namespaces and serves each', async () => {
    await createRedisService(cluster, TEAM_A, 'redis-orders', redisA)
    await ok(cluster, 'POST', slicePath(TEAM_B), slice('redis-catalog-1', 'redis-catalog', redisB))
    await ok(cluster, 'POST', svcPath(TEAM_B), service('redis-catalog', { 'redis-gateway.io/maintenance': 'read-only' }))

    await waitUntil('orders routed to A', async () => (await whoami(gw, 'orders')) === 'A')
    expect(await command(gw, 'orders', ['SET', 'orders:1', 'paid'])).toEqual({ status: 200, body: { result: 'OK' } })
    expect(await directly(redisA, (c) => c.get('orders:1'))).toBe('paid')

    await waitUntil('catalog routed to B', async () => (await whoami(gw, 'catalog')) === 'B')
    // The annotation of the Service in the other namespace is in force: writes refused.
    const write = await command(gw, 'catalog', ['SET', 'catalog:1', 'x'])
    expect(write.status).toBe(503)
    expect(write.body.error).toMatch(/^READONLY/)
    expect(await directly(redisB, (c) => c.get('catalog:1'))).toBe(null)
    // Services that are not redis-* (the API server's own default/kubernetes) are not instances.
    expect((await command(gw, 'kubernetes', ['PING'])).status).toBe(404)
  })

  it('follows an endpoint change in either namespace', async () => {
    await ok(cluster, 'PUT', slicePath(TEAM_A, 'redis-orders-1'), slice('redis-orders-1', 'redis-orders', redisB))
    await waitUntil('orders moved to B', async () => (await whoami(gw, 'orders')) === 'B')
    expect((await command(gw, 'orders', ['SET', 'orders:2', 'on-b'])).status).toBe(200)
    expect(await directly(redisB, (c) => c.get('orders:2'))).toBe('on-b')
    expect(await directly(redisA, (c) => c.get('orders:2'))).toBe(null)
    await ok(cluster, 'PUT', slicePath(TEAM_A, 'redis-orders-1'), slice('redis-orders-1', 'redis-orders', redisA))
    await waitUntil('orders back on A', async () => (await whoami(gw, 'orders')) === 'A')
    // And a Service deleted in one namespace goes away, the other stays.
    await ok(cluster, 'DELETE', svcPath(TEAM_B, 'redis-catalog'))
    await ok(cluster, 'DELETE', slicePath(TEAM_B, 'redis-catalog-1'))
    await waitUntil('catalog removed', async () => (await command(gw, 'catalog', ['PING'])).status === 404)
    expect(await whoami(gw, 'orders')).toBe('A')
  })
})

describe('the same name in two namespaces', () => {
  it('the older Service provides the instance; the newer one is reported once as a conflict', async () => {
    const before = await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'conflict' })
    await createRedisService(cluster, TEAM_B, 'redis-dup', redisB)
    await waitUntil('dup routed to B', async () => (await whoami(gw, 'dup')) === 'B')
    // creationTimestamp has 1 s resolution: let the clock pass the next second so the second Service
    // is strictly newer (on a tie the namespace order would decide, and TEAM_A comes first).
    const olderAt = Date.parse(await creationTimestamp(TEAM_B, 'redis-dup'))
    await waitUntil('clock past the older Service\'s second', async () => Date.now() >= olderAt + 1_100, 5_000)
    await createRedisService(cluster, TEAM_A, 'redis-dup', redisA)
    const newerAt = Date.parse(await creationTimestamp(TEAM_A, 'redis-dup'))
    expect(newerAt).toBeGreaterThan(olderAt)

    await waitUntil('conflict reported', async () => conflicts(gw).some((e) => e.resource === `${TEAM_A}/redis-dup`))
    const reported = conflicts(gw).filter((e) => e.instance === 'dup')
    expect(reported.map((e) => e.resource)).toEqual([`${TEAM_A}/redis-dup`])
    expect(reported[0]?.error).toContain(`instance 'dup' is already provided by Service ${TEAM_B}/redis-dup; ${TEAM_A}/redis-dup is ignored`)
    expect(gw.logs.some((l) => l.includes('discovery conflict') && l.includes(`${TEAM_A}/redis-dup is ignored`))).toBe(true)
    expect(await gw.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'conflict' })).toBe(before + 1)
    // Traffic stays with the older Service.
    for (let i = 0; i < 5; i++) expect(await whoami(gw, 'dup')).toBe('B')

    // A change to the ignored Service rebuilds the instance (from the older one) but does not report again.
    const reconciledBefore = gw.discovery.filter((e) => e.kind === 'reconciled' && e.resource === `${TEAM_B}/redis-dup`).length
    await annotate(cluster, TEAM_A, 'redis-dup', 'drain')
    await waitUntil('instance rebuilt after the change', async () =>
      gw.discovery.filter((e) => e.kind === 'reconciled' && e.resource === `${TEAM_B}/redis-dup`).length > reconciledBefore,
    )
    expect(conflicts(gw).filter((e) => e.instance === 'dup')).toHaveLength(1)
    // The ignored Service's drain annotation does not apply to the instance.
    expect((await command(gw, 'dup', ['GET', 'whoami'])).body).toEqual({ result: 'B' })
    await annotate(cluster, TEAM_A, 'redis-dup', null)
  })

  it('a fresh gateway, whose list returns the newer Service first, picks the same one', async () => {
    // The cluster-wide list is in namespace order: team-a/redis-dup (newer) before team-b/redis-dup.
    const list = await cluster.request<{ items: { metadata: { namespace: string; name: string } }[] }>('GET', '/api/v1/services')
    const order = list.body.items.filter((s) => s.metadata.name === 'redis-dup').map((s) => s.metadata.namespace)
    expect(order).toEqual([TEAM_A, TEAM_B])

    const fresh = await startKubeGateway(['*'], cluster.kubeconfigFor(clusterToken, { name: 'fresh' }))
    others.push(fresh)
    await waitUntil('fresh gateway /readyz', () => ready(fresh))
    // Ready means both lists are applied: the choice is made, and it is the older Service.
    expect(await whoami(fresh, 'dup')).toBe('B')
    expect(conflicts(fresh).map((e) => `${e.instance} ${e.resource}`)).toEqual([`dup ${TEAM_A}/redis-dup`])
    await fresh.stop()
  })

  it('when the older Service is deleted the newer one takes over, with no conflict left', async () => {
    const reported = conflicts(gw).length
    await deleteRedisService(cluster, TEAM_B, 'redis-dup')
    await waitUntil('dup moved to A', async () => (await whoami(gw, 'dup')) === 'A')
    expect(conflicts(gw)).toHaveLength(reported)
    // Recreated now, the Service in TEAM_B is the newer one: it is the one ignored.
    await createRedisService(cluster, TEAM_B, 'redis-dup', redisB)
    await waitUntil('conflict reported for the recreated Service', async () => conflicts(gw).some((e) => e.resource === `${TEAM_B}/redis-dup`))
    expect(conflicts(gw).at(-1)?.error).toContain(`already provided by Service ${TEAM_A}/redis-dup; ${TEAM_B}/redis-dup is ignored`)
    for (let i = 0; i < 5; i++) expect(await whoami(gw, 'dup')).toBe('A')
    await deleteRedisService(cluster, TEAM_A, 'redis-dup')
    await deleteRedisService(cluster, TEAM_B, 'redis-dup')
    await waitUntil('dup removed', async () => (await command(gw, 'dup', ['PING'])).status === 404)
  })
})

describe('the same name, seen in a different order (explicit namespaces)', () => {
  it('an older Service that becomes visible later takes the instance over, as a fresh start would pick it', async () => {
    // The namespaced user may read TEAM_A only, so a gateway watching [TEAM_A, TEAM_B] sees the
    // newer Service first; the older one appears when TEAM_B is granted. Every replica must end up
    // with the same choice, whatever it saw first.
    const token = cluster.tokenFor(NAMESPACED_USER)
    await createRedisService(cluster, TEAM_B, 'redis-late', redisB)
    const olderAt = Date.parse(await creationTimestamp(TEAM_B, 'redis-late'))
    await waitUntil("clock past the older Service's second", async () => Date.now() >= olderAt + 1_100, 5_000)
    await createRedisService(cluster, TEAM_A, 'redis-late', redisA)
    expect(Date.parse(await creationTimestamp(TEAM_A, 'redis-late'))).toBeGreaterThan(olderAt)

    const late = await startKubeGateway([TEAM_A, TEAM_B], cluster.kubeconfigFor(token, { name: 'late' }))
    others.push(late)
    await waitUntil('ready, TEAM_B refused', async () => (await ready(late)) && late.discovery.some((e) => e.kind === 'error' && e.status === 403))
    await waitUntil('late routed to A, the only one visible', async () => (await whoami(late, 'late')) === 'A')
    expect(conflicts(late)).toEqual([])

    await grantDiscovery(cluster, TEAM_B, NAMESPACED_USER)
    // The watcher retries TEAM_B with backoff (capped at 30 s).
    await waitUntil('late moved to B, the older', async () => (await whoami(late, 'late')) === 'B', 40_000)
    expect(conflicts(late).map((e) => `${e.instance} ${e.resource}`)).toEqual([`late ${TEAM_A}/redis-late`])
    expect(conflicts(late)[0]?.error).toContain(`already provided by Service ${TEAM_B}/redis-late; ${TEAM_A}/redis-late is ignored`)
    // The cluster-wide gateway agrees.
    expect(await whoami(gw, 'late')).toBe('B')
    await late.stop()
    await deleteRedisService(cluster, TEAM_A, 'redis-late')
    await deleteRedisService(cluster, TEAM_B, 'redis-late')
  }, 90_000)
})

describe('without cluster-wide rights', () => {
  it('403 on both cluster-wide lists is reported, and the gateway is ready anyway', async () => {
    const token = cluster.tokenFor(NAMESPACED_USER)
    // The user may read TEAM_A and TEAM_B, but not list cluster-wide.
    expect((await cluster.request('GET', svcPath(TEAM_A), undefined, { token })).status).toBe(200)
    expect((await cluster.request('GET', '/api/v1/services', undefined, { token })).status).toBe(403)

    const limited = await startKubeGateway(['*'], cluster.kubeconfigFor(token, { name: 'limited' }))
    others.push(limited)
    await waitUntil('403 on services/* and endpointslices/*', async () =>
      ['services/*', 'endpointslices/*'].every((r) => limited.discovery.some((e) => e.kind === 'error' && e.resource === r && e.status === 403)),
    )
    const errors = limited.logs.filter((l) => l.includes('discovery watch error')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(new Set(errors.map((e) => e['resource']))).toEqual(new Set(['services/*', 'endpointslices/*']))
    for (const e of errors) {
      expect(e['status'], JSON.stringify(e)).toBe(403)
      expect(String(e['msg']), JSON.stringify(e)).toMatch(/forbidden/i)
    }
    expect(await limited.metric('redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' })).toBeGreaterThanOrEqual(2)
    // Reported, not waited on: ready (nothing to serve from Kubernetes), alive, and no namespace-by-namespace fallback.
    await waitUntil('ready despite the refused lists', () => ready(limited))
    expect((await fetch(`${limited.gateway.opsUrl}/healthz`)).status).toBe(200)
    expect(limited.discovery.filter((e) => e.resource !== undefined && !e.resource.endsWith('/*'))).toEqual([])
    expect((await command(limited, 'orders', ['PING'])).status).toBe(404)
    await limited.stop()
  })
})
