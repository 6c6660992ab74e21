// Kubernetes discovery: Services and EndpointSlices in the watched namespaces (or, with ["*"], in
// every namespace, through one cluster-wide list and watch per resource), narrowed by the API server
// to the configured label selector (labelSelector, optIn), mapped to instances and fed to the
// routing table. Watch events only mark an instance name dirty; a reconcile pass
// (batched per tick) rebuilds each dirty instance from the caches (level-based, as
// controller-runtime does), so order and duplication of events do not matter. A pass over many
// names (a first list of thousands of Services) runs a chunk per turn of the event loop (a job of
// the background queue, `background`), each chunk one routing-table change sized to take about
// RECONCILE_SLICE_MS with what follows it (the pool, metrics and logs), so requests and health
// checks are served between chunks; the source counts as synced only once the pass after its first
// lists is done.
// A namespace's Services count only once both of its lists (Services and EndpointSlices) are in,
// or refused for good (403/404): otherwise a Services list that arrives first would build every
// instance at its cluster IP, to rebuild it at its pods a moment later.
// After an API server outage one shared ApiRecovery (recovery.ts) probes /readyz and wakes every
// list and watch from its backoff as soon as the API server answers again.
// Several Services may map to one instance name (redis-orders in two namespaces): the oldest one
// (creationTimestamp, then namespace/name) provides it, the others are reported as conflicts. The
// choice depends only on what the API server holds, never on the order events arrived in, so every
// gateway replica, and every restart, picks the same Service. With `operators` on, the Services of
// known Redis charts and operators are grouped by release (operators.ts), whatever their names, and
// each release claims one name too; a Service named with the prefix wins over a release.
// Construction does no I/O; start() begins listing and watching; stop() ends it.

import http from 'node:http'
import https from 'node:https'
import { performance } from 'node:perf_hooks'
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  Watch,
  type V1EndpointSlice,
  type V1Service,
} from '@kubernetes/client-node'
import { discoverySelector } from '../../config/label-selector.js'
import { ALL_NAMESPACES } from '../../config/schema.js'
import { SlicedQueue } from '../../core/sliced.js'
import type { InstanceSpec, InstanceUpdate, TopologyUpdate } from '../../core/topology.js'
import { LIST_WATCH_DEFAULTS, ListWatch, type ListResult, type ListWatchEvent, type WatchFn } from './list-watch.js'
import { instanceNameOf, mapService, SERVICE_NAME_LABEL } from './mapping.js'
import { mapOperatorGroup, OperatorIndex } from './operators.js'
import { ApiRecovery, type ApiRecoveryOptions } from './recovery.js'

/**
 * The API calls the source makes; by default @kubernetes/client-node on the kubeconfig. Tests
 * inject their own. `namespace` null: cluster-wide.
 */
export interface KubernetesApi {
  listServices(namespace: string | null): Promise<ListResult<V1Service>>
  listSlices(namespace: string | null): Promise<ListResult<V1EndpointSlice>>
  watchServices(namespace: string | null): WatchFn<V1Service>
  watchSlices(namespace: string | null): WatchFn<V1EndpointSlice>
  /** GET /readyz: the HTTP status; rejects when there is no answer. */
  readyz(signal: AbortSignal): Promise<number>
}

/** Backoff and probe timing, and their randomness and sleep, for tests (defaults: list-watch.ts, recovery.ts). */
export interface KubernetesSourceTiming {
  readonly backoffBaseMs?: number
  readonly backoffMaxMs?: number
  readonly probeBaseMs?: number
  readonly probeMaxMs?: number
  readonly random?: () => number
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  /** The clock that sizes reconcile chunks (performance.now). */
  readonly now?: () => number
}

/**
 * About how long one reconcile chunk takes, routing-table change included: about one slice of the
 * gateway's background queue (gateway.ts), whose jobs the chunks are, shared with its other
 * start-up work.
 */
export const RECONCILE_SLICE_MS = 5
/**
 * Names in the first chunk of a pass, before a chunk has been timed; and the bounds of the others.
 * The cost per build varies 4-6x from chunk to chunk at start-up (the garbage collector's
 * incremental marking runs in the allocations of whichever chunk is current): chunks of 472-483
 * sized from a fast one took 57-67 ms. 64 bounds one at ~10 ms outside of a collection's pause;
 * with 128 and ~10 ms, 3 start-ups of 7 had a turn over 100 ms, with 64 and ~5 ms none of 5
 * (bench/README.md, "Discovery at scale").
 */
export const RECONCILE_CHUNK = { first: 32, min: 8, max: 64 } as const

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig
  /** Namespace names, or `["*"]` (ALL_NAMESPACES alone) for every namespace. */
  readonly namespaces: readonly string[]
  readonly servicePrefix: string
  /**
   * `discovery.kubernetes.labelSelector` (default ""): applied by the API server to every list and
   * watch of Services AND EndpointSlices (the EndpointSlice controller copies a Service's labels
   * onto its slices), so what is not selected is neither cached nor an instance.
   */
  readonly labelSelector?: string
  /** `discovery.kubernetes.optIn`: also require `redis-gateway.io/expose=true` (ANDed into the selector). */
  readonly optIn?: boolean
  /**
   * `discovery.kubernetes.operators` (default true): also recognise the Services of known Redis
   * charts and operators by their labels, one instance per release (operators.ts).
   */
  readonly operators?: boolean
  /** Receives every instance change (upsert/remove), already reconciled. */
  readonly apply: (u: TopologyUpdate) => void
  /** Watch lifecycle events, for logs and metrics. */
  readonly onEvent?: (e: KubernetesSourceEvent) => void
  /** Tests: the API calls (default: client-node on kubeConfig). */
  readonly api?: KubernetesApi
  /** Objects per page of a list (LIST_PAGE_SIZE; tests use smaller pages). */
  readonly listPageSize?: number
  /** Tests: backoff and probe timing. */
  readonly timing?: KubernetesSourceTiming
  /** API server reachability changes (recovery.ts), for tests and logs. */
  readonly onApiState?: ApiRecoveryOptions['onState']
  /**
   * Where the reconcile chunks and the reports of the lists' changes run, a slice per turn (the
   * gateway's background queue, shared with its other start-up work; default one of its own).
   */
  readonly background?: SlicedQueue
}

export type KubernetesSourceEvent =
  | (ListWatchEvent & { readonly resource: string })
  | { readonly kind: 'reconciled'; readonly resource: string; readonly instances: number }
  | { readonly kind: 'conflict'; readonly resource: string; readonly instance: string; readonly error: string }

/** Builds a KubeConfig: a kubeconfig file when given, else the in-cluster service account. */
export function loadKubeConfig(kubeconfigPath: string | null): KubeConfig {
  const kc = new KubeConfig()
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath)
  else kc.loadFromCluster()
  return kc
}

/** `{ labelSelector }` for list and watch requests; nothing for "" (everything). */
export function selectorParams(selector: string): { labelSelector?: string } {
  return selector === '' ? {} : { labelSelector: selector }
}

function watchFn<T>(kc: KubeConfig, path: string, selector: string): WatchFn<T> {
  const w = new Watch(kc)
  return async (resourceVersion, onEvent, done) => {
    const controller = await w.watch(
      path,
      {
        resourceVersion: resourceVersion || undefined,
        allowWatchBookmarks: true,
        // Renewed by the server well before client-node's 30 s inactivity timeout.
        timeoutSeconds: LIST_WATCH_DEFAULTS.watchTimeoutS,
        ...selectorParams(selector),
      },
      onEvent,
      done,
    )
    return { abort: () => controller.abort() }
  }
}

/** GET <server>/readyz with the kubeconfig's credentials and TLS settings; resolves to the status. */
async function readyz(kc: KubeConfig, signal: AbortSignal): Promise<number> {
  const cluster = kc.getCurrentCluster()
  if (!cluster) throw new Error('no current cluster in the kubeconfig')
  const opts: https.RequestOptions = { method: 'GET', headers: { accept: 'text/plain' } }
  await kc.applyToHTTPSOptions(opts)
  // As client-node builds its URLs: the server may carry a path prefix (a proxy's).
  const url = new URL(`${cluster.server.replace(/\/+$/, '')}/readyz`)
  const agent = opts.agent as http.Agent | undefined
  try {
    return await new Promise<number>((resolve, reject) => {
      const req = (url.protocol === 'http:' ? http : https).request(url, { ...opts, signal }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
  } finally {
    agent?.destroy()
  }
}

/**
 * Objects per page of a list. A list of 5,000 Services in one answer was read (parsed and
 * deserialized by client-node) in one turn of ~200-400 ms; pages of 500 are ~20-40 ms each, in
 * turns of their own.
 */
export const LIST_PAGE_SIZE = 500

interface Page<T> {
  readonly items: T[]
  readonly metadata?: { readonly resourceVersion?: string; readonly _continue?: string } | undefined
}

/**
 * A whole list, asked for in pages (`limit` and `continue`): the API server serves every page from
 * the first one's snapshot, and the list's resourceVersion is that snapshot's. A continue token
 * that expired (410) fails the list like any error: it is listed again from the start.
 */
async function listInPages<T>(page: (limit: number, cont: string | undefined) => Promise<Page<T>>, limit: number): Promise<ListResult<T>> {
  const items: T[] = []
  let cont: string | undefined
  for (;;) {
    const p = await page(limit, cont)
    for (const item of p.items) items.push(item)
    cont = p.metadata?._continue || undefined
    if (cont === undefined) return { items, metadata: { resourceVersion: p.metadata?.resourceVersion } }
  }
}

/** The client-node API calls for one kubeconfig and label selector. */
export function clientNodeApi(kc: KubeConfig, labelSelector: string, pageSize = LIST_PAGE_SIZE): KubernetesApi {
  const sel = selectorParams(labelSelector)
  const core = kc.makeApiClient(CoreV1Api)
  const discovery = kc.makeApiClient(DiscoveryV1Api)
  return {
    listServices: (namespace) =>
      listInPages(
        (limit, _continue) =>
          namespace === null ? core.listServiceForAllNamespaces({ ...sel, limit, _continue }) : core.listNamespacedService({ namespace, ...sel, limit, _continue }),
        pageSize,
      ),
    listSlices: (namespace) =>
      listInPages(
        (limit, _continue) =>
          namespace === null
            ? discovery.listEndpointSliceForAllNamespaces({ ...sel, limit, _continue })
            : discovery.listNamespacedEndpointSlice({ namespace, ...sel, limit, _continue }),
        pageSize,
      ),
    watchServices: (namespace) => watchFn(kc, namespace === null ? '/api/v1/services' : `/api/v1/namespaces/${namespace}/services`, labelSelector),
    watchSlices: (namespace) =>
      watchFn(
        kc,
        namespace === null ? '/apis/discovery.k8s.io/v1/endpointslices' : `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`,
        labelSelector,
      ),
    readyz: (signal) => readyz(kc, signal),
  }
}

/** The two lists and watches of one namespace (or, cluster-wide, of all of them). */
interface Scope {
  readonly services: ListWatch<V1Service>
  readonly slices: ListWatch<V1EndpointSlice>
  /** Both listed, or refused for good, at least once: its Services count from then on. */
  ready: boolean
}

/** Listed, or refused for good (403: may not read; 404: no such namespace). */
function listedOrRefused(w: ListWatch<V1Service> | ListWatch<V1EndpointSlice>): boolean {
  return w.synced || w.lastErrorStatus === 403 || w.lastErrorStatus === 404
}

/** Milliseconds since the epoch of a Service's creation; lists give a Date, watch events a string. */
function createdMs(svc: V1Service): number {
  const t: unknown = svc.metadata?.creationTimestamp
  const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : Number.NaN
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY
}

/**
 * Whether Service `a` rather than `b` provides an instance name both map to: the older one
 * (creationTimestamp), on a tie (1 s resolution) the smaller key, i.e. the namespace first in
 * alphabetical order. A Service without a readable timestamp comes after those with one.
 */
export function precedes(a: { key: string; svc: V1Service }, b: { key: string; svc: V1Service }): boolean {
  const ta = createdMs(a.svc)
  const tb = createdMs(b.svc)
  return ta !== tb ? ta < tb : a.key < b.key
}

export class KubernetesSource {
  private readonly services: ListWatch<V1Service>[] = []
  private readonly slices: ListWatch<V1EndpointSlice>[] = []
  /** Per namespace, or one under null when cluster-wide. */
  private readonly scopes = new Map<string | null, Scope>()
  /** Instance names that left out a Service of a scope not ready yet: reconciled again when one gets ready. */
  private readonly waiting = new Set<string>()
  private readonly recovery: ApiRecovery
  /** Instance names to rebuild in the next reconcile pass. */
  private readonly dirty = new Set<string>()
  /** Service keys ("namespace/name") in the caches, per instance name they map to. */
  private readonly candidates = new Map<string, Set<string>>()
  /** Which Service key currently provides each instance name. */
  private readonly owner = new Map<string, string>()
  /** Per instance name, the Services ignored for it -> the key they were reported against. */
  private readonly conflicts = new Map<string, Map<string, string>>()
  /** EndpointSlice keys per Service key. */
  private readonly slicesOf = new Map<string, Set<string>>()
  private scheduled = false
  private started = false
  /** The pass after the first lists is done: synced from then on. */
  private built = false
  /** Names the next chunk takes: sized from the last chunk's time per update. */
  private chunk: number = RECONCILE_CHUNK.first
  private readonly now: () => number
  private readonly background: SlicedQueue
  /** Releases of known charts and operators (null: `operators: false`). */
  private readonly operators: OperatorIndex | null
  /** The selector sent with every list and watch ("" = everything), for logs. */
  readonly labelSelector: string

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.operators = opts.operators === false ? null : new OperatorIndex()
    this.now = opts.timing?.now ?? (() => performance.now())
    const all = opts.namespaces.includes(ALL_NAMESPACES)
    if (all && opts.namespaces.some((ns) => ns !== ALL_NAMESPACES)) {
      throw new Error(`namespaces: "${ALL_NAMESPACES}" (every namespace) must be the only element, got ${JSON.stringify(opts.namespaces)}`)
    }
    // Throws for a malformed selector (config load has already refused it with its position).
    this.labelSelector = discoverySelector(opts.labelSelector ?? '', opts.optIn ?? false)
    const api = opts.api ?? clientNodeApi(opts.kubeConfig, this.labelSelector, opts.listPageSize)
    const t = opts.timing ?? {}
    const jitter = { ...(t.random ? { random: t.random } : {}), ...(t.sleep ? { sleep: t.sleep } : {}) }
    this.recovery = new ApiRecovery({
      probe: (signal) => api.readyz(signal),
      ...jitter,
      ...(t.probeBaseMs !== undefined ? { probeBaseMs: t.probeBaseMs } : {}),
      ...(t.probeMaxMs !== undefined ? { probeMaxMs: t.probeMaxMs } : {}),
      ...(opts.onApiState ? { onState: opts.onApiState } : {}),
    })
    this.background = opts.background ?? new SlicedQueue({ sliceMs: 0 })
    // What every list and watch of the source shares: its background queue, backoff and recovery.
    const common = {
      background: this.background,
      ...jitter,
      ...(t.backoffBaseMs !== undefined ? { backoffBaseMs: t.backoffBaseMs } : {}),
      ...(t.backoffMaxMs !== undefined ? { backoffMaxMs: t.backoffMaxMs } : {}),
      recovery: this.recovery,
    }
    // null: cluster-wide (one list and watch per resource, across every namespace).
    const namespaces: (string | null)[] = all ? [null] : [...opts.namespaces]
    for (const namespace of namespaces) {
      const svcResource = `services/${namespace ?? ALL_NAMESPACES}`
      const sliceResource = `endpointslices/${namespace ?? ALL_NAMESPACES}`
      const scope: Scope = {
        services: new ListWatch<V1Service>({
          name: svcResource,
          list: () => api.listServices(namespace),
          watch: api.watchServices(namespace),
          onChange: (key, obj) => this.serviceChanged(key, obj),
          onEvent: (e) => {
            this.scopeEvent(scope)
            opts.onEvent?.({ ...e, resource: svcResource })
          },
          ...common,
        }),
        slices: new ListWatch<V1EndpointSlice>({
          name: sliceResource,
          list: () => api.listSlices(namespace),
          watch: api.watchSlices(namespace),
          onChange: (key, obj, old) => this.sliceChanged(key, obj, old),
          onEvent: (e) => {
            this.scopeEvent(scope)
            opts.onEvent?.({ ...e, resource: sliceResource })
          },
          ...common,
        }),
        ready: false,
      }
      this.scopes.set(namespace, scope)
      this.services.push(scope.services)
      this.slices.push(scope.slices)
    }
  }

  /** After each list or watch event of a scope: once both its lists are in (or refused), its Services count. */
  private scopeEvent(scope: Scope): void {
    if (scope.ready || !listedOrRefused(scope.services) || !listedOrRefused(scope.slices)) return
    scope.ready = true
    for (const name of this.waiting) this.markName(name)
    this.waiting.clear()
  }

  /** Whether a Service (key "namespace/name") counts yet: its scope has both lists in. */
  private counts(serviceKey: string): boolean {
    const scope = this.scopes.get(null) ?? this.scopes.get(serviceKey.slice(0, serviceKey.indexOf('/')))
    return scope === undefined || scope.ready
  }

  /**
   * Every watched resource has been listed once, or is refused for good (403/404: a namespace the
   * gateway may not read, or that does not exist; with ["*"], a cluster-wide list it may not do).
   * Such a resource is reported in logs and metrics and retried; it must not keep the gateway
   * unready for what it can serve (other namespaces, static instances).
   */
  get synced(): boolean {
    if (this.built) return true
    if (!this.services.every(listedOrRefused) || !this.slices.every(listedOrRefused)) return false
    // And what the lists brought is in the routing table (the reconcile runs in chunks).
    this.built = this.dirty.size === 0 && !this.scheduled
    return this.built
  }

  /** Whether the API server is reachable, as the lists and watches last saw it (recovery.ts). */
  get apiState(): ApiRecovery['state'] {
    return this.recovery.state
  }

  /** Oldest last-sync time over all watches (ms since epoch), 0 before the first sync. */
  get lastSyncMs(): number {
    let min = Number.POSITIVE_INFINITY
    for (const w of [...this.services, ...this.slices]) min = Math.min(min, w.lastSyncMs)
    return Number.isFinite(min) ? min : 0
  }

  start(): void {
    if (this.started) return
    this.started = true
    this.recovery.start()
    for (const w of [...this.services, ...this.slices]) w.start()
  }

  async stop(): Promise<void> {
    this.started = false
    await Promise.all([this.recovery.stop(), ...[...this.services, ...this.slices].map((w) => w.stop())])
  }

  private sliceChanged(key: string, obj: V1EndpointSlice | null, old: V1EndpointSlice | null): void {
    // A slice can move between Services only by relabelling; both are rebuilt.
    const before = this.serviceKeyOfSlice(old)
    const after = this.serviceKeyOfSlice(obj)
    if (before !== null && before !== after) {
      const set = this.slicesOf.get(before)
      set?.delete(key)
      if (set?.size === 0) this.slicesOf.delete(before)
    }
    if (after !== null) {
      let set = this.slicesOf.get(after)
      if (!set) this.slicesOf.set(after, (set = new Set()))
      set.add(key)
    }
    if (before !== null) this.markDirty(before)
    if (after !== null && after !== before) this.markDirty(after)
  }

  /** The key of the Redis Service a slice belongs to; null for other slices (cluster-wide, most of them). */
  private serviceKeyOfSlice(slice: V1EndpointSlice | null): string | null {
    const svc = slice?.metadata?.labels?.[SERVICE_NAME_LABEL]
    if (!svc) return null
    const key = `${slice?.metadata?.namespace ?? ''}/${svc}`
    // With operators on, every labelled slice is tracked: its Service's labels (which make it an
    // operator Service or not) may arrive after it.
    return this.operators !== null || this.nameOfKey(key) !== null ? key : null
  }

  /** The instance name a Service key maps to, or null when the Service is not a Redis instance. */
  private nameOfKey(serviceKey: string): string | null {
    // A chart's or operator's Service counts for its release only (redis-master of release "redis" is not instance "master").
    if (this.operators?.isMember(serviceKey)) return this.operators.nameOfService(serviceKey)
    return instanceNameOf(serviceKey.slice(serviceKey.indexOf('/') + 1), this.opts.servicePrefix)
  }

  private serviceChanged(key: string, obj: V1Service | null): void {
    for (const n of this.operators?.serviceChanged(key, obj) ?? []) this.markName(n)
    const name = instanceNameOf(key.slice(key.indexOf('/') + 1), this.opts.servicePrefix)
    if (name === null) return
    let set = this.candidates.get(name)
    if (obj !== null && !this.operators?.isMember(key)) {
      if (!set) this.candidates.set(name, (set = new Set()))
      set.add(key)
    } else if (set) {
      set.delete(key)
      if (set.size === 0) this.candidates.delete(name)
    }
    this.markName(name)
  }

  private markDirty(serviceKey: string): void {
    // Services that are not Redis instances (most of them, cluster-wide) cost nothing more.
    const name = this.nameOfKey(serviceKey)
    if (name !== null) this.markName(name)
  }

  private markName(name: string): void {
    this.dirty.add(name)
    this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    // Batch every event of this tick into one reconcile pass.
    this.background.post(() => {
      this.scheduled = false
      this.reconcile()
    })
  }

  /**
   * Rebuilds dirty instances from the caches, one chunk of them as one routing-table change; the
   * rest in the next turn.
   */
  private reconcile(): void {
    const names: string[] = []
    for (const name of this.dirty) {
      names.push(name)
      if (names.length === this.chunk) break
    }
    if (names.length === 0) return
    for (const name of names) this.dirty.delete(name)
    const started = this.now()
    const updates: InstanceUpdate[] = []
    const events: KubernetesSourceEvent[] = []
    for (const name of names) this.reconcileOne(name, updates, events)
    if (updates.length > 0) this.opts.apply({ type: 'batch', updates })
    for (const e of events) this.opts.onEvent?.(e)
    // Sized by the time per update (a name that only waits for its namespace's lists costs
    // nothing and says nothing about the cost of a build), growing at most twofold per chunk.
    if (updates.length > 0) {
      const perUpdate = Math.max((this.now() - started) / updates.length, 1e-3)
      this.chunk = Math.round(Math.min(RECONCILE_CHUNK.max, 2 * this.chunk, Math.max(RECONCILE_CHUNK.min, RECONCILE_SLICE_MS / perUpdate)))
    }
    if (this.dirty.size > 0) this.schedule()
  }

  private serviceFromCache(key: string): V1Service | null {
    for (const w of this.services) {
      const s = w.cache.get(key)
      if (s) return s
    }
    return null
  }

  /** One instance's update (if any) goes to `updates`, and what to report about it to `events`. */
  private reconcileOne(name: string, updates: InstanceUpdate[], events: KubernetesSourceEvent[]): void {
    let winner: { key: string; svc: V1Service } | null = null
    const keys: string[] = []
    let waits = false
    for (const key of this.candidates.get(name) ?? []) {
      if (!this.counts(key)) {
        waits = true
        continue
      }
      keys.push(key)
      const svc = this.serviceFromCache(key)
      if (svc && (winner === null || precedes({ key, svc }, winner))) winner = { key, svc }
    }
    let spec: InstanceSpec | null = winner === null ? null : mapService(winner.svc, this.slicesOfService(winner.key), { servicePrefix: this.opts.servicePrefix })
    // Releases of charts and operators claiming the name (operators.ts): an explicit Service of the
    // name wins over them; among them the oldest (its oldest Service), then the group key, wins.
    const explicit = winner !== null
    for (const group of this.operators?.groupsNamed(name) ?? []) {
      const members = this.operators?.membersOf(group) ?? []
      if (!members.every((m) => this.counts(m.key))) {
        waits = true
        continue
      }
      keys.push(group)
      if (explicit) continue
      let oldest: V1Service | null = null
      for (const m of members) if (oldest === null || precedes({ key: group, svc: m.svc }, { key: group, svc: oldest })) oldest = m.svc
      if (oldest === null || (winner !== null && !precedes({ key: group, svc: oldest }, winner))) continue
      winner = { key: group, svc: oldest }
      spec = mapOperatorGroup(members.map((m) => ({ ...m, slices: this.slicesOfService(m.key) })))
    }
    if (waits) this.waiting.add(name)
    if (winner === null || spec === null) {
      this.conflicts.delete(name)
      if (this.owner.delete(name)) updates.push({ type: 'remove', name })
      return
    }
    this.owner.set(name, winner.key)
    updates.push({ type: 'upsert', instance: spec })
    events.push({ kind: 'reconciled', resource: winner.key, instances: this.owner.size })
    // Each ignored Service is reported once per winner (again when the winner changes), not on
    // every event of the instance.
    const before = this.conflicts.get(name)
    const now = new Map<string, string>()
    for (const key of keys.sort()) {
      if (key === winner.key) continue
      now.set(key, winner.key)
      if (before?.get(key) === winner.key) continue
      events.push({
        kind: 'conflict',
        resource: key,
        instance: name,
        error:
          `instance '${name}' is already provided by ${explicit ? 'Service' : 'release'} ${winner.key}; ${key} is ignored ` +
          '(a Service named with the prefix wins over a chart\'s or operator\'s release; otherwise the oldest provides it, ' +
          'ties go to the namespace first in alphabetical order)',
      })
    }
    if (now.size > 0) this.conflicts.set(name, now)
    else this.conflicts.delete(name)
  }

  private slicesOfService(serviceKey: string): V1EndpointSlice[] {
    const slices: V1EndpointSlice[] = []
    for (const sliceKey of this.slicesOf.get(serviceKey) ?? []) {
      for (const w of this.slices) {
        const s = w.cache.get(sliceKey)
        if (s) slices.push(s)
      }
    }
    return slices
  }
}
