// Active health checks: every endpoint is asked ROLE on a jittered interval (default 2 s).
// ROLE tells the role (so a failover is followed without any annotation change), the replication
// offset and, on replicas, the link to the primary; a primary's ROLE also lists each replica's
// acknowledged offset. Results go into EndpointState; changes are emitted as events.
//
// Cost that falls per endpoint as endpoints grow: all checks run from one timer (a queue ordered
// by due time, fired at most every TICK_MS and at most MAX_PER_TICK checks per turn), and the
// checks per second over all endpoints are capped (maxChecksPerSecond): with n endpoints the
// interval is max(intervalMs, n / maxChecksPerSecond s), so small deployments keep the 2 s and
// 5,000 endpoints at 500/s are checked every 10 s. Failures are still seen at once: a connection
// that closes marks its endpoint down without waiting for a check (markDown), transport failures
// of requests open its breaker, and a connection is checked as soon as it is ready (checkNow). An
// endpoint whose connection is not up is not checked at all (the check would only fail the same
// way). When the interval stretches, first checks are spread over it instead of all at once.
// A check that timed out behind a backlog on a live connection (BusyCheckError: replies kept
// arriving) counts neither way: an overloaded gateway must not mark a healthy Redis down.
// No timers or I/O until start().

import { performance } from 'node:perf_hooks'
import { BusyCheckError } from '../core/errors.js'
import { endpointId } from '../core/topology.js'
import type { EndpointState } from './endpoint-state.js'
import { type RoleReport, parseRole } from '../core/role.js'

export interface HealthTarget {
  readonly id: string
  readonly state: EndpointState
  /**
   * Sends ROLE; resolves to its reply as the connection hands it over, or already parsed (a
   * RoleReport from parseRole); rejects on transport failure or timeout.
   */
  role(): Promise<unknown>
  /**
   * Whether a check can be sent now (its connection is up). While false, scheduled checks are
   * skipped: the closed connection already marked the endpoint down, and its next connect brings
   * an immediate check. Absent: always.
   */
  connected?(): boolean
}

export interface HealthCheckerOptions {
  readonly intervalMs: number
  /** Fraction of the interval added or removed at random, so checks do not synchronise. */
  readonly jitter: number
  /** Consecutive failed checks before an endpoint is marked unhealthy. */
  readonly unhealthyAfter: number
  /**
   * Checks per second over all endpoints at most: beyond intervalMs x this many endpoints the
   * interval stretches. A function: read at each scheduling (a reload applies at once).
   */
  readonly maxChecksPerSecond: number | (() => number)
  readonly random: () => number
  /** Wall clock for EndpointState.lastCheckMs. */
  readonly now: () => number
  /** Monotonic clock the checks are scheduled by; default performance.now. */
  readonly monotonic?: () => number
  readonly onChange: (target: HealthTarget, change: HealthChange) => void
}

export type HealthChange =
  | { readonly kind: 'up' }
  | { readonly kind: 'down'; readonly reason: string }
  | { readonly kind: 'role'; readonly from: string; readonly to: string }
  /** Every successful check, after the state was updated (lag and offsets may have moved). */
  | { readonly kind: 'checked' }

export const HEALTH_DEFAULTS = { intervalMs: 2000, jitter: 0.2, unhealthyAfter: 1, maxChecksPerSecond: 500 } as const

/**
 * Checks due within this long of each other run in the same timer callback: their replies then
 * arrive together too, and one wake-up of the process serves many (5,000 endpoints at 500 checks/s:
 * 8.2-8.7 % of a core with a 10 ms tick, 5.6-5.9 % with 100 ms; bench/README.md "Start-up and
 * health checks at scale"). A check runs at most half of it early and a tick late.
 */
export const TICK_MS = 100
/** Checks started in one timer callback at most; the rest follow in the next turn. */
export const MAX_PER_TICK = 200

/** One endpoint's place in the schedule. */
interface Entry {
  readonly target: HealthTarget
  /** When its next scheduled check is due (monotonic ms). */
  due: number
  /** Its index in the heap; -1 while not queued (its check runs, or the checker is stopped). */
  index: number
}

/** A reply that parseRole already made into a report (HealthTarget.role may hand either). */
function report(reply: unknown): RoleReport {
  if (!Array.isArray(reply) && typeof reply === 'object' && reply !== null && Array.isArray((reply as RoleReport).replicas)) return reply as RoleReport
  return parseRole(reply)
}

export class HealthChecker {
  private readonly entries = new Map<string, Entry>()
  /** Entries waiting for their next check, a binary min-heap by `due`. */
  private readonly heap: Entry[] = []
  private timer: NodeJS.Timeout | null = null
  /** When the armed timer fires (monotonic ms), Infinity when none is armed. */
  private timerAt = Infinity
  private lastTick = -Infinity
  private running = false
  private readonly clock: () => number
  private readonly fire = (): void => this.tick()

  constructor(private readonly opts: HealthCheckerOptions) {
    this.clock = opts.monotonic ?? (() => performance.now())
  }

  start(): void {
    this.running = true
    for (const e of this.entries.values()) this.enqueue(e, this.firstDelay())
  }

  stop(): void {
    this.running = false
    this.disarm()
    for (const e of this.heap) e.index = -1
    this.heap.length = 0
  }

  /** Starts checking an endpoint (when running: at once, or within the first interval when over the budget). */
  add(t: HealthTarget): void {
    const prev = this.entries.get(t.id)
    if (prev !== undefined) this.dequeue(prev)
    const e: Entry = { target: t, due: 0, index: -1 }
    this.entries.set(t.id, e)
    if (this.running) this.enqueue(e, this.firstDelay())
  }

  /** Stops checking an endpoint. */
  remove(id: string): void {
    const e = this.entries.get(id)
    if (e === undefined) return
    this.entries.delete(id)
    this.dequeue(e)
  }

  /**
   * Checks an endpoint now (e.g. right after its connection became ready); its next scheduled
   * check comes an interval after this one.
   */
  checkNow(id: string): Promise<void> {
    const e = this.entries.get(id)
    if (e === undefined) return Promise.resolve()
    if (this.running && e.index >= 0) this.enqueue(e, this.nextDelay())
    return this.check(e.target)
  }

  /** Passive signal (the connection closed): unhealthy at once, without waiting for a check. */
  markDown(id: string, reason: string): void {
    const t = this.entries.get(id)?.target
    if (!t) return
    t.state.lastError = reason
    if (!t.state.healthy) return
    t.state.healthy = false
    this.opts.onChange(t, { kind: 'down', reason })
  }

  /** Checks one endpoint now (also used right after a connection becomes ready). */
  async check(t: HealthTarget): Promise<void> {
    let r: RoleReport
    try {
      r = report(await t.role())
    } catch (err) {
      if (this.entries.get(t.id)?.target !== t) return
      // A check stuck behind a backlog on a live connection tells nothing either way.
      if (err instanceof BusyCheckError) t.state.lastError = err.message
      else this.fail(t, (err as Error).message)
      return
    }
    // A check that was in flight when the endpoint was removed must not revive it.
    if (this.entries.get(t.id)?.target === t) this.apply(t, r)
  }

  /** The interval now: intervalMs, or longer when the endpoints would need more than maxChecksPerSecond. */
  intervalMs(): number {
    const { intervalMs, maxChecksPerSecond } = this.opts
    const budget = typeof maxChecksPerSecond === 'function' ? maxChecksPerSecond() : maxChecksPerSecond
    return budget > 0 ? Math.max(intervalMs, (1000 * this.entries.size) / budget) : intervalMs
  }

  nextDelay(): number {
    const { jitter, random } = this.opts
    return Math.max(1, Math.round(this.intervalMs() * (1 - jitter + 2 * jitter * random())))
  }

  /** An endpoint's first check: at once within the budget; spread over the interval beyond it. */
  private firstDelay(): number {
    const interval = this.intervalMs()
    return interval > this.opts.intervalMs ? Math.round(this.opts.random() * interval) : 0
  }

  /** Runs the checks that are due, MAX_PER_TICK at most (the rest in the next turn), and arms the timer for the next. */
  private tick(): void {
    this.timer = null
    this.timerAt = Infinity
    const now = this.clock()
    // Checks due within the tick run now: the next tick is TICK_MS away.
    const horizon = now + TICK_MS / 2
    let n = 0
    for (; n < MAX_PER_TICK && this.heap.length > 0 && this.heap[0]!.due <= horizon; n++) {
      const e = this.pop()
      const t = e.target
      if (t.connected !== undefined && !t.connected()) {
        // Not connected: nothing to learn (the close marked it down; its connect checks it).
        this.enqueue(e, this.nextDelay())
        continue
      }
      void this.check(t).finally(() => {
        if (this.running && this.entries.get(t.id) === e && e.index < 0) this.enqueue(e, this.nextDelay())
      })
    }
    // Stopped by the cap: the rest go in the next turn, not a tick later.
    this.lastTick = n === MAX_PER_TICK ? -Infinity : now
    this.arm()
  }

  private enqueue(e: Entry, delayMs: number): void {
    e.due = this.clock() + delayMs
    if (e.index >= 0) this.fix(e.index)
    else {
      e.index = this.heap.length
      this.heap.push(e)
      this.up(e.index)
    }
    this.arm()
  }

  private dequeue(e: Entry): void {
    const i = e.index
    if (i < 0) return
    e.index = -1
    const last = this.heap.pop()!
    if (i < this.heap.length) {
      this.heap[i] = last
      last.index = i
      this.fix(i)
    }
    if (this.heap.length === 0) this.disarm()
  }

  private pop(): Entry {
    const top = this.heap[0]!
    this.dequeue(top)
    return top
  }

  /** The timer for the earliest due check: not before TICK_MS after the last tick (checks batch). */
  private arm(): void {
    if (!this.running || this.heap.length === 0) return this.disarm()
    const at = Math.max(this.heap[0]!.due, this.lastTick + TICK_MS)
    if (this.timer !== null && this.timerAt <= at) return
    this.disarm()
    this.timerAt = at
    this.timer = setTimeout(this.fire, Math.max(0, at - this.clock()))
    this.timer.unref()
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.timerAt = Infinity
  }

  private fix(i: number): void {
    this.up(i)
    this.down(i)
  }

  private up(i: number): void {
    const h = this.heap
    const e = h[i]!
    while (i > 0) {
      const p = (i - 1) >> 1
      if (h[p]!.due <= e.due) break
      h[i] = h[p]!
      h[i]!.index = i
      i = p
    }
    h[i] = e
    e.index = i
  }

  private down(i: number): void {
    const h = this.heap
    const e = h[i]!
    const n = h.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && h[r]!.due < h[l]!.due ? r : l
      if (h[c]!.due >= e.due) break
      h[i] = h[c]!
      h[i]!.index = i
      i = c
    }
    h[i] = e
    e.index = i
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
    // A new map only when there is something to say (most checks are of primaries without replicas).
    if (r.replicas.length > 0 || s.replicaAcks.size > 0) s.replicaAcks = new Map(r.replicas.map((x) => [endpointId(x.host, x.port), x.offset]))
    if (!s.healthy) {
      s.healthy = true
      this.opts.onChange(t, { kind: 'up' })
    }
    this.opts.onChange(t, { kind: 'checked' })
  }
}
