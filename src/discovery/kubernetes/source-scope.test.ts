// The URLs Kubernetes discovery requests, with and without a label selector: a stand-in API server
// (plain HTTP on loopback) records every list and watch the real client (@kubernetes/client-node,
// through KubernetesSource) sends, per namespace and cluster-wide. The behaviour on a real
// kube-apiserver is in test/kubernetes/discovery-scope.test.ts.
import { afterEach, describe, expect, it } from 'vitest'
import { waitFor } from '../../../test/helpers/wait.js'
import { kubeConfigFor as kubeConfig, startStandInApiServer, type RecordedRequest } from '../../../test/helpers/stand-in-apiserver.js'
import { instanceUpdates, type InstanceSpec } from '../../core/topology.js'
import { KubernetesSource, LIST_PAGE_SIZE, selectorParams } from './source.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** Starts a source against a stand-in API server; resolves once every list and watch was requested. */
async function requestsOf(opts: { namespaces: string[]; labelSelector?: string; optIn?: boolean }): Promise<RecordedRequest[]> {
  const api = await startStandInApiServer()
  cleanups.push(api.close)
  const source = new KubernetesSource({ kubeConfig: kubeConfig(api.url), servicePrefix: 'redis-', apply: () => {}, ...opts })
  source.start()
  cleanups.push(() => source.stop())
  const expected = opts.namespaces.length * 4 // per scope: list + watch, of services and endpointslices
  await waitFor(async () => api.requests.length >= expected, { message: `${expected} requests`, timeoutMs: 5_000, intervalMs: 5 })
  return api.requests
}

const listsAndWatches = (reqs: RecordedRequest[]): string[] =>
  reqs.map((r) => `${r.query['watch'] === 'true' ? 'watch' : 'list'} ${r.path}`).sort()

describe('list and watch URLs', () => {
  it('without a selector: no labelSelector parameter at all', async () => {
    const reqs = await requestsOf({ namespaces: ['redis-system'] })
    expect(listsAndWatches(reqs)).toEqual([
      'list /api/v1/namespaces/redis-system/services',
      'list /apis/discovery.k8s.io/v1/namespaces/redis-system/endpointslices',
      'watch /api/v1/namespaces/redis-system/services',
      'watch /apis/discovery.k8s.io/v1/namespaces/redis-system/endpointslices',
    ])
    for (const r of reqs) expect(r.query, r.path).not.toHaveProperty('labelSelector')
    // The watch continues from the list, with bookmarks and a server-side timeout.
    const watch = reqs.find((r) => r.query['watch'] === 'true')!
    expect(watch.query).toMatchObject({ resourceVersion: '7', allowWatchBookmarks: 'true', timeoutSeconds: '25' })
  })

  it('labelSelector goes on every list and watch, of Services and EndpointSlices, in each namespace', async () => {
    const reqs = await requestsOf({ namespaces: ['team-a', 'team-b'], labelSelector: ' team = payments ' })
    expect(reqs).toHaveLength(8)
    for (const r of reqs) expect(r.query['labelSelector'], `${r.path} ${JSON.stringify(r.query)}`).toBe('team=payments')
    expect(new Set(reqs.map((r) => r.path))).toEqual(
      new Set(['team-a', 'team-b'].flatMap((ns) => [`/api/v1/namespaces/${ns}/services`, `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`])),
    )
  })

  it('cluster-wide (["*"]), with optIn: the opt-in label ANDed into the selector', async () => {
    const reqs = await requestsOf({ namespaces: ['*'], labelSelector: 'team in (payments,orders)', optIn: true })
    expect(listsAndWatches(reqs)).toEqual([
      'list /api/v1/services',
      'list /apis/discovery.k8s.io/v1/endpointslices',
      'watch /api/v1/services',
      'watch /apis/discovery.k8s.io/v1/endpointslices',
    ])
    for (const r of reqs) expect(r.query['labelSelector']).toBe('team in (orders,payments),redis-gateway.io/expose=true')
  })

  it('optIn alone', async () => {
    const reqs = await requestsOf({ namespaces: ['redis-system'], optIn: true })
    for (const r of reqs) expect(r.query['labelSelector']).toBe('redis-gateway.io/expose=true')
  })

  it('the selector is percent-encoded on the wire and decodes to the same text', () => {
    const q = new URLSearchParams(selectorParams('team in (a,b),!legacy,tier>3') as Record<string, string>).toString()
    expect(q).toBe('labelSelector=team+in+%28a%2Cb%29%2C%21legacy%2Ctier%3E3')
    expect(selectorParams('')).toEqual({})
  })

  it('a malformed selector is refused at construction, before any request', () => {
    expect(
      () => new KubernetesSource({ kubeConfig: kubeConfig('http://127.0.0.1:1'), namespaces: ['a'], servicePrefix: 'redis-', apply: () => {}, labelSelector: 'team in (a' }),
    ).toThrow(/not a valid label selector/)
  })
})

describe('lists in pages', () => {
  const NS = 'redis-system'
  const svc = (i: number): unknown => ({
    metadata: { namespace: NS, name: `redis-i${i}`, resourceVersion: '1', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }] },
  })
  const slice = (i: number): unknown => ({
    metadata: { namespace: NS, name: `redis-i${i}-1`, resourceVersion: '1', labels: { 'kubernetes.io/service-name': `redis-i${i}` } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [`10.1.0.${i + 1}`], conditions: { ready: true } }],
    ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }],
  })

  it('asks for limit-sized pages, follows the continue tokens, watches from the list\'s resourceVersion, and builds every object', async () => {
    const n = 7
    const api = await startStandInApiServer({ services: Array.from({ length: n }, (_, i) => svc(i)), slices: Array.from({ length: n }, (_, i) => slice(i)) })
    cleanups.push(api.close)
    const instances = new Map<string, InstanceSpec>()
    const source = new KubernetesSource({
      kubeConfig: kubeConfig(api.url),
      namespaces: [NS],
      servicePrefix: 'redis-',
      listPageSize: 3,
      apply: (u) => {
        for (const one of instanceUpdates(u)) if (one.type === 'upsert') instances.set(one.instance.name, one.instance)
      },
    })
    source.start()
    cleanups.push(() => source.stop())
    await waitFor(async () => source.synced && api.requests.filter((r) => r.query['watch'] === 'true').length === 2, { message: 'synced and watching', timeoutMs: 5_000, intervalMs: 5 })
    expect([...instances.values()].map((i) => `${i.name} ${i.endpoints[0]!.host}`).sort()).toEqual(Array.from({ length: n }, (_, i) => `i${i} 10.1.0.${i + 1}`).sort())
    for (const resource of ['/api/v1/namespaces/redis-system/services', '/apis/discovery.k8s.io/v1/namespaces/redis-system/endpointslices']) {
      const lists = api.requests.filter((r) => r.path === resource && r.query['watch'] !== 'true').map((r) => r.query)
      expect(lists).toEqual([{ limit: '3' }, { limit: '3', continue: '3' }, { limit: '3', continue: '6' }])
      expect(api.requests.find((r) => r.path === resource && r.query['watch'] === 'true')?.query).toMatchObject({ resourceVersion: '7' })
    }
  })

  it('by default, pages of LIST_PAGE_SIZE', async () => {
    const reqs = await requestsOf({ namespaces: ['redis-system'] })
    for (const r of reqs.filter((q) => q.query['watch'] !== 'true')) expect(r.query).toEqual({ limit: String(LIST_PAGE_SIZE) })
  })
})
