// KubernetesSource at start-up, with injected API calls whose answers the test releases one by one:
// a namespace's instances are built once both its lists are in (never from a Services list alone,
// at the cluster IP, to be rebuilt at the pods a moment later), each namespace on its own, and a
// namespace whose EndpointSlices are refused (403) is built from its Services alone. And after an
// outage the source's shared recovery wakes every list and watch as soon as /readyz answers, which
// the default API probes with the kubeconfig's credentials.
// The same start on a real kube-apiserver: test/kubernetes/discovery-scale.test.ts.

import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, expect, test } from 'vitest'
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node'
import { kubeConfigFor } from '../../../test/helpers/stand-in-apiserver.js'
import { instanceUpdates, type TopologyUpdate } from '../../core/topology.js'
import type { ListResult, WatchFn } from './list-watch.js'
import { clientNodeApi, KubernetesSource, RECONCILE_CHUNK, RECONCILE_SLICE_MS, type KubernetesApi } from './source.js'

const svc = (ns: string, name: string): V1Service => ({
  metadata: { namespace: ns, name, resourceVersion: '1', creationTimestamp: new Date('2026-01-01T00:00:00Z') },
  spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }] },
})
const slice = (ns: string, service: string, ip: string): V1EndpointSlice => ({
  metadata: { namespace: ns, name: `${service}-1`, resourceVersion: '1', labels: { 'kubernetes.io/service-name': service } },
  addressType: 'IPv4',
  endpoints: [{ addresses: [ip], conditions: { ready: true } }],
  ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }],
})

type Answer<T> = { items: T[] } | { status: number } | 'refused'

/** A list call the test answers when it wants to (release), once per call. */
class Gate<T> {
  private waiting: ((a: Answer<T>) => void)[] = []
  calls = 0
  call(): Promise<ListResult<T>> {
    this.calls++
    return new Promise<Answer<T>>((r) => this.waiting.push(r)).then((a) => {
      if (a === 'refused') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
      if ('status' in a) throw Object.assign(new Error(`HTTP ${a.status}`), { statusCode: a.status })
      return { items: a.items, metadata: { resourceVersion: '5' } }
    })
  }
  get pending(): number {
    return this.waiting.length
  }
  release(a: Answer<T>): void {
    const next = this.waiting.shift()
    if (!next) throw new Error('no list call waiting')
    next(a)
  }
}

/** `now`: the source's clock (chunk sizing); `onApply`: runs as each update is applied (e.g. to move that clock). */
function harness(namespaces: string[], opts: { now?: () => number; onApply?: (u: TopologyUpdate) => void } = {}) {
  const services = new Map(namespaces.map((ns) => [ns, new Gate<V1Service>()]))
  const slices = new Map(namespaces.map((ns) => [ns, new Gate<V1EndpointSlice>()]))
  const watches: { ns: string; done: (err?: unknown) => void }[] = []
  const readyz: { answer: number | 'refused'; calls: number } = { answer: 200, calls: 0 }
  const watch = <T,>(ns: string): WatchFn<T> => async (_rv, _onEvent, done) => {
    watches.push({ ns, done })
    return { abort: () => done() }
  }
  const api: KubernetesApi = {
    listServices: (ns) => services.get(ns!)!.call(),
    listSlices: (ns) => slices.get(ns!)!.call(),
    watchServices: (ns) => watch(ns!),
    watchSlices: (ns) => watch(ns!),
    readyz: async () => {
      readyz.calls++
      if (readyz.answer === 'refused') throw new Error('connect ECONNREFUSED')
      return readyz.answer
    },
  }
  const updates: TopologyUpdate[] = []
  const sleeps: { ms: number; end: () => void }[] = []
  const source = new KubernetesSource({
    kubeConfig: undefined as never, // unused: the API calls are injected
    namespaces,
    servicePrefix: 'redis-',
    apply: (u) => {
      updates.push(u)
      opts.onApply?.(u)
    },
    api,
    timing: {
      ...(opts.now ? { now: opts.now } : {}),
      random: () => 0.5,
      sleep: (ms, signal) =>
        new Promise<void>((r) => {
          sleeps.push({ ms, end: r })
          signal.addEventListener('abort', () => r())
        }),
    },
  })
  const tick = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
  }
  /** Upserts so far, as "name -> endpoint hosts". */
  const built = (): string[] =>
    updates.flatMap(instanceUpdates).flatMap((u) => (u.type === 'upsert' ? [`${u.instance.name} -> ${u.instance.endpoints.map((e) => e.host).join(',')}`] : []))
  return { services, slices, watches, readyz, source, updates, built, sleeps, tick }
}

describe('start-up: a namespace is built once both its lists are in', () => {
  test('Services listed first: nothing is built until the EndpointSlices are in, then each instance once, at its pods', async () => {
    const h = harness(['redis-system'])
    h.source.start()
    await h.tick()
    h.services.get('redis-system')!.release({ items: [svc('redis-system', 'redis-a'), svc('redis-system', 'redis-b')] })
    await h.tick()
    // Without the slices the instances would be at redis-a.redis-system.svc (the cluster IP).
    expect(h.built()).toEqual([])
    h.slices.get('redis-system')!.release({ items: [slice('redis-system', 'redis-a', '10.1.0.1'), slice('redis-system', 'redis-b', '10.1.0.2')] })
    await h.tick()
    expect(h.built().sort()).toEqual(['a -> 10.1.0.1', 'b -> 10.1.0.2'])
    expect(h.source.synced).toBe(true)
    await h.source.stop()
  })

  test('EndpointSlices listed first: the same, once', async () => {
    const h = harness(['redis-system'])
    h.source.start()
    await h.tick()
    h.slices.get('redis-system')!.release({ items: [slice('redis-system', 'redis-a', '10.1.0.1')] })
    await h.tick()
    expect(h.built()).toEqual([])
    h.services.get('redis-system')!.release({ items: [svc('redis-system', 'redis-a')] })
    await h.tick()
    expect(h.built()).toEqual(['a -> 10.1.0.1'])
    await h.source.stop()
  })

  test('each namespace on its own: one with both lists in is built while another waits for its slices', async () => {
    const h = harness(['ns-a', 'ns-b'])
    h.source.start()
    await h.tick()
    h.services.get('ns-a')!.release({ items: [svc('ns-a', 'redis-a')] })
    h.services.get('ns-b')!.release({ items: [svc('ns-b', 'redis-b')] })
    h.slices.get('ns-a')!.release({ items: [slice('ns-a', 'redis-a', '10.1.0.1')] })
    await h.tick()
    expect(h.built()).toEqual(['a -> 10.1.0.1'])
    h.slices.get('ns-b')!.release({ items: [slice('ns-b', 'redis-b', '10.2.0.1')] })
    await h.tick()
    expect(h.built()).toEqual(['a -> 10.1.0.1', 'b -> 10.2.0.1'])
    await h.source.stop()
  })

  test('the same name in two namespaces: the one whose lists are in serves it until the other (older) one counts', async () => {
    const h = harness(['ns-a', 'ns-b'])
    h.source.start()
    await h.tick()
    const older = { ...svc('ns-b', 'redis-orders'), metadata: { ...svc('ns-b', 'redis-orders').metadata, creationTimestamp: new Date('2025-01-01T00:00:00Z') } }
    h.services.get('ns-b')!.release({ items: [older] })
    h.services.get('ns-a')!.release({ items: [svc('ns-a', 'redis-orders')] })
    h.slices.get('ns-a')!.release({ items: [slice('ns-a', 'redis-orders', '10.1.0.1')] })
    await h.tick()
    // ns-b's Service is not a candidate yet: no conflict, no cluster-IP instance from it.
    expect(h.built()).toEqual(['orders -> 10.1.0.1'])
    h.slices.get('ns-b')!.release({ items: [slice('ns-b', 'redis-orders', '10.2.0.1')] })
    await h.tick()
    expect(h.built()).toEqual(['orders -> 10.1.0.1', 'orders -> 10.2.0.1'])
    await h.source.stop()
  })

  test('EndpointSlices refused (403): the namespace is built from its Services alone (cluster IP), not held back', async () => {
    const h = harness(['redis-system'])
    h.source.start()
    await h.tick()
    h.services.get('redis-system')!.release({ items: [svc('redis-system', 'redis-a')] })
    await h.tick()
    expect(h.built()).toEqual([])
    h.slices.get('redis-system')!.release({ status: 403 })
    await h.tick()
    expect(h.built()).toEqual(['a -> redis-a.redis-system.svc'])
    expect(h.source.synced).toBe(true)
    await h.source.stop()
  })

  test('a failing (not refused) EndpointSlices list holds the namespace back until it succeeds', async () => {
    const h = harness(['redis-system'])
    h.source.start()
    await h.tick()
    h.services.get('redis-system')!.release({ items: [svc('redis-system', 'redis-a')] })
    h.slices.get('redis-system')!.release({ status: 500 })
    await h.tick()
    expect(h.built()).toEqual([])
    expect(h.source.synced).toBe(false)
    // The retry after the backoff sleep.
    h.sleeps.shift()!.end()
    await h.tick()
    h.slices.get('redis-system')!.release({ items: [slice('redis-system', 'redis-a', '10.1.0.1')] })
    await h.tick()
    expect(h.built()).toEqual(['a -> 10.1.0.1'])
    await h.source.stop()
  })
})

describe('start-up: a first list of many Services is built a chunk per turn', () => {
  test.each([
    ['together', false],
    // The Services alone first: every name waits for the slices, which costs no build and must not size the chunks.
    ['Services first', true],
  ])('each chunk is one routing-table change sized by the last one\'s time; synced once the last is in; each instance once (lists %s)', async (_, servicesFirst) => {
    let clock = 0
    // Applying costs 0.5 ms of the source's clock per instance: after the first chunk (unsized),
    // each takes RECONCILE_SLICE_MS / 0.5 names.
    const h = harness(['redis-system'], { now: () => clock, onApply: (u) => (clock += instanceUpdates(u).length / 2) })
    const n = 200
    h.source.start()
    await h.tick()
    h.services.get('redis-system')!.release({ items: Array.from({ length: n }, (_, i) => svc('redis-system', `redis-i${i}`)) })
    if (servicesFirst) {
      await h.tick()
      expect(h.updates).toEqual([])
    }
    h.slices.get('redis-system')!.release({ items: Array.from({ length: n }, (_, i) => slice('redis-system', `redis-i${i}`, `10.1.${i >> 8}.${i & 255}`)) })
    // Turn by turn: how many instances are built, and whether the source says it is synced.
    const turns: { built: number; synced: boolean }[] = []
    for (let i = 0; i < 40 && !h.source.synced; i++) {
      await new Promise((r) => setImmediate(r))
      turns.push({ built: h.built().length, synced: h.source.synced })
    }
    expect(h.updates.every((u) => u.type === 'batch')).toBe(true)
    const sizes = h.updates.map((u) => instanceUpdates(u).length)
    const rest = n - RECONCILE_CHUNK.first
    const size = RECONCILE_SLICE_MS * 2
    expect(sizes).toEqual([RECONCILE_CHUNK.first, ...Array.from({ length: Math.ceil(rest / size) }, (_, i) => Math.min(size, rest - i * size))])
    expect(new Set(h.built()).size).toBe(n)
    expect(h.built()).toHaveLength(n)
    // Never synced with part of the lists' instances built; synced right after the last chunk.
    for (const t of turns) expect(t.synced).toBe(t.built === n)
    expect(turns.at(-1)).toEqual({ built: n, synced: true })
    // Other work gets turns in between: the chunks came in separate turns.
    expect(turns.filter((t) => t.built > 0 && t.built < n).length).toBeGreaterThanOrEqual(sizes.length - 1)
    await h.source.stop()
  })
})

describe('start-up: chunk sizes are bounded', () => {
  test('however cheap the last chunk was, a chunk at most doubles and never takes more than 64 names', async () => {
    // Builds that take no time on the source's clock: only the growth limit and the cap size the chunks.
    const h = harness(['redis-system'], { now: () => 0 })
    const n = 1_000
    h.source.start()
    await h.tick()
    h.services.get('redis-system')!.release({ items: Array.from({ length: n }, (_, i) => svc('redis-system', `redis-i${i}`)) })
    h.slices.get('redis-system')!.release({ items: Array.from({ length: n }, (_, i) => slice('redis-system', `redis-i${i}`, `10.1.${i >> 8}.${i & 255}`)) })
    for (let i = 0; i < 40 && !h.source.synced; i++) await new Promise((r) => setImmediate(r))
    // 1,000 names: 32 + 15 x 64 + 8.
    expect(h.updates.map((u) => instanceUpdates(u).length)).toEqual([32, ...Array<number>(15).fill(64), 8])
    expect(h.source.synced).toBe(true)
    await h.source.stop()
  })
})

describe('recovery: the source wakes every list and watch when the API server is back', () => {
  test('started while the API server is down: every list retries as soon as /readyz answers', async () => {
    const h = harness(['ns-a', 'ns-b'])
    h.readyz.answer = 'refused'
    h.source.start()
    await h.tick()
    const gates = [...h.services.values(), ...h.slices.values()]
    // Each list is refused again and again: its backoff grows (250 ms doubling, random 0.5).
    for (let round = 0; round < 6; round++) {
      for (const g of gates) g.release('refused')
      await h.tick()
      for (const s of h.sleeps.splice(0)) s.end()
      await h.tick()
    }
    for (const g of gates) g.release('refused')
    await h.tick()
    expect(h.source.apiState).toBe('down')
    expect(gates.every((g) => g.pending === 0)).toBe(true)
    // Up again: the probe is the only sleep that ends; the lists' own sleeps (up to 15 s) do not.
    h.readyz.answer = 200
    const probesBefore = h.readyz.calls
    for (let i = 0; i < 3 && h.readyz.calls === probesBefore; i++) {
      h.sleeps.find((s) => s.ms < 2_000)?.end()
      await h.tick()
    }
    expect(h.readyz.calls).toBeGreaterThan(probesBefore)
    expect(gates.map((g) => g.pending)).toEqual([1, 1, 1, 1])
    for (const [ns, g] of h.services) g.release({ items: [svc(ns, `redis-${ns}`)] })
    for (const [ns, g] of h.slices) g.release({ items: [slice(ns, `redis-${ns}`, ns === 'ns-a' ? '10.1.0.1' : '10.2.0.1')] })
    await h.tick()
    expect(h.source.apiState).toBe('up')
    expect(h.source.synced).toBe(true)
    expect(h.built().sort()).toEqual(['ns-a -> 10.1.0.1', 'ns-b -> 10.2.0.1'])
    await h.source.stop()
  })
})

describe('the default /readyz probe (client-node kubeconfig)', () => {
  test('GET <server>/readyz with the kubeconfig credentials; the status whatever it is; rejects when nothing answers', async () => {
    const seen: { url: string; auth: string | undefined }[] = []
    let status = 500
    const server = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', auth: req.headers.authorization })
      res.writeHead(status).end('[-]etcd failed')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const { port } = server.address() as AddressInfo
    // A path prefix, as behind a proxy: /readyz goes under it, as client-node's own URLs do.
    const api = clientNodeApi(kubeConfigFor(`http://127.0.0.1:${port}/prefix/`), '')
    try {
      expect(await api.readyz(AbortSignal.timeout(5_000))).toBe(500)
      status = 200
      expect(await api.readyz(AbortSignal.timeout(5_000))).toBe(200)
      expect(seen).toEqual([
        { url: '/prefix/readyz', auth: 'Bearer t' },
        { url: '/prefix/readyz', auth: 'Bearer t' },
      ])
    } finally {
      await new Promise<void>((r) => server.close(() => r()))
    }
    await expect(api.readyz(AbortSignal.timeout(5_000))).rejects.toThrow(/ECONNREFUSED/)
  })
})
