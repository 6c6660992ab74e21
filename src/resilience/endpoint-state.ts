// What the gateway currently believes about one endpoint: its role and replication position
// (from active ROLE checks), whether it answers, and its load (for balancing). Written by the
// health checker and by request outcomes; read by the router. Plain mutable fields: one per
// endpoint, updated in place, never copied on the hot path.

import { performance } from 'node:perf_hooks'
import { LoadTracker } from '../balancer/least-request.js'
import type { Candidate } from '../balancer/types.js'
import { CircuitBreaker } from './breaker.js'
import type { LinkState, Role } from '../core/role.js'

export class EndpointState implements Candidate {
  /** Endpoints carry no weight of their own; instance weights apply inside groups. */
  readonly weight = 1
  /** In-flight count and peak-EWMA latency, for least-request balancing. */
  readonly load = new LoadTracker()
  /** Transport failures of requests to this endpoint open it (only transport failures count). */
  readonly breaker: CircuitBreaker
  /** Replication id (INFO replication master_replid): on a replica, its primary's. */
  replId: string | null = null
  role: Role = 'unknown'
  /** The last health check got an answer. */
  healthy = false
  /** Own replication offset (primary: master_repl_offset; replica: processed offset). */
  offset = 0
  /** For replicas: the primary it follows (as ROLE reports it) and the link state. */
  primaryHost: string | null = null
  primaryPort = 0
  link: LinkState = 'unknown'
  /**
   * For replicas: the primary's offset as known when this replica was last checked. Lag is
   * measured against it, not against the primary's offset now: the primary's offset moves with
   * every write, while a replica's is only refreshed per check, so "now" would call every
   * caught-up replica lagging between checks under write load.
   */
  primaryOffsetAtCheck = 0
  /** For primaries: each replica's acknowledged offset, keyed by endpointId(ip, port) as the primary sees it. */
  replicaAcks = new Map<string, number>()
  /** Requests waiting for this endpoint's connection to be (re)established. */
  pending = 0
  lastCheckMs = 0
  consecutiveFailures = 0
  /** Why the last health check failed (or the connection closed); null after a check passes. */
  lastError: string | null = null

  constructor(
    readonly id: string,
    breaker?: CircuitBreaker,
  ) {
    this.breaker = breaker ?? new CircuitBreaker({}, () => performance.now())
  }

  /** Highest offset this endpoint is known to have reached, from any source. */
  knownOffset(ackedByPrimary = 0): number {
    return Math.max(this.offset, ackedByPrimary)
  }
}
