// A small typed event hub. Routing, upstream and discovery code emit facts here;
// telemetry (metrics, logs, tracing) subscribes. Logic never calls telemetry directly.

export interface RequestEndEvent {
  /** Instance that served (or would have served) the request; null when none was resolved. */
  readonly instance: string | null
  readonly group: string | null
  /** 'read' | 'write' | 'pipeline' | 'multi' | 'subscribe' | 'none' */
  readonly class: string
  readonly status: number
  /** Gateway error code or 'OK' / 'REDIS' (Redis error reply). */
  readonly code: string
  readonly durationS: number
  /** When the reply was ready (performance.now() ms); the event itself may be emitted later. */
  readonly endMs: number
  readonly scope: TraceScope | null
}

/**
 * One request's tracing slot, created only when someone listens to `requestBegin`. A subscriber
 * that will use the request's routing events (a sampled trace, debug logs of routing decisions)
 * sets `wanted`; a scope nobody wants is dropped, and the request then builds none of them.
 * Every request-scoped event carries it, or null.
 */
export interface TraceScope {
  wanted: boolean
  /** The tracing subscriber's per-request state (the server span); null when not traced. */
  span: unknown
}

/** A request arrived (emitted only when tracing listens). Times are performance.now() ms. */
export interface RequestBeginEvent {
  readonly scope: TraceScope
  readonly method: string
  /** The route template (`/v1/instances/{name}/pipeline`), never the raw path (it may hold keys). */
  readonly route: string
  readonly traceparent: string | undefined
  readonly tracestate: string | undefined
  readonly startMs: number
  /** The request target as sent (path and query); tracing records only a scrubbed form of it. */
  readonly url?: string
  /** The Host header as sent (tracing's server.address / server.port). */
  readonly host?: string | undefined
}

/** Resolution of the request's target begins; `routeResolve` follows (subscribers time it themselves). */
export interface RouteResolveBeginEvent {
  readonly scope: TraceScope
  readonly kind: 'instance' | 'group'
  readonly name: string
}

/** The request's target was resolved (or could not be): emitted once per request that got that far. */
export interface RouteResolveEvent {
  readonly scope: TraceScope
  readonly instance: string | null
  readonly group: string | null
  /** Error code when resolution failed. */
  readonly error: string | null
}

/** One endpoint selection (the first attempt, a retry or a hedge), successful or not. */
export interface RouteSelectEvent {
  readonly scope: TraceScope
  readonly startMs: number
  readonly endMs: number
  readonly instance: string
  readonly attempt: 'first' | 'retry' | 'hedge'
  /** The instance's balancer strategy. */
  readonly balancer: string
  readonly candidates: number
  readonly endpoint: string | null
  readonly role: string | null
  /** Why this endpoint (or, when none, the error's message). */
  readonly reason: string
  readonly probe: boolean
  /** The sticky (maglev) key; subscribers record a hash of it, never the key itself. */
  readonly stickyKey: string | null
  readonly error: string | null
}

export interface UpstreamEvent {
  readonly instance: string
  readonly endpoint: string
  readonly role: string
  /** 'ok' | 'reply_error' | 'timeout' | 'unavailable' | 'reset' */
  readonly outcome: string
  readonly durationS: number
  /** The request's tracing slot (null when tracing is off or no request is behind it). */
  readonly scope: TraceScope | null
  /** Command name (upper case), or PIPELINE / MULTI for batches; empty when untraced. Never arguments. */
  readonly operation: string
  /** Commands in the round trip (1, or the batch size). */
  readonly commands: number
  readonly host: string
  readonly port: number
  readonly startMs: number
  /** Breaker state change this outcome caused, e.g. 'closed->open'; null when none. */
  readonly breaker: string | null
  /**
   * When traced and Redis answered with an error: its prefix (ERR, WRONGTYPE, LOADING...), or ''
   * when the message has none. Null otherwise (success, transport failure, untraced).
   */
  readonly redisError?: string | null
}

export interface EndpointStateEvent {
  readonly instance: string
  readonly endpoint: string
  readonly up: boolean
  readonly reason: string
}

export interface EndpointRoleEvent {
  readonly instances: readonly string[]
  readonly endpoint: string
  readonly from: string
  readonly to: string
}

export interface ReplicaLagEvent {
  readonly instance: string
  readonly endpoint: string
  /** null: unknown now (the replica's own check fails and its primary no longer lists it, or it was promoted). */
  readonly bytes: number | null
}

export interface RetryEvent {
  readonly instance: string
  /** Code of the failure that caused the retry. */
  readonly reason: string
  readonly scope: TraceScope | null
}

export interface HedgeEvent {
  readonly instance: string
  /** sent: a hedge was sent; won: the hedge answered first. */
  readonly result: 'sent' | 'won'
  readonly scope: TraceScope | null
}

/** A retry or hedge that was wanted but not sent: the instance's budget for it was spent. */
export interface BudgetExhaustedEvent {
  readonly instance: string
  readonly budget: 'retry' | 'hedge'
}

/**
 * A client disconnected for being too slow: an event stream's unread backlog passed its limit
 * (sse_backlog), a reply sat unread past limits.writeTimeout (write_timeout), or a request did not
 * arrive within node:http's request or headers timeout (request_timeout, answered 408).
 */
export interface SlowClientEvent {
  readonly reason: SlowClientReason
}

export type SlowClientReason = 'sse_backlog' | 'write_timeout' | 'request_timeout'

export interface BreakerEvent {
  readonly instances: readonly string[]
  readonly endpoint: string
  readonly from: string
  readonly to: string
  readonly reason: string
}

/**
 * Kubernetes discovery lifecycle: listed, watching, gone (410), error, reconciled, conflict; and
 * the API server's reachability (api_down, api_answering, api_up: recovery.ts), on resource
 * `apiserver` with the reason.
 */
export interface DiscoveryEvent {
  readonly source: string
  readonly kind: string
  readonly resource: string
  readonly error?: string
  readonly reason?: string
  readonly status?: number
  readonly retryInMs?: number
  readonly items?: number
  readonly instances?: number
  readonly instance?: string
}

/** An instance joined, left or changed in the routing table (maintenance, weight, endpoints). */
export interface InstanceChangeEvent {
  readonly instance: string
  readonly change: 'added' | 'removed' | 'updated'
  readonly maintenance: { readonly from: string; readonly to: string } | null
  readonly weight: { readonly from: number; readonly to: number } | null
  /** Endpoints the instance no longer lists (all of them when it was removed). */
  readonly removedEndpoints: readonly string[]
  readonly addedEndpoints: readonly string[]
}

export interface TableEvent {
  readonly instances: number
  readonly groups: number
  readonly version: number
}

export interface ConfigReloadEvent {
  readonly ok: boolean
  readonly error?: string
}

/** A Redis Cluster instance's slot map: learned (changed), a refresh that failed, or nodes refused. */
export interface ClusterTopologyEvent {
  readonly instance: string
  readonly kind: 'changed' | 'error' | 'refused'
  /** Shards serving slots, and slots served (16384 when all are), after the change. */
  readonly shards: number
  readonly slots: number
  /** Nodes of the map (primaries and replicas) the gateway uses, and their endpoint ids. */
  readonly nodes: number
  readonly nodeIds: readonly string[]
  /** What went wrong (error), or which nodes were refused and why (refused); null for changed. */
  readonly message: string | null
}

/** A Redis Cluster redirection followed (or the first one that made an instance a cluster). */
export interface ClusterRedirectEvent {
  readonly instance: string
  readonly kind: 'moved' | 'ask' | 'tryagain' | 'clusterdown'
}

export interface AnnotationErrorEvent {
  readonly instance: string
  readonly source: string
  readonly key: string
  readonly message: string
}

/**
 * Something was thrown, or a peer broke its protocol, while serving one request or reading one
 * connection. It ended that request or that connection (never the process); this says where.
 */
export interface FaultEvent {
  /** http_request, http_connection, redis_connection, redis_subscriber. */
  readonly where: FaultWhere
  readonly error: Error
  /** The Redis endpoint, for faults on a Redis connection; null otherwise. */
  readonly endpoint: string | null
}

export type FaultWhere = 'http_request' | 'http_connection' | 'redis_connection' | 'redis_subscriber'

export interface GatewayEventMap {
  annotationError: AnnotationErrorEvent
  clusterTopology: ClusterTopologyEvent
  clusterRedirect: ClusterRedirectEvent
  requestStart: { readonly instance: string | null }
  requestBegin: RequestBeginEvent
  routeResolveBegin: RouteResolveBeginEvent
  routeResolve: RouteResolveEvent
  routeSelect: RouteSelectEvent
  requestEnd: RequestEndEvent
  upstream: UpstreamEvent
  endpointState: EndpointStateEvent
  endpointRole: EndpointRoleEvent
  replicaLag: ReplicaLagEvent
  discovery: DiscoveryEvent
  retry: RetryEvent
  hedge: HedgeEvent
  budgetExhausted: BudgetExhaustedEvent
  slowClient: SlowClientEvent
  breaker: BreakerEvent
  table: TableEvent
  instanceChange: InstanceChangeEvent
  configReload: ConfigReloadEvent
  fault: FaultEvent
}

type Listener<T> = (event: T) => void

/** Whether anyone listens, per event: every name present from the start (one object shape). */
export type Listening = { readonly [K in keyof GatewayEventMap]: boolean }

function nobodyListening(): { -readonly [K in keyof GatewayEventMap]: boolean } {
  return {
    annotationError: false,
    clusterTopology: false,
    clusterRedirect: false,
    requestStart: false,
    requestBegin: false,
    routeResolveBegin: false,
    routeResolve: false,
    routeSelect: false,
    requestEnd: false,
    upstream: false,
    endpointState: false,
    endpointRole: false,
    replicaLag: false,
    discovery: false,
    retry: false,
    hedge: false,
    budgetExhausted: false,
    slowClient: false,
    breaker: false,
    table: false,
    instanceChange: false,
    configReload: false,
    fault: false,
  }
}

export class EventHub {
  private readonly listeners: { [K in keyof GatewayEventMap]?: Listener<GatewayEventMap[K]>[] } = {}
  private readonly flags = nobodyListening()
  /**
   * Whether anyone listens to each event, as plain properties: hot paths read
   * `events.listening.requestEnd` (a load from one known object shape) rather than has(name), whose
   * lookup by a name that varies from call to call costs V8's generic keyed load, several times
   * per request (bench/README.md, "Instructions per request, third pass").
   */
  readonly listening: Listening = this.flags
  /** Deferred events, as listener list, event, listener list, event... */
  private later: unknown[] = []
  private laterScheduled = false

  on<K extends keyof GatewayEventMap>(name: K, fn: Listener<GatewayEventMap[K]>): () => void {
    const list = (this.listeners[name] ??= []) as Listener<GatewayEventMap[K]>[]
    list.push(fn)
    this.flags[name] = true
    return () => {
      const i = list.indexOf(fn)
      if (i >= 0) list.splice(i, 1)
      this.flags[name] = list.length > 0
    }
  }

  /** True when someone listens: lets code skip building an event object nobody reads. See `listening`. */
  has(name: keyof GatewayEventMap): boolean {
    return this.flags[name]
  }

  /**
   * Emits after this turn of the event loop (setImmediate), in the order deferred: for what a reply
   * does not wait for (a request's metrics, spans and logs), so that work overlaps the network
   * instead of delaying the reply. Replies are written from promise callbacks, which run before
   * setImmediate. Requests read later in the same turn can run before it too: whatever must see
   * every finished request (a /metrics scrape) calls flush() first. Times in the event are taken
   * by the caller, so they are those of the moment it happened.
   */
  emitLater<K extends keyof GatewayEventMap>(name: K, event: GatewayEventMap[K]): void {
    const list = this.listeners[name]
    if (list === undefined || list.length === 0) return
    // The list, not the name: flush() then needs no lookup. Listeners added or removed before the
    // flush count, as they would for emit() at that time.
    this.later.push(list, event)
    if (this.laterScheduled) return
    this.laterScheduled = true
    setImmediate(this.flush)
  }

  /**
   * Emits now what emitLater deferred. /metrics calls it first, so a scrape counts every round
   * trip whose in-flight slot was already released: the scrape can be read in the same turn,
   * before the setImmediate. The scheduled setImmediate then finds nothing left.
   */
  readonly flush = (): void => {
    const q = this.later
    if (q.length === 0) return
    this.later = []
    this.laterScheduled = false
    for (let i = 0; i < q.length; i += 2) call(q[i] as Listener<unknown>[], q[i + 1])
  }

  emit<K extends keyof GatewayEventMap>(name: K, event: GatewayEventMap[K]): void {
    const list = this.listeners[name] as Listener<GatewayEventMap[K]>[] | undefined
    if (list !== undefined) call(list, event)
  }
}

function call<T>(list: readonly Listener<T>[], event: T): void {
  for (let i = 0; i < list.length; i++) {
    try {
      list[i]!(event)
    } catch {
      // A broken subscriber must never break a request.
    }
  }
}
