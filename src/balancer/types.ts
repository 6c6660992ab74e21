// The one-method balancer interface every strategy implements, so routers need not know which
// strategy they hold (cf. undici's `kGetDispatcher`), and the candidate shape the router hands
// over per request.
//
// The same interface serves two levels:
//   - endpoints of an instance: id = "host:port", weight = 1 (endpoints carry no weight today),
//     load = that endpoint's in-flight count and peak-EWMA latency;
//   - instances of a group: id = instance name, weight = the instance's `redis-gateway.io/weight`
//     (0..10000), load = the instance's aggregate in-flight count and latency.
//
// Weight 0 means "no new traffic unless nothing else": every strategy ignores weight-0 candidates
// whenever at least one candidate has weight > 0, and treats all candidates as equal when every
// weight is 0. A router that wants the stricter "weight 0 never" (e.g. group canaries) filters
// weight-0 candidates out before calling `pick`. Per-strategy details: the header of index.ts.

/** Read-only view of a latency estimator (see `PeakEwma` in least-request.ts). */
export interface LatencyEstimate {
  /** The current estimate in ms, decayed to `nowMs`; never negative. Must not have side effects. */
  get(nowMs: number): number
}

/**
 * The least-request cost inputs. Owned and mutated by the endpoint (or instance) state; balancers
 * only read them. `LoadTracker` in least-request.ts is a ready-made implementation.
 */
export interface LoadStats {
  /** Requests sent and not yet answered. */
  readonly inflight: number
  /** Peak-EWMA round-trip estimate. */
  readonly latency: LatencyEstimate
}

/** One eligible endpoint (or group member), as the router hands it over. */
export interface Candidate {
  /** Stable identity: endpoint id "host:port" or instance name. Balancer state is keyed by it. */
  readonly id: string
  /** >= 0 (0..10000 for group members). 0 = take no new traffic unless nothing else can. */
  readonly weight: number
  /** Live stats owned by the endpoint state; only least-request reads them. */
  readonly load: LoadStats
}

export interface PickContext {
  /** Sticky key (the `x-client-id` header); null = no stickiness. Only maglev uses it. */
  readonly clientId: string | null
  /** Uniform in [0, 1). Injected so tests are deterministic; Math.random in production. */
  readonly random: () => number
}

export interface Balancer {
  /**
   * Picks one of `candidates` (the set eligible for this request; it may differ on every call).
   * Returns null only for an empty list; otherwise always an element of `candidates`.
   */
  pick(candidates: readonly Candidate[], ctx: PickContext): Candidate | null
}

// One source of truth for strategy names: the topology contract (annotation and config values).
export type { GroupStrategy, Strategy } from '../core/topology.js'
