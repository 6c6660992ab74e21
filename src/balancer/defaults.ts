// Documented defaults of every balancer option, in one place, so code, config and docs cannot
// drift apart.

export const DEFAULTS = {
  /** Endpoint strategy when the `redis-gateway.io/strategy` annotation is absent. */
  strategy: 'least-request',
  /** Group strategy when the config file's `groups:` entry names none. */
  groupStrategy: 'weighted',
  /**
   * Maglev lookup-table size: a prime, much larger than the number of backends (the paper
   * recommends M > 100 N). 65537 keeps per-backend share error under ~1% for up to ~650 backends.
   */
  maglevTableSize: 65537,
  /** Peak-EWMA decay time constant (Finagle and linkerd2 use 10 s). */
  ewmaTauMs: 10_000,
  /**
   * Latency assumed for an endpoint with no RTT observation yet. linkerd2 uses 30 ms for HTTP
   * services; a Redis round trip inside a cluster is ~0.1-1 ms, so 1 ms keeps a new endpoint from
   * looking either free (flooded at once) or 30x slower than its peers (never tried).
   */
  defaultRttMs: 1,
} as const
