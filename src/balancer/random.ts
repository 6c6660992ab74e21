// Random balancer: a uniform pick among the candidates that take traffic, using the injected
// `ctx.random` (so it is deterministic under test). Stateless.
//
// Weight rule: weight is only a gate here, not a proportion: uniform among weight > 0 when any,
// else uniform among all. Use `weighted` (or maglev without a client id) for proportional shares.
// Reference: Envoy's RANDOM load balancer; Mitzenmacher, "The Power of Two Choices" (2001) §1
// for why random is the baseline least-request improves on.

import { countPositive, nthTakingTraffic, randomIndex } from './eligible.js'
import type { Balancer, Candidate, PickContext } from './types.js'

export class RandomBalancer implements Balancer {
  pick(candidates: readonly Candidate[], ctx: PickContext): Candidate | null {
    const n = candidates.length
    if (n <= 1) return n === 0 ? null : candidates[0]!
    const positive = countPositive(candidates)
    const k = randomIndex(ctx.random, positive === 0 ? n : positive)
    return candidates[nthTakingTraffic(candidates, k, positive)]!
  }
}
