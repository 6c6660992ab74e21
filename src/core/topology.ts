// Topology: what discovery (static file or Kubernetes) tells the routing table.
// Discovery sources only produce these plain values; they never see HTTP or routing state.

export type Maintenance = 'off' | 'drain' | 'read-only'
export type ReadPolicy = 'primary' | 'prefer-replica' | 'replica' | 'any'
/** How an instance's endpoints are served: `auto` detects Redis Cluster (`cluster_enabled:1`). */
export type ServingMode = 'auto' | 'cluster' | 'standalone'
export type Strategy = 'least-request' | 'round-robin' | 'random' | 'weighted' | 'maglev'
export const GROUP_STRATEGIES = ['weighted', 'sticky', 'round-robin', 'least-request'] as const
export type GroupStrategy = (typeof GROUP_STRATEGIES)[number]

/** What a request's URL names: one instance, or a group of instances that one is picked from. */
export type TargetKind = 'instance' | 'group'

/** Routing policy of one instance, parsed from its `redis-gateway.io/*` annotations. */
export interface InstancePolicy {
  readonly maintenance: Maintenance
  /** Weight inside groups, 0..10000; 0 = no new group traffic. */
  readonly weight: number
  readonly groups: readonly string[]
  readonly readPolicy: ReadPolicy
  /** Replicas further behind the primary than this many bytes of replication offset are not used. */
  readonly maxReplicaLagBytes: number
  readonly strategy: Strategy
  /** Hedge reads still unanswered after this many ms; null = off. */
  readonly hedgeAfterMs: number | null
  /** Port name or number to pick on EndpointSlices; null = the port named `redis`, else the first. */
  readonly port: string | number | null
  /** `auto`: served as a Redis Cluster when an endpoint reports cluster_enabled:1; `cluster`/`standalone` pin it. */
  readonly mode: ServingMode
}

/** A bad annotation: reported (log, metric, admin view); the default is used for that key. */
export interface AnnotationError {
  readonly key: string
  readonly value: string
  readonly message: string
}

export interface EndpointSpec {
  /** Stable identity, `host:port` (IPv6 hosts in brackets). */
  readonly id: string
  readonly host: string
  readonly port: number
  /** Discovered ready (EndpointSlice `ready`; static endpoints are always ready). */
  readonly ready: boolean
  /** Zone the endpoint runs in (EndpointSlice `zone`). */
  readonly zone?: string
  /** Zones this endpoint should serve (EndpointSlice `hints.forZones`), sorted; absent = no hint. */
  readonly forZones?: readonly string[]
  /** The EndpointSlice says the endpoint is terminating (absent = not terminating). */
  readonly terminating?: boolean
}

export interface InstanceSpec {
  readonly name: string
  /** Where it came from, e.g. `static` or `kubernetes:redis-system/redis-orders`. */
  readonly source: string
  readonly endpoints: readonly EndpointSpec[]
  readonly policy: InstancePolicy
  readonly annotationErrors: readonly AnnotationError[]
}

/** One instance's whole current state, or its removal. */
export type InstanceUpdate = { readonly type: 'upsert'; readonly instance: InstanceSpec } | { readonly type: 'remove'; readonly name: string }

/** Level-based updates: each carries the whole current state of what it names. */
export type TopologyUpdate =
  /**
   * The whole current state of one source (`source` given: only instances whose spec.source is
   * that source are replaced) or of everything (no `source`).
   */
  | { readonly type: 'reset'; readonly instances: readonly InstanceSpec[]; readonly source?: string }
  | InstanceUpdate
  /** Several instances' updates applied as one change (one snapshot), in order. */
  | { readonly type: 'batch'; readonly updates: readonly InstanceUpdate[] }

/** The instance updates an upsert, a remove or a batch carries (none for a reset). */
export function instanceUpdates(u: TopologyUpdate): readonly InstanceUpdate[] {
  return u.type === 'batch' ? u.updates : u.type === 'reset' ? [] : [u]
}

/** Instance and group names: DNS labels, so a name from a URL can never be a path or host. */
export const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

export function endpointId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
