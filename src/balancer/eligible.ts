// The weight-0 rule shared by every strategy, without allocating a filtered list per pick:
// when at least one candidate has weight > 0, only those take traffic; when none has, all do
// (and count as equal). `weight > 0` is false for NaN and negatives, so bad weights count as 0.

import type { Candidate } from './types.js'

/** How many candidates have weight > 0. */
export function countPositive(candidates: readonly Candidate[]): number {
  let n = 0
  for (let i = 0; i < candidates.length; i++) if (candidates[i]!.weight > 0) n++
  return n
}

/**
 * Index (in `candidates`) of the k-th candidate that takes traffic, 0-based, given
 * `positive = countPositive(candidates)`.
 */
export function nthTakingTraffic(candidates: readonly Candidate[], k: number, positive: number): number {
  if (positive === 0 || positive === candidates.length) return k
  for (let i = 0; i < candidates.length; i++) {
    if (candidates[i]!.weight > 0 && k-- === 0) return i
  }
  return candidates.length - 1 // unreachable for 0 <= k < positive
}

/** Uniform integer in [0, n) from an injected source; robust to a source that returns 1. */
export function randomIndex(random: () => number, n: number): number {
  const i = Math.floor(random() * n)
  return i >= n ? n - 1 : i < 0 ? 0 : i
}
