// Balancers: one `pick` method per strategy (callers never need to know which one they hold),
// created by name.
//
// Weight-0 rule, per strategy (weight 0 = "no new traffic unless nothing else"):
//   every strategy ignores weight-0 candidates while at least one candidate has weight > 0, and
//   treats all candidates as equal (weight 1) when every weight is 0. Beyond that gate:
//   - least-request: cost = latency x (in-flight + 1) / weight (weight biases, not a share);
//   - round-robin, random: weight magnitude is ignored (equal shares among weight > 0);
//   - weighted: shares exactly proportional to weight (smooth weighted round-robin);
//   - maglev: table slots proportional to weight; weighted random when there is no client id.
// Routers that need "weight 0 = never" (a group member's weight 0: no new group traffic) drop
// weight-0 candidates before calling `pick` and answer 503 themselves when none is left.
//
// Instances: round-robin, weighted and maglev keep state across picks (recency stamps, current
// weights, lookup table), keyed by candidate id, so create one balancer per instance (for its
// endpoints) and per group (for its members) and keep it while that instance or group exists.
// One balancer may see different eligible lists of the same instance (reads over replicas, writes
// over the primary): state is per id, so that is safe. Random and least-request are stateless
// (least-request's state is the candidates' LoadStats).

import type { GroupStrategy, Strategy } from '../core/topology.js'
import { DEFAULTS } from './defaults.js'
import { LeastRequestBalancer } from './least-request.js'
import { MaglevBalancer, type MaglevFill } from './maglev.js'
import { RandomBalancer } from './random.js'
import { RoundRobinBalancer } from './round-robin.js'
import type { Balancer } from './types.js'
import { WeightedBalancer } from './weighted.js'

export interface BalancerOptions {
  /** Monotonic ms clock for least-request; must be the clock that feeds `PeakEwma.observe`. */
  readonly now?: () => number
  /** Maglev table size (prime). Default `DEFAULTS.maglevTableSize`. */
  readonly maglevTableSize?: number
  /** Maglev tables kept for memberships that come back. Default 2. */
  readonly maglevTableCacheSize?: number
  /** Maglev slot assignment: 'maglev' (default) or 'rendezvous' (strictly minimal disruption). */
  readonly maglevFill?: MaglevFill
}

export function createBalancer(strategy: Strategy, opts: BalancerOptions = {}): Balancer {
  switch (strategy) {
    case 'least-request':
      return new LeastRequestBalancer(opts.now ? { now: opts.now } : {})
    case 'round-robin':
      return new RoundRobinBalancer()
    case 'random':
      return new RandomBalancer()
    case 'weighted':
      return new WeightedBalancer()
    case 'maglev':
      return new MaglevBalancer({
        ...(opts.maglevTableSize !== undefined && { tableSize: opts.maglevTableSize }),
        ...(opts.maglevTableCacheSize !== undefined && { tableCacheSize: opts.maglevTableCacheSize }),
        ...(opts.maglevFill !== undefined && { fill: opts.maglevFill }),
      })
  }
}

/** Group strategies pick an instance with the same balancers; `sticky` is weighted maglev. */
/**
 * Group strategies pick an instance with the same balancers. `sticky` uses the table with the
 * rendezvous fill: when a member joins, clients move only to the new member (none between old
 * ones), which the paper's Maglev fill only approximates; groups are small, so the slower build
 * does not matter.
 */
export function createGroupBalancer(strategy: GroupStrategy, opts: BalancerOptions = {}): Balancer {
  if (strategy === 'sticky') return createBalancer('maglev', { maglevFill: 'rendezvous', ...opts })
  return createBalancer(strategy, opts)
}

export { DEFAULTS }
export type { Balancer, Candidate, GroupStrategy, LatencyEstimate, LoadStats, PickContext, Strategy } from './types.js'
export { cost, LeastRequestBalancer, LoadTracker, PeakEwma } from './least-request.js'
export type { LeastRequestOptions, PeakEwmaOptions } from './least-request.js'
export { buildMaglevTable, buildRendezvousTable, MaglevBalancer, maglevSlot } from './maglev.js'
export type { MaglevBackend, MaglevFill, MaglevOptions, MaglevTable } from './maglev.js'
export { RandomBalancer } from './random.js'
export { RoundRobinBalancer } from './round-robin.js'
export { WeightedBalancer } from './weighted.js'
export { murmur3 } from './hash.js'
