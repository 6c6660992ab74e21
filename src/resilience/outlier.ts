// Outlier-ejection cap: breakers decide which endpoints
// look broken, this decides how many of them may actually be taken out of an instance's replica
// set. Without a cap, a fault that makes healthy replicas look bad (a gateway-side network
// problem, an overloaded gateway timing out everything) would eject them all and pile the reads
// onto the primary or onto nothing; Envoy's max_ejection_percent guards the same way.
//
// Rule when more breakers are open than the cap allows: the endpoints that tripped first stay
// ejected (ties: lower id first), the rest keep serving. Oldest-first keeps the ejected set stable
// (an endpoint already out stays out; a newly failing one is not swapped in, so traffic does not
// bounce between the two), and the longest-failing endpoint is the likeliest to be really broken.
// Endpoints with no trip time sort after those with one.

import { RESILIENCE_DEFAULTS } from './defaults.js'

export interface EjectionCandidate {
  readonly id: string
  /** The endpoint's breaker refuses traffic (open; half-open with every probe slot taken, if the caller wishes). */
  readonly breakerOpen: boolean
  /** When the breaker last left closed (`CircuitBreaker.trippedAt`); earlier = kept ejected first. */
  readonly trippedAt?: number | undefined
}

/** How many of `total` endpoints may be ejected: floor(total x pct / 100), pct clamped to 0..100. */
export function maxEjectable(total: number, maxEjectionPercent: number = RESILIENCE_DEFAULTS.maxEjectionPercent): number {
  if (!(total > 0)) return 0
  const pct = Math.min(100, Math.max(0, Number.isFinite(maxEjectionPercent) ? maxEjectionPercent : 0))
  // Multiply before dividing: total x pct stays an exact integer for integer percentages, whereas
  // 0.29 x 100 is 28.999999999999996 in floating point and would floor to 28. The epsilon covers
  // fractional percentages that land a hair below an integer.
  return Math.floor((Math.floor(total) * pct + 1e-9) / 100)
}

/**
 * Ids of the endpoints to treat as ejected: those with an open breaker, at most
 * maxEjectable(endpoints.length, maxPercent) of them, the earliest-tripped first.
 * Pass one instance's endpoints of one role (its replicas).
 */
export function applyEjectionCap(
  endpoints: readonly EjectionCandidate[],
  maxPercent: number = RESILIENCE_DEFAULTS.maxEjectionPercent,
): Set<string> {
  const cap = maxEjectable(endpoints.length, maxPercent)
  const ejected = new Set<string>()
  if (cap === 0) return ejected
  const open = endpoints.filter((e) => e.breakerOpen)
  if (open.length <= cap) {
    for (const e of open) ejected.add(e.id)
    return ejected
  }
  open.sort(byTripTime)
  for (let i = 0; i < cap; i++) ejected.add(open[i]!.id)
  return ejected
}

function byTripTime(a: EjectionCandidate, b: EjectionCandidate): number {
  const ta = a.trippedAt ?? Number.POSITIVE_INFINITY
  const tb = b.trippedAt ?? Number.POSITIVE_INFINITY
  if (ta !== tb) return ta < tb ? -1 : 1
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
