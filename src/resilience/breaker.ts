// Per-endpoint circuit breaker: a closed / open / half-open state machine written as a
// discriminated union handled by `switch`, so each state carries only its own fields and the
// compiler checks every transition (cockatiel's CircuitBreakerPolicy keeps its inner state the
// same way).
//
// - closed: everything is admitted. Opens after `consecutiveFailures` transport failures in a row,
//   or when the failure share over a sliding window exceeds `failureRateThreshold` with at least
//   `minimumVolume` calls in it (the window catches an endpoint that fails every other call, which
//   never makes 5 in a row).
// - open: nothing is admitted until `until`; the open time is baseOpenMs x 2^(openings - 1),
//   capped at maxOpenMs, so an endpoint that keeps failing its probes is probed less and less often.
// - half-open: at most `halfOpenProbes` requests at a time are admitted as probes. A probe success
//   closes (and forgets `openings`); a probe failure, or a probe not reported within
//   `probeTimeoutMs`, reopens for twice as long.
//
// Time only moves when the breaker is asked: open -> half-open and the probe timeout are checked
// against the injected clock on every call (no timers, so nothing to start or stop and nothing
// keeps the process alive). Only transport failures are reported to it (`countsAsBreakerFailure`):
// a WRONGTYPE reply proves the endpoint is alive.

import { GatewayError, RedisReplyError } from '../core/errors.js'
import { failureKind } from '../core/failures.js'
import { RESILIENCE_DEFAULTS } from './defaults.js'
import { RollingCounts } from './window.js'

export type BreakerState =
  | { readonly kind: 'closed'; readonly consecutiveFailures: number }
  | { readonly kind: 'open'; readonly openedAt: number; readonly until: number; readonly openings: number }
  | { readonly kind: 'half-open'; readonly probesInFlight: number; readonly openings: number }

export interface BreakerOptions {
  /** Transport failures in a row that open the breaker. Default 5. */
  consecutiveFailures: number
  /** Failure share in the window that opens the breaker when exceeded (strictly). Default 0.5. */
  failureRateThreshold: number
  /** Length of the failure-rate window (10 buckets). Default 10 s. */
  windowMs: number
  /** Calls needed in the window before the rate is looked at. Default 20. */
  minimumVolume: number
  /** First open period. Default 1 s. */
  baseOpenMs: number
  /** Longest open period. Default 30 s. */
  maxOpenMs: number
  /** Concurrent probes admitted in half-open. Default 1. */
  halfOpenProbes: number
  /** A probe unreported after this long counts as failed. Default 1 s. */
  probeTimeoutMs: number
}

export const BREAKER_DEFAULTS: Readonly<BreakerOptions> = RESILIENCE_DEFAULTS.breaker

/** Why a transition happened; stable strings, fit for logs, span events and metric labels. */
export type BreakerTransitionReason =
  | 'consecutive-failures'
  | 'failure-rate'
  | 'open-elapsed'
  | 'probe-succeeded'
  | 'probe-failed'
  | 'probe-timeout'
  | 'role-changed'

export type BreakerTransitionListener = (
  from: BreakerState['kind'],
  to: BreakerState['kind'],
  reason: BreakerTransitionReason,
) => void

export type AcquireResult =
  | { readonly ok: true; readonly probe: boolean }
  | { readonly ok: false; readonly retryAfterMs: number }

// Shared admission results: the hot path (closed) allocates nothing.
const ADMITTED: AcquireResult = Object.freeze({ ok: true, probe: false })
const ADMITTED_PROBE: AcquireResult = Object.freeze({ ok: true, probe: true })
const CLOSED_CLEAN: BreakerState = Object.freeze({ kind: 'closed', consecutiveFailures: 0 })

/** Buckets of the failure-rate ring: the window slides in steps of windowMs / 10. */
const WINDOW_BUCKETS = 10
const CALLS = 0
const FAILURES = 1

export class CircuitBreaker {
  private readonly opts: Readonly<BreakerOptions>
  private current: BreakerState = CLOSED_CLEAN
  private readonly window: RollingCounts
  /**
   * Deadlines of the probes in flight, oldest first (length === probesInFlight in half-open).
   * Probes carry no identity (the token is a boolean), so a `release` retires the oldest deadline;
   * with the default single probe that is exact.
   */
  private readonly probeDeadlines: number[] = []
  private tripped: number | undefined

  constructor(
    opts: Partial<BreakerOptions>,
    private readonly clock: () => number,
    private readonly onTransition?: BreakerTransitionListener,
  ) {
    const o: BreakerOptions = { ...BREAKER_DEFAULTS }
    // Explicit `undefined` (an unset config key) keeps the default.
    for (const k of Object.keys(o) as (keyof BreakerOptions)[]) if (opts[k] !== undefined) o[k] = opts[k]
    validate(o)
    this.opts = o
    this.window = new RollingCounts(o.windowMs, WINDOW_BUCKETS, 2)
  }

  /** The current state (moves open -> half-open, and times out probes, as the clock says). */
  get state(): BreakerState {
    // Time changes nothing in closed: no clock read (selection asks several times per request).
    if (this.current.kind !== 'closed') this.advance(this.clock())
    return this.current
  }

  /**
   * Clock time when the breaker last left closed (the start of this failure episode), or
   * undefined while closed. The outlier cap keeps the longest-tripped endpoints ejected.
   */
  get trippedAt(): number | undefined {
    if (this.current.kind !== 'closed') this.advance(this.clock())
    return this.tripped
  }

  /**
   * May a request be sent now? In half-open this reserves one of the probe slots: the caller must
   * pass `probe` back to exactly one of onSuccess, onFailure or release.
   */
  tryAcquire(): AcquireResult {
    if (this.current.kind === 'closed') return ADMITTED
    const now = this.clock()
    this.advance(now)
    // Time only moves open -> half-open -> open (a probe timeout): never to closed.
    const s = this.current
    switch (s.kind) {
      case 'open':
        return { ok: false, retryAfterMs: s.until - now }
      case 'half-open':
        if (s.probesInFlight >= this.opts.halfOpenProbes) {
          return { ok: false, retryAfterMs: Math.max(0, this.earliestProbeDeadline() - now) }
        }
        this.probeDeadlines.push(now + this.opts.probeTimeoutMs)
        this.current = { kind: 'half-open', probesInFlight: s.probesInFlight + 1, openings: s.openings }
        return ADMITTED_PROBE
    }
  }

  /**
   * The endpoint answered (any reply, Redis error replies included: they prove it is alive).
   * `probe` is the value tryAcquire returned.
   */
  onSuccess(probe: boolean): void {
    const now = this.clock()
    this.advance(now)
    const s = this.current
    switch (s.kind) {
      case 'closed':
        this.window.add(CALLS, now)
        if (s.consecutiveFailures !== 0) this.current = CLOSED_CLEAN
        return
      case 'open':
        // Sent before the breaker opened: says nothing about now.
        return
      case 'half-open':
        // Only a probe of this half-open period decides; a late non-probe answer was sent before
        // the breaker opened. (A probe from an earlier period was timed out before this one began.)
        if (probe && s.probesInFlight > 0) this.close('probe-succeeded')
        return
    }
  }

  /** A transport failure (see countsAsBreakerFailure). `probe` is the value tryAcquire returned. */
  onFailure(probe: boolean): void {
    const now = this.clock()
    this.advance(now)
    const s = this.current
    switch (s.kind) {
      case 'closed': {
        this.window.add(CALLS, now)
        this.window.add(FAILURES, now)
        const consecutive = s.consecutiveFailures + 1
        if (consecutive >= this.opts.consecutiveFailures) {
          this.open(now, 0, 'consecutive-failures')
          return
        }
        const calls = this.window.sum(CALLS, now)
        if (calls >= this.opts.minimumVolume && this.window.sum(FAILURES, now) / calls > this.opts.failureRateThreshold) {
          this.open(now, 0, 'failure-rate')
          return
        }
        this.current = { kind: 'closed', consecutiveFailures: consecutive }
        return
      }
      case 'open':
        return
      case 'half-open':
        if (probe && s.probesInFlight > 0) this.open(now, s.openings, 'probe-failed')
        return
    }
  }

  /**
   * An admitted request was not sent after all (refused by the overload limit, the client went
   * away first...): frees its probe slot without a verdict. A no-op for non-probes.
   */
  release(probe: boolean): void {
    const now = this.clock()
    this.advance(now)
    const s = this.current
    switch (s.kind) {
      case 'closed':
      case 'open':
        return
      case 'half-open':
        if (!probe || s.probesInFlight === 0) return
        this.probeDeadlines.shift()
        this.current = { kind: 'half-open', probesInFlight: s.probesInFlight - 1, openings: s.openings }
        return
    }
  }

  /**
   * Earliest clock time at which a request may be admitted: now when closed or a probe slot is
   * free; `until` when open; when every probe slot is taken, the first probe's deadline (by then
   * it has either closed the breaker or reopened it). For Retry-After.
   */
  nextAttemptAt(): number {
    const now = this.clock()
    this.advance(now)
    const s = this.current
    switch (s.kind) {
      case 'closed':
        return now
      case 'open':
        return s.until
      case 'half-open':
        return s.probesInFlight < this.opts.halfOpenProbes ? now : this.earliestProbeDeadline()
    }
  }

  /** Applies what the passing of time alone changes: open -> half-open, and probe timeouts. */
  private advance(now: number): void {
    const s = this.current
    switch (s.kind) {
      case 'closed':
        return
      case 'open':
        if (now >= s.until) this.transition({ kind: 'half-open', probesInFlight: 0, openings: s.openings }, 'open-elapsed')
        return
      case 'half-open':
        if (s.probesInFlight > 0 && now >= this.earliestProbeDeadline()) this.open(now, s.openings, 'probe-timeout')
        return
    }
  }

  private open(now: number, previousOpenings: number, reason: BreakerTransitionReason): void {
    const openings = previousOpenings + 1
    if (this.tripped === undefined) this.tripped = now
    this.window.clear()
    this.probeDeadlines.length = 0
    this.transition({ kind: 'open', openedAt: now, until: now + openDurationMs(this.opts, openings), openings }, reason)
  }

  /**
   * Closes the breaker whatever its state, for new information that outdates the failures: the
   * endpoint's role changed (the READONLY replies that opened it were about its old role).
   */
  reset(reason: BreakerTransitionReason = 'role-changed'): void {
    if (this.current.kind === 'closed' && this.current.consecutiveFailures === 0) {
      this.window.clear()
      return
    }
    this.close(reason)
  }

  private close(reason: BreakerTransitionReason): void {
    this.tripped = undefined
    // Outcomes from before the outage would otherwise count against the recovered endpoint.
    this.window.clear()
    this.probeDeadlines.length = 0
    this.transition(CLOSED_CLEAN, reason)
  }

  private transition(next: BreakerState, reason: BreakerTransitionReason): void {
    const from = this.current.kind
    this.current = next
    this.onTransition?.(from, next.kind, reason)
  }

  private earliestProbeDeadline(): number {
    let min = Number.POSITIVE_INFINITY
    for (const d of this.probeDeadlines) if (d < min) min = d
    return min
  }
}

/** How long the breaker stays open after its n-th consecutive opening (n >= 1). */
export function openDurationMs(opts: Pick<BreakerOptions, 'baseOpenMs' | 'maxOpenMs'>, openings: number): number {
  // The exponent is clamped so that 2^n stays finite however long an endpoint stays down.
  const factor = 2 ** Math.min(Math.max(openings - 1, 0), 52)
  return Math.min(opts.maxOpenMs, opts.baseOpenMs * factor)
}

/**
 * Does this rejection say the endpoint is unhealthy? Mirrors the upstream layer's `failureKind`:
 * timeouts, refused or lost connections and busy-server replies (LOADING, MASTERDOWN, READONLY
 * from a demoted primary) count; Redis reply errors (WRONGTYPE, ERR syntax...) never do, nor do a
 * Redis Cluster's TRYAGAIN and CLUSTERDOWN (the cluster's state, not the node's health).
 *
 * Accepts the raw rejection of an attempt (RespConnection's errors, Redis error replies) or what
 * `toGatewayError` / `runCommand` / `runPipeline` made of it: TIMEOUT, UPSTREAMRESET and NOENDPOINT
 * (the endpoint was not connected, or answered LOADING/MASTERDOWN/...) count. Report only errors of
 * an attempt on this endpoint: a NOENDPOINT the router made because nothing was eligible has no
 * endpoint, and an OVERLOADED refusal is the gateway's own limit, not the endpoint's health
 * (Envoy's local vs upstream results).
 */
export function countsAsBreakerFailure(err: unknown): boolean {
  if (err instanceof RedisReplyError) return false
  if (err instanceof GatewayError) {
    switch (err.code) {
      case 'TIMEOUT':
      case 'UPSTREAMRESET':
      case 'NOENDPOINT':
        return true
      default:
        return false
    }
  }
  switch (failureKind(err)) {
    case 'timeout':
    case 'unavailable':
    case 'reset':
    case 'busy-server':
      return true
    case 'reply':
      return false
  }
}

/** Whole seconds for a Retry-After header: rounded up, at least 1 (0 would invite a busy loop). */
export function retryAfterSeconds(atMs: number, nowMs: number): number {
  const s = Math.ceil((atMs - nowMs) / 1000)
  return Number.isFinite(s) && s > 1 ? s : 1
}

function validate(o: BreakerOptions): void {
  const check = (ok: boolean, key: keyof BreakerOptions, rule: string): void => {
    if (!ok) throw new RangeError(`breaker ${key} must be ${rule}, got ${o[key]}`)
  }
  check(Number.isInteger(o.consecutiveFailures) && o.consecutiveFailures >= 1, 'consecutiveFailures', 'an integer >= 1')
  check(o.failureRateThreshold > 0 && o.failureRateThreshold <= 1, 'failureRateThreshold', 'in (0, 1]')
  check(o.windowMs > 0 && Number.isFinite(o.windowMs), 'windowMs', 'a finite number > 0')
  check(Number.isInteger(o.minimumVolume) && o.minimumVolume >= 1, 'minimumVolume', 'an integer >= 1')
  check(o.baseOpenMs > 0 && Number.isFinite(o.baseOpenMs), 'baseOpenMs', 'a finite number > 0')
  check(o.maxOpenMs >= o.baseOpenMs && Number.isFinite(o.maxOpenMs), 'maxOpenMs', '>= baseOpenMs and finite')
  check(Number.isInteger(o.halfOpenProbes) && o.halfOpenProbes >= 1, 'halfOpenProbes', 'an integer >= 1')
  check(o.probeTimeoutMs > 0 && Number.isFinite(o.probeTimeoutMs), 'probeTimeoutMs', 'a finite number > 0')
}
