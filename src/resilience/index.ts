// The resilience module's public surface: per-endpoint circuit breaker, the outlier-ejection cap,
// retry and hedge budgets, and their documented defaults. Pure and clock-driven; wiring into the
// request path (and the active health checker, imported from its own file) lives elsewhere.

export { RESILIENCE_DEFAULTS } from './defaults.js'
export {
  BREAKER_DEFAULTS,
  CircuitBreaker,
  countsAsBreakerFailure,
  openDurationMs,
  retryAfterSeconds,
} from './breaker.js'
export type {
  AcquireResult,
  BreakerOptions,
  BreakerState,
  BreakerTransitionListener,
  BreakerTransitionReason,
} from './breaker.js'
export { applyEjectionCap, maxEjectable } from './outlier.js'
export type { EjectionCandidate } from './outlier.js'
export { HEDGE_BUDGET_DEFAULTS, HedgeBudget, RETRY_BUDGET_DEFAULTS, RetryBudget, SlidingBudget } from './budget.js'
export type { BudgetOptions } from './budget.js'
