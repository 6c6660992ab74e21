// Kubernetes discovery: Services and EndpointSlices in the watched namespaces, mapped to
// instances and fed to the routing table. Watch events only mark a Service dirty; a reconcile
// pass (batched per tick) rebuilds each dirty instance from the caches (level-based, as
// controller-runtime does), so order and duplication of events do not matter.
// Construction does no I/O; start() begins listing and watching; stop() ends it.

import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  Watch,
  type V1EndpointSlice,
  type V1Service,
} from '@kubernetes/client-node'
import type { InstanceSpec, TopologyUpdate } from '../topology.js'
import { LIST_WATCH_DEFAULTS, ListWatch, type ListWatchEvent, type WatchFn } from './list-watch.js'
import { instanceNameOf, mapService, SERVICE_NAME_LABEL } from './mapping.js'

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig
  readonly namespaces: readonly string[]
  readonly servicePrefix: string
  /** Receives every instance change (upsert/remove), already reconciled. */
  readonly apply: (u: TopologyUpdate) => void
  /** Watch lifecycle events, for logs and metrics. */
  readonly onEvent?: (e: KubernetesSourceEvent) => void
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

function watchFn<T>(kc: KubeConfig, path: string): WatchFn<T> {
  const w = new Watch(kc)
  return async (resourceVersion, onEvent, done) => {
    const controller = await w.watch(
      path,
      {
        resourceVersion: resourceVersion || undefined,
        allowWatchBookmarks: true,
        // Renewed by the server well before client-node's 30 s inactivity timeout.
        timeoutSeconds: LIST_WATCH_DEFAULTS.watchTimeoutS,
      },
      onEvent,
      done,
    )
    return { abort: () => controller.abort() }
  }
}

export class KubernetesSource {
  private readonly services: ListWatch<V1Service>[] = []
  private readonly slices: ListWatch<V1EndpointSlice>[] = []
  private readonly dirty = new Set<string>()
  /** Which Service currently provides each instance name (first come, first served). */
  private readonly owner = new Map<string, string>()
  /** The instance name each Service key currently provides. */
  private readonly provides = new Map<string, string>()
  /** EndpointSlice keys per Service key. */
  private readonly slicesOf = new Map<string, Set<string>>()
  private scheduled = false
  private started = false

  constructor(private readonly opts: KubernetesSourceOptions) {
    const core = opts.kubeConfig.makeApiClient(CoreV1Api)
    const discovery = opts.kubeConfig.makeApiClient(DiscoveryV1Api)
    for (const namespace of opts.namespaces) {
      const svcResource = `services/${namespace}`
      this.services.push(
        new ListWatch<V1Service>({
          name: svcResource,
          list: () => core.listNamespacedService({ namespace }),
          watch: watchFn(opts.kubeConfig, `/api/v1/namespaces/${namespace}/services`),
          onChange: (key) => this.markDirty(key),
          onEvent: (e) => opts.onEvent?.({ ...e, resource: svcResource }),
        }),
      )
      const sliceResource = `endpointslices/${namespace}`
      this.slices.push(
        new ListWatch<V1EndpointSlice>({
          name: sliceResource,
          list: () => discovery.listNamespacedEndpointSlice({ namespace }),
          watch: watchFn(opts.kubeConfig, `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`),
          onChange: (key, obj, old) => this.sliceChanged(key, obj, old),
          onEvent: (e) => opts.onEvent?.({ ...e, resource: sliceResource }),
        }),
      )
    }
  }

  /**
   * Every watched resource has been listed once, or is refused for good (403/404: a namespace the
   * gateway may not read, or that does not exist). Such a namespace is reported in logs and
   * metrics and retried; it must not keep the gateway unready for the namespaces it can serve.
   */
  get synced(): boolean {
    const done = (w: ListWatch<V1Service> | ListWatch<V1EndpointSlice>): boolean =>
      w.synced || w.lastErrorStatus === 403 || w.lastErrorStatus === 404
    return this.services.every(done) && this.slices.every(done)
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
    for (const w of [...this.services, ...this.slices]) w.start()
  }

  async stop(): Promise<void> {
    this.started = false
    await Promise.all([...this.services, ...this.slices].map((w) => w.stop()))
  }

  private sliceChanged(key: string, obj: V1EndpointSlice | null, old: V1EndpointSlice | null): void {
    // A slice can move between Services only by relabelling; mark both.
    for (const s of [old, obj]) {
      const svc = s?.metadata?.labels?.[SERVICE_NAME_LABEL]
      if (!svc) continue
      const svcKey = `${s?.metadata?.namespace ?? ''}/${svc}`
      let set = this.slicesOf.get(svcKey)
      if (s === obj) {
        if (!set) this.slicesOf.set(svcKey, (set = new Set()))
        set.add(key)
      } else if (set && obj?.metadata?.labels?.[SERVICE_NAME_LABEL] !== svc) {
        set.delete(key)
      }
      this.markDirty(svcKey)
    }
    if (obj === null && old !== null) {
      const svc = old.metadata?.labels?.[SERVICE_NAME_LABEL]
      if (svc) this.slicesOf.get(`${old.metadata?.namespace ?? ''}/${svc}`)?.delete(key)
    }
  }

  private markDirty(serviceKey: string): void {
    this.dirty.add(serviceKey)
    if (this.scheduled) return
    this.scheduled = true
    // Batch every event of this tick into one reconcile pass.
    setImmediate(() => {
      this.scheduled = false
      this.reconcile()
    })
  }

  /** Rebuilds each dirty Service's instance from the caches. */
  reconcile(): void {
    const keys = [...this.dirty]
    this.dirty.clear()
    for (const key of keys) this.reconcileOne(key)
  }

  private serviceFromCache(key: string): V1Service | null {
    for (const w of this.services) {
      const s = w.cache.get(key)
      if (s) return s
    }
    return null
  }

  private reconcileOne(key: string): void {
    const svc = this.serviceFromCache(key)
    const name = svc ? instanceNameOf(svc.metadata?.name ?? '', this.opts.servicePrefix) : null
    const previous = this.provides.get(key)
    if (previous !== undefined && previous !== name) this.release(key, previous)
    if (!svc || name === null) return
    const holder = this.owner.get(name)
    if (holder !== undefined && holder !== key) {
      this.opts.onEvent?.({
        kind: 'conflict',
        resource: key,
        instance: name,
        error: `instance '${name}' is already provided by Service ${holder}; ${key} is ignored`,
      })
      return
    }
    const slices: V1EndpointSlice[] = []
    for (const sliceKey of this.slicesOf.get(key) ?? []) {
      for (const w of this.slices) {
        const s = w.cache.get(sliceKey)
        if (s) slices.push(s)
      }
    }
    const spec: InstanceSpec | null = mapService(svc, slices, { servicePrefix: this.opts.servicePrefix })
    if (spec === null) return
    this.owner.set(name, key)
    this.provides.set(key, name)
    this.opts.apply({ type: 'upsert', instance: spec })
    this.opts.onEvent?.({ kind: 'reconciled', resource: key, instances: this.owner.size })
  }

  private release(key: string, name: string): void {
    this.provides.delete(key)
    if (this.owner.get(name) !== key) return
    this.owner.delete(name)
    this.opts.apply({ type: 'remove', name })
    // Another Service may have been waiting for this name.
    for (const w of this.services) {
      for (const [k, s] of w.cache) {
        if (k !== key && instanceNameOf(s.metadata?.name ?? '', this.opts.servicePrefix) === name) this.markDirty(k)
      }
    }
  }
}
