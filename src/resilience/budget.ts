// Retry and hedge budgets (README "Resilience"), in the style of Finagle's
// RetryBudget (and Envoy's retry_budget): extra attempts are allowed while, over the last window,
//
//     extra attempts <= ratio x requests + minPerSecond x window seconds
//
// A per-request retry limit alone lets retries multiply load exactly when an endpoint struggles
// (every request failing means every request retried: 2x load on the survivors). A budget caps
// the extra load at `ratio` of the traffic, while the floor still lets a quiet instance retry its
// few requests. Counted in a bucketed sliding window (10 buckets) with an injected clock: O(1) per
// call, no allocation per call, no timers.
//
// Usage: recordRequest() once per client request (not per attempt); tryRetry() / tryHedge()
// right before sending an extra attempt, which consumes budget only when it returns true.

import { RESILIENCE_DEFAULTS } from './defaults.js'
import { RollingCounts } from './window.js'

export interface BudgetOptions {
  /** Extra attempts allowed per request seen in the window. */
  ratio: number
  /** Extra attempts allowed per second of window regardless of traffic. */
  minPerSecond: number
  /** Window over which requests and extra attempts are counted. */
  windowMs: number
}

export const RETRY_BUDGET_DEFAULTS: Readonly<BudgetOptions> = RESILIENCE_DEFAULTS.retryBudget
export const HEDGE_BUDGET_DEFAULTS: Readonly<BudgetOptions> = RESILIENCE_DEFAULTS.hedgeBudget

const WINDOW_BUCKETS = 10
const REQUESTS = 0
const SPENT = 1
// ratio x requests is a float (0.2 x 15 may land a hair below 3): don't let that refuse a retry.
const EPSILON = 1e-9

/** The shared mechanism; RetryBudget and HedgeBudget differ only in defaults and method names. */
export class SlidingBudget {
  readonly options: Readonly<BudgetOptions>
  private readonly window: RollingCounts
  private readonly floor: number

  constructor(
    opts: Partial<BudgetOptions>,
    private readonly clock: () => number,
    defaults: Readonly<BudgetOptions>,
  ) {
    const o: BudgetOptions = {
      ratio: opts.ratio ?? defaults.ratio,
      minPerSecond: opts.minPerSecond ?? defaults.minPerSecond,
      windowMs: opts.windowMs ?? defaults.windowMs,
    }
    if (!(o.ratio >= 0) || !Number.isFinite(o.ratio)) throw new RangeError(`budget ratio must be >= 0, got ${o.ratio}`)
    if (!(o.minPerSecond >= 0) || !Number.isFinite(o.minPerSecond)) {
      throw new RangeError(`budget minPerSecond must be >= 0, got ${o.minPerSecond}`)
    }
    if (!(o.windowMs > 0) || !Number.isFinite(o.windowMs)) throw new RangeError(`budget windowMs must be > 0, got ${o.windowMs}`)
    this.options = o
    this.floor = (o.minPerSecond * o.windowMs) / 1000
    this.window = new RollingCounts(o.windowMs, WINDOW_BUCKETS, 2)
  }

  /** One client request arrived (call once per request, not per attempt). */
  recordRequest(nowMs: number = this.clock()): void {
    this.window.add(REQUESTS, nowMs)
  }

  /** Takes one unit of budget if the window allows it; false (and nothing consumed) otherwise. */
  tryConsume(): boolean {
    const now = this.clock()
    if (this.window.sum(SPENT, now) + 1 > this.allowance(now) + EPSILON) return false
    this.window.add(SPENT, now)
    return true
  }

  /** Whole units that could be consumed now (for the admin view and tests). */
  available(): number {
    const now = this.clock()
    return Math.max(0, Math.floor(this.allowance(now) + EPSILON - this.window.sum(SPENT, now)))
  }

  private allowance(now: number): number {
    return this.options.ratio * this.window.sum(REQUESTS, now) + this.floor
  }
}

/** Budget for retrying a read on another endpoint. Defaults: 20% of requests + 10/s, 10 s window. */
export class RetryBudget extends SlidingBudget {
  constructor(opts: Partial<BudgetOptions>, clock: () => number) {
    super(opts, clock, RETRY_BUDGET_DEFAULTS)
  }

  /** May one retry be sent now? Consumes budget when true. */
  tryRetry(): boolean {
    return this.tryConsume()
  }
}

/** Budget for hedged reads. Defaults: 5% of requests + 1/s, 10 s window. */
export class HedgeBudget extends SlidingBudget {
  constructor(opts: Partial<BudgetOptions>, clock: () => number) {
    super(opts, clock, HEDGE_BUDGET_DEFAULTS)
  }

  /** May one hedge be sent now? Consumes budget when true. */
  tryHedge(): boolean {
    return this.tryConsume()
  }
}
