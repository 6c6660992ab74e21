// Documented defaults of every resilience option, in one place, so code, config and docs cannot
// drift apart.
// The breaker, budgets and outlier cap read their defaults from here; `index.ts` re-exports
// this object so config, docs and the admin view can show the same numbers.

export const RESILIENCE_DEFAULTS = {
  breaker: {
    /** Transport failures in a row that open the breaker. */
    consecutiveFailures: 5,
    /**
     * Failure share over the window that opens the breaker when exceeded (strictly greater).
     * Catches an endpoint that fails often but not 5 times in a row under interleaved traffic.
     */
    failureRateThreshold: 0.5,
    /** Sliding window of the failure rate (10 buckets of 1 s). Hystrix and Resilience4j use 10 s. */
    windowMs: 10_000,
    /**
     * Calls needed in the window before the rate may open the breaker, so that 1 failure out of
     * 2 calls on a quiet endpoint does not count as "50% failing" (Hystrix's requestVolumeThreshold).
     */
    minimumVolume: 20,
    /** First open period; each consecutive re-opening doubles it. */
    baseOpenMs: 1_000,
    /** Cap of the doubling, so a recovered endpoint is retried at least this often. */
    maxOpenMs: 30_000,
    /** Concurrent probes in half-open: one probe is enough to learn whether Redis answers. */
    halfOpenProbes: 1,
    /**
     * A probe not reported by then counts as failed, so a hung endpoint cannot keep the breaker
     * half-open (and every other request refused) forever. Redis answers in well under 1 ms when
     * healthy; 1 s tolerates a busy server without waiting for the full command timeout.
     */
    probeTimeoutMs: 1_000,
  },
  /**
   * Share of an instance's replicas outlier ejection may remove:
   * at least half keep serving, so a bad detector or a partition seen only by the gateway cannot
   * push all reads onto a few endpoints or none.
   */
  maxEjectionPercent: 50,
  /** A read is retried at most once, on another endpoint. Writes never (they may have run). */
  maxRetriesPerRead: 1,
  retryBudget: {
    /** Retries allowed per request in the window (20%, Finagle's default too). */
    ratio: 0.2,
    /**
     * Retries allowed per second regardless of traffic, so a quiet instance can still retry its
     * few requests (Finagle's minRetriesPerSec = 10).
     */
    minPerSecond: 10,
    /** Window over which requests and retries are counted (Finagle's ttl = 10 s). */
    windowMs: 10_000,
  },
  hedgeBudget: {
    /** Hedges allowed per request in the window (5%). */
    ratio: 0.05,
    /** A small floor so hedging still works on a quiet instance, without doubling its load. */
    minPerSecond: 1,
    windowMs: 10_000,
  },
  // The per-endpoint bounds on requests in flight and waiting are config keys now
  // (limits.maxInflightPerEndpoint, limits.maxPendingPerEndpoint): their defaults are in
  // config/schema.ts DEFAULTS.limits.
} as const
