// Test and benchmark support: candidates with fixed or tracked load, and pick-context builders.
// Not used by the gateway itself.

import { LoadTracker } from './least-request.js'
import { createPrng } from './prng.js'
import type { Candidate, LoadStats, PickContext } from './types.js'

/** A load that always reports the given in-flight count and latency. */
export function fixedLoad(inflight = 0, latencyMs = 1): LoadStats {
  return { inflight, latency: { get: () => latencyMs } }
}

export function candidate(id: string, weight = 1, load: LoadStats = fixedLoad()): Candidate {
  return { id, weight, load }
}

/** Candidates with a mutable `LoadTracker` each, for simulations. */
export function trackedCandidate(id: string, weight = 1): Candidate & { readonly load: LoadTracker } {
  return { id, weight, load: new LoadTracker() }
}

export function ids(n: number, prefix = '10.0.0.'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i + 1}:6379`)
}

/** A context with a seeded random source and a fixed client id. */
export function seededContext(seed: number, clientId: string | null = null): PickContext {
  return { clientId, random: createPrng(seed).next }
}
