// Active health checks: every endpoint is asked ROLE on a jittered interval (default 2 s).
// ROLE tells the role (so a failover is followed without any annotation change), the replication
// offset and, on replicas, the link to the primary; a primary's ROLE also lists each replica's
// acknowledged offset. Results go into EndpointState; changes are emitted as events.
// No timers or I/O until start().

import { endpointId } from '../core/topology.js'
import type { EndpointState } from './endpoint-state.js'
import { type RoleReport, parseRole } from '../core/role.js'

export interface HealthTarget {
  readonly id: string
  readonly state: EndpointState
  /** Sends ROLE; rejects on transport failure or timeout. */
  role(): Promise<unknown>
}

export interface HealthCheckerOptions {
  readonly intervalMs: number
  /** Fraction of the interval added or removed at random, so checks do not synchronise. */
  readonly jitter: number
  /** Consecutive failed checks before an endpoint is marked unhealthy. */
  readonly unhealthyAfter: number
  readonly random: () => number
  readonly now: () => number
  readonly onChange: (target: HealthTarget, change: HealthChange) => void
}

export type HealthChange =
  | { readonly kind: 'up' }
  | { readonly kind: 'down'; readonly reason: string }
  | { readonly kind: 'role'; readonly from: string; readonly to: string }
  /** Every successful check, after the state was updated (lag and offsets may have moved). */
  | { readonly kind: 'checked' }

export const HEALTH_DEFAULTS = { intervalMs: 2000, jitter: 0.2, unhealthyAfter: 1 } as const

export class HealthChecker {
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly targets = new Map<string, HealthTarget>()
  private running = false

  constructor(private readonly opts: HealthCheckerOptions) {}

  start(): void {
    this.running = true
    for (const t of this.targets.values()) this.schedule(t, 0)
  }

  stop(): void {
    this.running = false
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  /** Starts checking an endpoint (at once when running). */
  add(t: HealthTarget): void {
    this.targets.set(t.id, t)
    if (this.running) this.schedule(t, 0)
  }

  /** Stops checking an endpoint. */
  remove(id: string): void {
    this.targets.delete(id)
    const timer = this.timers.get(id)
    if (timer) clearTimeout(timer)
    this.timers.delete(id)
  }

  /** Checks an endpoint now (e.g. right after its connection became ready). */
  checkNow(id: string): Promise<void> {
    const t = this.targets.get(id)
    return t ? this.check(t) : Promise.resolve()
  }

  /** Passive signal (the connection closed): unhealthy at once, without waiting for a check. */
  markDown(id: string, reason: string): void {
    const t = this.targets.get(id)
    if (!t) return
    t.state.lastError = reason
    if (!t.state.healthy) return
    t.state.healthy = false
    this.opts.onChange(t, { kind: 'down', reason })
  }

  /** Checks one endpoint now (also used right after a connection becomes ready). */
  async check(t: HealthTarget): Promise<void> {
    let report: RoleReport
    try {
      report = parseRole(await t.role())
    } catch (err) {
      if (this.targets.get(t.id) === t) this.fail(t, (err as Error).message)
      return
    }
    // A check that was in flight when the endpoint was removed must not revive it.
    if (this.targets.get(t.id) === t) this.apply(t, report)
  }

  private schedule(t: HealthTarget, delayMs: number): void {
    const prev = this.timers.get(t.id)
    if (prev) clearTimeout(prev)
    const timer = setTimeout(() => {
      void this.check(t).finally(() => {
        if (this.running && this.targets.get(t.id) === t) this.schedule(t, this.nextDelay())
      })
    }, delayMs)
    timer.unref()
    this.timers.set(t.id, timer)
  }

  nextDelay(): number {
    const { intervalMs, jitter, random } = this.opts
    return Math.max(1, Math.round(intervalMs * (1 - jitter + 2 * jitter * random())))
  }

  private fail(t: HealthTarget, reason: string): void {
    const s = t.state
    s.consecutiveFailures++
    s.lastCheckMs = this.opts.now()
    s.lastError = reason
    if (s.healthy && s.consecutiveFailures >= this.opts.unhealthyAfter) {
      s.healthy = false
      this.opts.onChange(t, { kind: 'down', reason })
    }
  }

  private apply(t: HealthTarget, r: RoleReport): void {
    const s = t.state
    s.lastCheckMs = this.opts.now()
    s.consecutiveFailures = 0
    s.lastError = null
    if (s.role !== r.role) {
      const from = s.role
      s.role = r.role
      this.opts.onChange(t, { kind: 'role', from, to: r.role })
    }
    if (r.offset > s.offset || r.role === 'replica') s.offset = r.offset
    s.primaryHost = r.primaryHost
    s.primaryPort = r.primaryPort
    s.link = r.link
    s.replicaAcks = new Map(r.replicas.map((x) => [endpointId(x.host, x.port), x.offset]))
    if (!s.healthy) {
      s.healthy = true
      this.opts.onChange(t, { kind: 'up' })
    }
    this.opts.onChange(t, { kind: 'checked' })
  }
}
