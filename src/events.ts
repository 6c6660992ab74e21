// A small typed event hub. Routing, upstream and discovery code emit facts here;
// telemetry (metrics, logs, later tracing) subscribes. Logic never calls telemetry directly.

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
}

export interface UpstreamEvent {
  readonly instance: string
  readonly endpoint: string
  readonly role: string
  /** 'ok' | 'reply_error' | 'timeout' | 'unavailable' | 'reset' */
  readonly outcome: string
  readonly durationS: number
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
  readonly bytes: number
}

export interface RetryEvent {
  readonly instance: string
  /** Code of the failure that caused the retry. */
  readonly reason: string
}

export interface HedgeEvent {
  readonly instance: string
  /** sent: a hedge was sent; won: the hedge answered first. */
  readonly result: 'sent' | 'won'
}

export interface BreakerEvent {
  readonly instances: readonly string[]
  readonly endpoint: string
  readonly from: string
  readonly to: string
  readonly reason: string
}

/** Kubernetes discovery lifecycle: listed, watching, gone (410), error, reconciled, conflict. */
export interface DiscoveryEvent {
  readonly source: string
  readonly kind: string
  readonly resource: string
  readonly error?: string
  readonly status?: number
  readonly retryInMs?: number
  readonly items?: number
  readonly instances?: number
  readonly instance?: string
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

export interface AnnotationErrorEvent {
  readonly instance: string
  readonly source: string
  readonly key: string
  readonly message: string
}

export interface GatewayEventMap {
  annotationError: AnnotationErrorEvent
  requestStart: { readonly instance: string | null }
  requestEnd: RequestEndEvent
  upstream: UpstreamEvent
  endpointState: EndpointStateEvent
  endpointRole: EndpointRoleEvent
  replicaLag: ReplicaLagEvent
  discovery: DiscoveryEvent
  retry: RetryEvent
  hedge: HedgeEvent
  breaker: BreakerEvent
  table: TableEvent
  configReload: ConfigReloadEvent
}

type Listener<T> = (event: T) => void

export class EventHub {
  private readonly listeners: { [K in keyof GatewayEventMap]?: Listener<GatewayEventMap[K]>[] } = {}

  on<K extends keyof GatewayEventMap>(name: K, fn: Listener<GatewayEventMap[K]>): () => void {
    const list = (this.listeners[name] ??= []) as Listener<GatewayEventMap[K]>[]
    list.push(fn)
    return () => {
      const i = list.indexOf(fn)
      if (i >= 0) list.splice(i, 1)
    }
  }

  /** True when someone listens: lets hot paths skip building an event object nobody reads. */
  has(name: keyof GatewayEventMap): boolean {
    const list = this.listeners[name]
    return list !== undefined && list.length > 0
  }

  emit<K extends keyof GatewayEventMap>(name: K, event: GatewayEventMap[K]): void {
    const list = this.listeners[name] as Listener<GatewayEventMap[K]>[] | undefined
    if (list === undefined) return
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!(event)
      } catch {
        // A broken subscriber must never break a request.
      }
    }
  }
}
