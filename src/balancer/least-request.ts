// Least-request balancer (the default): power of two choices over a peak-EWMA cost.
//
// P2C: pick two distinct candidates uniformly at random and send to the cheaper one
// (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", 2001). Compared with
// "always the global minimum" it needs no sorted structure and avoids herding every gateway onto
// the same momentarily-idle endpoint. Cost = latency estimate x (in-flight + 1), divided by weight,
// as in Finagle's `PeakEwma` balancer (finagle-core loadbalancer/PeakEwma.scala) and
// linkerd2-proxy / tower `PeakEwma` (tower/src/load/peak_ewma.rs).
//
// Weight rule: cost is scaled by 1/weight, so a weight-2 candidate wins against an equally loaded
// weight-1 one; weight-0 candidates are not drawn while any has weight > 0; when all are 0,
// weights are ignored.
//
// Clock: the balancer reads `now()` once per pick to decay estimates. Whoever calls
// `PeakEwma.observe` (the router, via `LoadTracker.finish`) must use the same clock.

import { performance } from 'node:perf_hooks'
import { DEFAULTS } from './defaults.js'
import { countPositive, nthTakingTraffic, randomIndex } from './eligible.js'
import type { Balancer, Candidate, LatencyEstimate, LoadStats, PickContext } from './types.js'

export interface PeakEwmaOptions {
  /** Decay time constant in ms. Default `DEFAULTS.ewmaTauMs` (10 s). */
  readonly tauMs?: number
  /** Estimate reported before the first observation. Default `DEFAULTS.defaultRttMs` (1 ms). */
  readonly defaultRttMs?: number
}

/**
 * Peak-sensitive exponentially weighted moving average of round-trip times, in ms.
 *
 * - `observe(rtt, now)`: a sample above the current estimate replaces it at once (peak: react to
 *   a slow endpoint immediately); a sample below it pulls the estimate toward it with weight
 *   1 - exp(-elapsed / tau), elapsed = time since the previous observation (recover gradually).
 * - `get(now)`: the estimate, further decayed toward 0 by the time since the last observation.
 *   An endpoint that stopped getting traffic because it looked slow therefore looks cheap again
 *   after a few tau and gets probed (Finagle's `get()` and tower's `load()` decay the same way).
 *   `get` has no side effects, so the admin view can read it freely.
 *
 * Before the first observation, `get` returns the default RTT; the first observation replaces it.
 * Time may stand still or go backwards (elapsed is clamped at 0); NaN and negative samples are
 * ignored.
 */
export class PeakEwma implements LatencyEstimate {
  private readonly tauMs: number
  private readonly defaultRttMs: number
  private estimate: number
  private stamp = 0
  private observed = false

  constructor(opts: PeakEwmaOptions = {}) {
    this.tauMs = opts.tauMs ?? DEFAULTS.ewmaTauMs
    this.defaultRttMs = opts.defaultRttMs ?? DEFAULTS.defaultRttMs
    if (!(this.tauMs > 0)) throw new RangeError(`PeakEwma tauMs must be > 0, got ${this.tauMs}`)
    if (!(this.defaultRttMs >= 0)) throw new RangeError(`PeakEwma defaultRttMs must be >= 0, got ${this.defaultRttMs}`)
    this.estimate = this.defaultRttMs
  }

  observe(rttMs: number, nowMs: number): void {
    if (!(rttMs >= 0)) return
    if (!this.observed || rttMs > this.estimate) {
      this.estimate = rttMs
    } else {
      const w = Math.exp(-Math.max(0, nowMs - this.stamp) / this.tauMs)
      this.estimate = this.estimate * w + rttMs * (1 - w)
    }
    // A clock that stepped back must not make the next reading decay over time already counted.
    if (!this.observed || nowMs > this.stamp) this.stamp = nowMs
    this.observed = true
  }

  get(nowMs: number): number {
    if (!this.observed) return this.defaultRttMs
    const elapsed = nowMs - this.stamp
    return elapsed > 0 ? this.estimate * Math.exp(-elapsed / this.tauMs) : this.estimate
  }

  /** Whether any RTT has been observed (for the admin view). */
  get hasObservations(): boolean {
    return this.observed
  }
}

/**
 * A ready-made `LoadStats` for an endpoint (or a group member instance): call `start()` when a
 * request is sent to it and `finish(rtt, now)` when it completes, successfully or not. Feed
 * failures too: a timeout observed as its full duration is exactly the peak that should steer
 * traffic away. Not every failure has a meaningful RTT (e.g. connection refused after 0.1 ms
 * would make a dead endpoint look fast); pass `rttMs = NaN` to release the in-flight slot
 * without a sample, and let the breaker / outlier ejection remove it from the eligible set.
 */
export class LoadTracker extends PeakEwma implements LoadStats {
  inflight = 0

  /**
   * The peak-EWMA estimate: the tracker itself. One object per endpoint instead of two, so a
   * P2C pick over endpoints the CPU caches do not hold (large tables) loads one line less each.
   */
  get latency(): PeakEwma {
    return this
  }

  start(): void {
    this.inflight++
  }

  finish(rttMs: number, nowMs: number): void {
    if (this.inflight > 0) this.inflight--
    this.observe(rttMs, nowMs)
  }
}

export interface LeastRequestOptions {
  /** Monotonic clock in ms; the same one that feeds `PeakEwma.observe`. Default performance.now. */
  readonly now?: () => number
}

/**
 * Below this (ms), a latency estimate counts as this, so that in-flight counts still separate
 * candidates whose estimates decayed to ~0 (Finagle adds a penalty for the same reason).
 */
const MIN_LATENCY_MS = 1e-3

export class LeastRequestBalancer implements Balancer {
  private readonly now: () => number

  constructor(opts: LeastRequestOptions = {}) {
    this.now = opts.now ?? (() => performance.now())
  }

  pick(candidates: readonly Candidate[], ctx: PickContext): Candidate | null {
    const n = candidates.length
    if (n <= 1) return n === 0 ? null : candidates[0]!
    const positive = countPositive(candidates)
    const m = positive === 0 ? n : positive
    if (m === 1) return candidates[nthTakingTraffic(candidates, 0, positive)]!
    // Two distinct indices among the m that take traffic.
    const i = randomIndex(ctx.random, m)
    let j = randomIndex(ctx.random, m - 1)
    if (j >= i) j++
    const a = candidates[nthTakingTraffic(candidates, i, positive)]!
    const b = candidates[nthTakingTraffic(candidates, j, positive)]!
    const now = this.now()
    const useWeight = positive > 0
    // Ties go to `a`, which is itself a uniformly random one of the two.
    return cost(b, now, useWeight) < cost(a, now, useWeight) ? b : a
  }
}

/** Latency estimate x (in-flight + 1) / weight. Exported for the admin view and tests. */
export function cost(c: Candidate, nowMs: number, useWeight = true): number {
  const latency = c.load.latency.get(nowMs)
  const inflight = c.load.inflight
  const base = (latency > MIN_LATENCY_MS ? latency : MIN_LATENCY_MS) * (inflight > 0 ? inflight + 1 : 1)
  return useWeight ? base / c.weight : base
}
