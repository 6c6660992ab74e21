// What one health check of a pooled endpoint runs: ROLE for the role, offset and replication link,
// within the health timeout, and INFO replication for the replication id (sync tokens) when it may
// have changed. The id changes only with a new replication history (a failover, a restart without
// persistence, a replica that resynced or follows another primary), and each of those shows in
// ROLE or in the connection: INFO is read on the first check of each connection, whenever ROLE's
// role, primary, link state changed or its offset went back, and otherwise every
// REPLICATION_REFRESH_CHECKS checks. The health checker (resilience/health-checker.ts) schedules
// the checks and judges their results.

import { performance } from 'node:perf_hooks'
import type { HealthTarget } from '../resilience/health-checker.js'
import { BusyCheckError } from '../core/errors.js'
import { withTimer } from '../core/timeout.js'
import { parseRole, type RoleReport } from '../core/role.js'
import type { PooledEndpoint } from './pool.js'

/** Checks between two reads of INFO replication when ROLE showed nothing that could change the id. */
export const REPLICATION_REFRESH_CHECKS = 10

/** Whether ROLE shows something that comes with a new replication history (or may). */
export function historyMayHaveChanged(prev: RoleReport | null, next: RoleReport): boolean {
  return (
    prev === null ||
    prev.role !== next.role ||
    next.offset < prev.offset ||
    prev.primaryHost !== next.primaryHost ||
    prev.primaryPort !== next.primaryPort ||
    prev.link !== next.link
  )
}

/** `timeoutMs` is read at each check, so a reloaded health.timeout applies to the next one. */
export function healthTarget(ep: PooledEndpoint, timeoutMs: () => number): HealthTarget {
  /** The connection (EndpointClient.connects) the replication id was last read on; -1: never. */
  let readOn = -1
  let checksSinceRead = 0
  /** The last ROLE answered. */
  let last: RoleReport | null = null
  return {
    id: ep.id,
    state: ep.state,
    connected: () => ep.client.up,
    role: async () => {
      const ms = timeoutMs()
      const deadline = performance.now() + ms
      const client = ep.client
      const conn = client.connection
      const connects = client.connects
      const bounded = <T>(p: Promise<T>): Promise<T> => {
        const reads = conn.reads
        return withTimer(p, Math.max(1, deadline - performance.now()), () => {
          // Replies kept coming meanwhile: the check waits behind a backlog on a live connection,
          // which says nothing against Redis (a gateway overloaded by 10,000 clients marked a
          // healthy Redis down this way: bench/README.md, "Cost as work grows"). Otherwise the
          // connection is stalled and has been reset (it reconnects).
          if (conn.timedOut(reads)) return new BusyCheckError(`health check of ${ep.id} waited over ${ms} ms behind other commands on a busy connection`)
          return new Error(`health check of ${ep.id} timed out after ${ms} ms`)
        })
      }
      let report: RoleReport
      let repl: { replId: string | null } | null = null
      if (readOn !== connects || ep.state.replId === null || checksSinceRead >= REPLICATION_REFRESH_CHECKS) {
        const [role, r] = await bounded(Promise.all([client.role(), client.replication()]))
        report = parseRole(role)
        repl = r
      } else {
        report = parseRole(await bounded(client.role()))
        if (historyMayHaveChanged(last, report)) repl = await bounded(client.replication())
      }
      last = report
      if (repl === null) {
        checksSinceRead++
        return report
      }
      readOn = connects
      checksSinceRead = 0
      // A new replication history (restart without persistence, failover): offsets restart, so
      // the old ones must not linger as if they were ahead.
      if (repl.replId !== ep.state.replId) {
        ep.state.offset = 0
        ep.state.replicaAcks.clear()
      }
      ep.state.replId = repl.replId
      return report
    },
  }
}
