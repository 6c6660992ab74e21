// Kubernetes discovery with many Services, against a real kube-apiserver + etcd (the gateway in
// process, Redis in a network namespace):
//
// - start-up: when the Services list arrives before the EndpointSlices list, no instance is built
//   from a Service without its slices (at its cluster IP, to be rebuilt at the pods a moment
//   later): each instance is built once, at its slice's address. The slices are made heavy
//   (padding annotations) so that their list arrives last, and the test checks it did before it
//   asserts anything (a start where it did not is retried with a new gateway);
// Recovery after an apiserver outage is proved with injected clocks in
// src/discovery/kubernetes/recovery.test.ts and list-watch.test.ts, and measured against a real
// apiserver by bench/scale-kube.ts. A real-apiserver case here proved nothing when the apiserver
// took longer to start than the watches' remaining backoff (a busy CI machine), so it was taken out.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN } from '../helpers/gateway.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { startCluster, type KubeCluster } from './helpers/cluster.js'
import { annotate, command, directly, grantDiscovery, ok, service, slicePath, startKubeGateway, svcPath, waitUntil, type KubeGateway } from './helpers/kube-gateway.js'
import { createNetns, type Netns } from './helpers/netns.js'
import { KubernetesSource, loadKubeConfig } from '../../src/discovery/kubernetes/source.js'
import { instanceUpdates } from '../../src/core/topology.js'

const NS = 'redis-system'
/** Services (instances) created; each has one EndpointSlice at the same netns Redis. */
const COUNT = Number(process.env['DISCOVERY_SCALE_COUNT'] ?? 300)
/** Bytes of padding per EndpointSlice, so that the slices list is much larger than the Services list. */
const SLICE_PADDING = 16_000
const WATCHED = [`services/${NS}`, `endpointslices/${NS}`]

const results: Record<string, number | string> = {}

let cluster: KubeCluster
let net: Netns
let redis: RedisServer
let kubeconfig: string
let gw: KubeGateway | undefined

function paddedSlice(name: string, serviceName: string, server: RedisServer): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, labels: { 'kubernetes.io/service-name': serviceName }, annotations: { 'test.redis-gateway.io/padding': 'x'.repeat(SLICE_PADDING) } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [server.host], conditions: { ready: true } }],
    ports: [{ name: 'redis', port: server.port, protocol: 'TCP' }],
  }
}

/** Runs `fn` over 0..n-1, `width` at a time. */
async function parallel(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++)
    }),
  )
}

async function routes(g: KubeGateway): Promise<{ instances: { name: string; endpoints: { host: string; port: number }[] }[] }> {
  const res = await fetch(`${g.gateway.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  return (await res.json()) as never
}

beforeAll(async () => {
  cluster = await startCluster({ users: ['gateway'] })
  net = await createNetns()
  redis = await net.startRedis()
  await directly(redis, (c) => c.set('whoami', 'netns'))
  await ok(cluster, 'POST', '/api/v1/namespaces', { metadata: { name: NS } })
  await grantDiscovery(cluster, NS)
  const token = cluster.tokenFor('gateway')
  await waitUntil('RBAC grant in force', async () => (await cluster.request('GET', slicePath(NS), undefined, { token })).status === 200)
  kubeconfig = cluster.kubeconfigFor(token)
  const t0 = performance.now()
  // Slices first, as createRedisService does: the cluster holds no Service without its slice.
  await parallel(COUNT, 8, (i) => ok(cluster, 'POST', slicePath(NS), paddedSlice(`redis-s${i}-1`, `redis-s${i}`, redis)))
  await parallel(COUNT, 8, (i) => ok(cluster, 'POST', svcPath(NS), service(`redis-s${i}`)))
  results['objects created (ms)'] = Math.round(performance.now() - t0)
}, 300_000)

afterAll(async () => {
  console.log(`discovery at scale (${COUNT} Services): ${JSON.stringify(results)}`)
  const settled = [await Promise.allSettled([gw?.stop()]), await Promise.allSettled([net?.destroy()]), await Promise.allSettled([cluster?.stop()])].flat()
  const failures = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failures.length) throw new AggregateError(failures.map((f) => f.reason), 'teardown failed')
})

describe('start-up with many Services', () => {
  it('the Services list arrives first, yet each instance is built once, at its EndpointSlice address', async () => {
    let servicesFirst = false
    for (let attempt = 1; attempt <= 5 && !servicesFirst; attempt++) {
      await gw?.stop()
      const started = performance.now()
      gw = await startKubeGateway([NS], kubeconfig)
      const g = gw
      await waitUntil('gateway ready', async () => (await fetch(`${g.gateway.opsUrl}/readyz`)).status === 200, 60_000)
      await waitUntil(`${COUNT} instances routed`, async () => (await routes(g)).instances.length >= COUNT, 60_000)
      results['start to all instances routed (ms)'] = Math.round(performance.now() - started)
      const listed = (r: string) => g.discovery.find((e) => e.kind === 'listed' && e.resource === r)?.at ?? Number.POSITIVE_INFINITY
      servicesFirst = listed(WATCHED[0]!) < listed(WATCHED[1]!)
      results['attempts until the Services list came first'] = attempt
      results['Services listed before EndpointSlices by (ms)'] = Math.round(listed(WATCHED[1]!) - listed(WATCHED[0]!))
    }
    expect(servicesFirst, 'the Services list never arrived before the EndpointSlices list: this start proves nothing').toBe(true)
    const g = gw!

    // One build per Service (each upsert is a 'reconciled' discovery event naming its Service).
    const builds = new Map<string, number>()
    for (const e of g.discovery) if (e.kind === 'reconciled' && e.resource) builds.set(e.resource, (builds.get(e.resource) ?? 0) + 1)
    results['instance builds at start-up'] = [...builds.values()].reduce((a, b) => a + b, 0)
    const rebuilt = [...builds].filter(([, n]) => n !== 1)
    expect(rebuilt.slice(0, 5), `${rebuilt.length} Services built more than once`).toEqual([])
    expect(builds.size).toBe(COUNT)

    // Never at a cluster IP name, never an endpoint change afterwards (the instance events the log
    // reports: a line each at info, or at debug under a summary line when many come in one change).
    const added = g.instanceChanges.filter((e) => e.change === 'added')
    expect(added).toHaveLength(COUNT)
    const atClusterIp = added.filter((e) => e.addedEndpoints.some((ep) => ep.includes('.svc')))
    expect(atClusterIp.slice(0, 3), `${atClusterIp.length} instances first built at their cluster IP name`).toEqual([])
    expect(g.instanceChanges.filter((e) => e.change === 'updated')).toHaveLength(0)
    // Built in chunks: several routing-table changes, none of them all the instances.
    const summaries = g.logs.filter((l) => l.includes('"msg":"routing table:') || l.includes('"msg":"instance added"'))
    results['log lines for the instances added (summaries and single lines)'] = summaries.length
    // The chunks and the lists' reports ran as jobs of the gateway's one background queue, which
    // the command tables' reads share (not each from a setImmediate of its own).
    results['jobs posted to the background queue'] = g.backgroundPosts()
    expect(g.backgroundPosts()).toBeGreaterThanOrEqual(2)

    const view = await routes(g)
    for (const inst of view.instances) expect(inst.endpoints.map((e) => `${e.host}:${e.port}`), inst.name).toEqual([`${redis.host}:${redis.port}`])
    expect((await command(g, `s${COUNT - 1}`, ['GET', 'whoami'])).body.result).toBe('netns')
  }, 300_000)

  it('lists read in pages (limit and continue on the real API server) give the same instances', async () => {
    const built = new Map<string, string>()
    const source = new KubernetesSource({
      kubeConfig: loadKubeConfig(kubeconfig),
      namespaces: [NS],
      servicePrefix: 'redis-',
      listPageSize: 64,
      apply: (u) => {
        for (const one of instanceUpdates(u)) if (one.type === 'upsert') built.set(one.instance.name, one.instance.endpoints.map((e) => e.id).join(','))
      },
    })
    source.start()
    try {
      await waitUntil('paged source synced', async () => source.synced, 60_000)
      expect(built.size).toBe(COUNT)
      for (let i = 0; i < COUNT; i++) expect(built.get(`s${i}`), `s${i}`).toBe(`${redis.host}:${redis.port}`)
    } finally {
      await source.stop()
    }
  }, 120_000)
})
