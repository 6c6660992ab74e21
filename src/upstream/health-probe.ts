// What one health check of a pooled endpoint runs: ROLE for the role, offset and replication link,
// and INFO replication for the replication id (sync tokens), within the health timeout. The health
// checker (resilience/health-checker.ts) schedules the checks and judges their results.

import type { HealthTarget } from '../resilience/health-checker.js'
import { withTimer } from '../core/timeout.js'
import type { PooledEndpoint } from './pool.js'

/** `timeoutMs` is read at each check, so a reloaded health.timeout applies to the next one. */
export function healthTarget(ep: PooledEndpoint, timeoutMs: () => number): HealthTarget {
  return {
    id: ep.id,
    state: ep.state,
    role: async () => {
      const ms = timeoutMs()
      const conn = ep.client.connection
      const reads = conn.reads
      const [role, repl] = await withTimer(Promise.all([ep.client.role(), ep.client.replication()]), ms, () => {
        // Nothing at all came back meanwhile: the connection is stalled; reset it (it reconnects).
        conn.timedOut(reads)
        return new Error(`health check of ${ep.id} timed out after ${ms} ms`)
      })
      // A new replication history (restart without persistence, failover): offsets restart, so
      // the old ones must not linger as if they were ahead.
      if (repl.replId !== ep.state.replId) {
        ep.state.offset = 0
        ep.state.replicaAcks.clear()
      }
      ep.state.replId = repl.replId
      return role
    },
  }
}
