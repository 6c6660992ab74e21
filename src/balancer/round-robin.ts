// Round-robin balancer: each pick goes to the eligible candidate this balancer served least
// recently. On a stable list that is strict rotation (every candidate once per n picks); the
// "cursor" is a per-id recency stamp rather than a position, because the eligible list changes
// between calls (an endpoint ejected, a replica lagging, a read-your-writes filter) and may even
// alternate between two lists: a positional cursor then skips or repeats candidates (with reads
// over [primary, r1, r2] interleaved with writes over [primary], "the one after the last pick"
// would never reach r2). With stamps keyed by id:
//   - removing the last-picked candidate just drops it from the next comparison;
//   - an added candidate has never been served, so it is next, then joins the rotation;
//   - a candidate that returns resumes its place by its old stamp.
// New ids get a random stamp below every real one (ctx.random), so gateway processes that start
// together do not all send their first request to the same endpoint (as gRPC's round_robin picker
// randomises its start index).
//
// Weight rule: weight is only a gate: weight-0 candidates are skipped while any has weight > 0;
// when all are 0 the rotation covers all of them. Use `weighted` for proportional shares.
// References: Envoy ROUND_ROBIN (equal weights), grpc-go balancer/roundrobin.

import type { Balancer, Candidate, PickContext } from './types.js'

interface Slot {
  readonly id: string
  /** Sequence number of the last pick of this id; in (-1, 0] if never picked. */
  stamp: number
  /** Generation in which this id was last listed, for pruning ids gone for good. */
  seen: number
}

export class RoundRobinBalancer implements Balancer {
  private readonly byId = new Map<string, Slot>()
  /** aligned[i] is the slot of candidates[i] of the last list seen. */
  private aligned: Slot[] = []
  private sequence = 0
  private generation = 0

  pick(candidates: readonly Candidate[], ctx: PickContext): Candidate | null {
    const n = candidates.length
    if (n <= 1) return n === 0 ? null : candidates[0]!
    if (!this.isAligned(candidates)) this.realign(candidates, ctx.random)
    const slots = this.aligned
    let best = -1
    let bestStamp = Infinity
    let oldest = 0 // fallback when every weight is 0
    let oldestStamp = Infinity
    for (let i = 0; i < n; i++) {
      const stamp = slots[i]!.stamp
      if (stamp < oldestStamp) {
        oldestStamp = stamp
        oldest = i
      }
      if (candidates[i]!.weight > 0 && stamp < bestStamp) {
        bestStamp = stamp
        best = i
      }
    }
    if (best < 0) best = oldest
    slots[best]!.stamp = ++this.sequence
    return candidates[best]!
  }

  private isAligned(candidates: readonly Candidate[]): boolean {
    const slots = this.aligned
    if (slots.length !== candidates.length) return false
    for (let i = 0; i < candidates.length; i++) if (slots[i]!.id !== candidates[i]!.id) return false
    return true
  }

  private realign(candidates: readonly Candidate[], random: () => number): void {
    const gen = ++this.generation
    const n = candidates.length
    const slots: Slot[] = new Array<Slot>(n)
    for (let i = 0; i < n; i++) {
      const id = candidates[i]!.id
      let s = this.byId.get(id)
      if (!s) {
        s = { id, stamp: -random(), seen: gen }
        this.byId.set(id, s)
      }
      s.seen = gen
      slots[i] = s
    }
    this.aligned = slots
    if (this.byId.size > 2 * n + 16) {
      for (const [id, s] of this.byId) if (s.seen !== gen) this.byId.delete(id)
    }
  }
}
