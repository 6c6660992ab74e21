// Log lines about the pool's Redis connections: a connection that closes or cannot be made, the
// command tables learned from the servers, and the ACL users for token levels. One line per
// distinct reason while it lasts, so a bad certificate or password says so without a line per
// reconnect attempt. The pool calls these through its hooks (the gateway wires them in).
// At scale (thousands of endpoints starting, or failing together) the per-endpoint lines beyond
// BURST_LINES a second go to debug with one count line (log-burst.ts), and a command table that
// another endpoint already reported is logged at debug: the first endpoint with it says it at info.

import type { Logger } from 'pino'
import type { AclState } from '../upstream/acl-users.js'
import type { LearnedTable } from '../routing/command-table.js'
import type { PooledEndpoint } from '../upstream/pool.js'
import { LogBurst } from './log-burst.js'

export class PoolLogs {
  /** Per endpoint, the last connection failure logged (until the connection is ready again). */
  private readonly failures = new Map<string, string>()
  /** The same per endpoint for the connections of the Redis users tokens run as, by user. */
  private readonly userFailures = new Map<string, Map<string, string>>()
  /** Command tables logged at info, by fingerprint (a few: one per server version and module set). */
  private readonly tables = new Set<string>()
  private readonly burst: LogBurst

  constructor(private readonly logger: Logger) {
    this.burst = new LogBurst(logger)
  }

  ready(ep: PooledEndpoint): void {
    this.failures.delete(ep.id)
  }

  removed(ep: PooledEndpoint): void {
    this.failures.delete(ep.id)
    this.userFailures.delete(ep.id)
  }

  closed(ep: PooledEndpoint, reason: string): void {
    if (this.failures.get(ep.id) === reason) return
    this.failures.set(ep.id, reason)
    this.burst.log('Redis connections closed or not made', 'warn', { endpoint: ep.id, reason }, 'Redis connection closed or could not be made; reconnecting')
  }

  userClosed(ep: PooledEndpoint, user: string, reason: string): void {
    let seen = this.userFailures.get(ep.id)
    if (seen === undefined) this.userFailures.set(ep.id, (seen = new Map()))
    if (seen.get(user) === reason) return
    seen.set(user, reason)
    this.burst.log(
      'Redis connections of token users closed or not made',
      'warn',
      { endpoint: ep.id, redisUser: user, reason },
      'Redis connection of a token user closed or could not be made; reconnecting',
    )
  }

  /** One line per change of the learned table, not per reconnect. */
  commands(ep: PooledEndpoint, table: LearnedTable | null, error: Error | null): void {
    if (table !== null) {
      const fields = { endpoint: ep.id, commands: table.specs.size, moduleCommands: table.moduleCommands, fingerprint: table.fingerprint }
      if (this.tables.has(table.fingerprint)) this.logger.debug(fields, 'learned the Redis command table')
      else {
        if (this.tables.size >= 1_000) this.tables.clear()
        this.tables.add(table.fingerprint)
        this.logger.info(fields, 'learned the Redis command table')
      }
    } else if (error !== null) {
      this.burst.log(
        'Redis command tables not read',
        'warn',
        { endpoint: ep.id, reason: error.message },
        'cannot read the Redis command table (COMMAND INFO); commands are classified with the built-in table',
      )
    }
  }

  acl(ep: PooledEndpoint, state: AclState): void {
    if (state.kind === 'unmanaged') {
      this.burst.log(
        'endpoints without Redis ACL users',
        'warn',
        { endpoint: ep.id, reason: state.reason },
        'cannot create Redis ACL users on this endpoint: tokens run as the gateway user, and scripts and functions are refused to non-admin tokens',
      )
    } else if (state.kind === 'managed') {
      this.burst.log(
        'endpoints with Redis ACL users in place',
        'info',
        { endpoint: ep.id, users: Object.values(state.users).map((u) => u.name) },
        'Redis ACL users for token levels are in place',
      )
    }
  }
}
