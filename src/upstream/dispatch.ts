// Sends one request to an instance with the resilience rules (README "Resilience"):
// - writes (and transactions, and subscriptions) go to the primary once: never sent twice;
// - a read that fails on transport (timeout, lost or refused connection, LOADING...) is retried at
//   most once, on another endpoint, within the instance's retry budget;
// - with `hedge-after`, a read still unanswered after that delay is also sent to a second eligible
//   endpoint, within the hedge budget; the first good reply wins;
// - every request ends by its deadline (command timeout plus a small margin), even when its
//   command still waits behind a stalled batch on the connection;
// - at most limits.maxInflightPerEndpoint attempts are in flight per endpoint; more wait for a
//   slot in arrival order (slot-queue.ts), within their own time, and one whose time runs out
//   while waiting is answered 503 without ever being sent. Only a full queue (limits.maxPending-
//   PerEndpoint, counting the requests that wait for the endpoint's connection) refuses at once.
// A Redis error reply is an answer (it is returned, not retried).

import { performance } from 'node:perf_hooks'
import { GatewayError, NoEndpointError, OverloadedError, RedisReplyError, TimeoutError, UpstreamResetError } from '../core/errors.js'
import type { EventHub, TraceScope } from '../core/events.js'
import type { ExecContext } from './execute.js'
import type { PooledEndpoint } from './pool.js'
import type { EndpointState } from '../resilience/endpoint-state.js'
import type { Resolved, Routed, Router } from '../selection/router.js'
import { waitingFor, whenConnected } from './pool.js'
import { SlotWaiter } from './slot-queue.js'
import type { SyncPosition } from '../routing/sync-token.js'
import type { RequestLease } from '../resilience/byte-budget.js'
import { GATEWAY_IDENTITY, type Identity } from '../core/identity.js'
import type { Deadlines } from './deadlines.js'

export interface DispatchOptions {
  readonly router: Router<PooledEndpoint>
  readonly events: EventHub
  /** The request's deadline: command timeout plus `deadlineMarginMs`. */
  readonly commandTimeoutMs: number
  readonly deadlineMarginMs: number
  /**
   * limits.maxPendingPerEndpoint: requests that may wait per endpoint, for its connection or for
   * one of its in-flight slots (limits.maxInflightPerEndpoint, PooledEndpoint.slots).
   */
  readonly maxPendingPerEndpoint: number
  /** Attempt timeouts, one set per gateway (deadlines.ts). */
  readonly deadlines: Deadlines
}

export interface DispatchRequest {
  readonly resolved: Resolved
  readonly kind: 'read' | 'write' | 'subscribe'
  readonly token: SyncPosition | null
  readonly clientId: string | null
  /** The request's tracing slot; null when tracing is off (then no selection events are built). */
  readonly scope?: TraceScope | null
  /** The request's memory lease, charged by every attempt's replies; null: uncharged. */
  readonly lease?: RequestLease | null
  /** The Redis user the request runs as; the gateway's own when absent. */
  readonly identity?: Identity
  /** The request runs a script or function (refused on endpoints whose ACL users are unmanaged). */
  readonly scripted?: boolean
}

/** Failures that say nothing about the request itself: the endpoint could not answer it. */
export function isRetryable(err: unknown): boolean {
  return err instanceof TimeoutError || err instanceof UpstreamResetError || err instanceof NoEndpointError
}

type Run<T> = (ep: PooledEndpoint, ctx: ExecContext) => Promise<T>

/**
 * Runs `run` on the endpoint(s) chosen for the request and settles with its value. A plain
 * function returning a promise, not an async one: an async function that returns a promise adopts
 * it through two more promise jobs and a `then` lookup, on every request. Synchronous failures
 * (no endpoint) become rejections all the same.
 */
export function dispatch<T>(o: DispatchOptions, req: DispatchRequest, run: Run<T>): Promise<T> {
  try {
    return start(o, req, run)
  } catch (err) {
    return Promise.reject(err)
  }
}

/** One request's dispatch: what its attempts share. */
interface Dispatching<T> {
  readonly o: DispatchOptions
  readonly req: DispatchRequest
  readonly run: Run<T>
  readonly instance: string
  readonly identity: Identity
  readonly scripted: boolean
  readonly scope: TraceScope | null
  /** Each attempt ends no later than this (performance.now() time). */
  readonly deadlineAt: number
}

/** Selection is synchronous (it throws when no endpoint can take the request); sending is not. */
function pick<T>(d: Dispatching<T>, exclude: readonly EndpointState[], attempt: 'first' | 'retry' | 'hedge'): Routed<PooledEndpoint> {
  const { o, req, scope } = d
  const resolved = req.resolved
  if (scope === null) return o.router.select(resolved, req.kind, req.kind === 'read' ? req.token : null, req.clientId, exclude)
  const startMs = performance.now()
  let chosen: Routed<PooledEndpoint>
  try {
    chosen = o.router.select(resolved, req.kind, req.kind === 'read' ? req.token : null, req.clientId, exclude)
  } catch (err) {
    emitSelect(o.events, scope, resolved, attempt, startMs, null, req.clientId, err)
    throw err
  }
  emitSelect(o.events, scope, resolved, attempt, startMs, chosen, req.clientId, null)
  return chosen
}

/**
 * One attempt on the chosen endpoint. It ends after the command timeout counted from when it was
 * handed over (the run arms that timer itself and accounts a timeout as a transport failure), and
 * no later than the request's deadline: a read then still has the deadline margin for its one retry.
 * Waiting, for the endpoint's connection and then for one of its in-flight slots, counts against
 * that time; an attempt whose time runs out while it waits is never sent.
 */
function send<T>(d: Dispatching<T>, chosen: Routed<PooledEndpoint>, first: boolean): Promise<T> {
  const { o, instance, identity } = d
  // The first attempt starts now: the whole command timeout (the deadline is later by the margin).
  const timeoutMs = first ? o.commandTimeoutMs : onGrid(Math.min(o.commandTimeoutMs, d.deadlineAt - performance.now()))
  const pooled = chosen.endpoint.pooled
  let ready: PooledEndpoint | Promise<PooledEndpoint>
  try {
    ready = whenConnected(instance, pooled, o.maxPendingPerEndpoint, identity, d.scripted)
  } catch (err) {
    // Never sent: give the probe slot back without a verdict; the health checker judges it.
    chosen.endpoint.state.breaker.release(chosen.probe)
    return Promise.reject(err)
  }
  if (ready === pooled) {
    if (pooled.slots.tryAcquire()) return occupied(d, chosen, pooled, timeoutMs)
    return queued(d, chosen, pooled, timeoutMs, true)
  }
  // Waiting for the connection counts against the attempt's time.
  const waitFrom = performance.now()
  return (ready as Promise<PooledEndpoint>).then(
    (ep) => {
      const left = onGrid(timeoutMs - (performance.now() - waitFrom))
      if (ep.slots.tryAcquire()) return occupied(d, chosen, ep, left)
      // Already counted among the endpoint's waiting requests (for its connection): not refused now.
      return queued(d, chosen, ep, left, false)
    },
    (err: unknown) => {
      chosen.endpoint.state.breaker.release(chosen.probe)
      throw err
    },
  )
}

/**
 * What is left of an attempt's time once it has waited, rounded down to a 10 ms grid (at least
 * 1 ms). The attempt timers (deadlines.ts) keep one list and one timer per distinct duration, and
 * a list lets go of its settled attempts only as it advances: with a duration of its own for every
 * attempt that waited, thousands of lists each held their settled attempts (and replies) until
 * their timers fired.
 */
export function onGrid(ms: number): number {
  return ms >= 2 * GRID_MS ? ms - (ms % GRID_MS) : Math.max(1, Math.floor(ms))
}
const GRID_MS = 10

/** Runs the attempt in the slot it holds; the slot is given back when the attempt settles. */
function occupied<T>(d: Dispatching<T>, chosen: Routed<PooledEndpoint>, ep: PooledEndpoint, timeoutMs: number): Promise<T> {
  const { o } = d
  const ctx: ExecContext = { instance: d.instance, role: chosen.role, events: o.events, probe: chosen.probe, scope: d.scope, timeoutMs, deadlines: o.deadlines, lease: d.req.lease ?? null, identity: d.identity }
  let p: Promise<T>
  try {
    p = d.run(ep, ctx)
  } catch (err) {
    p = Promise.reject(err)
  }
  // One reaction, with the queue's own callback: no closure per request.
  p.then(ep.slots.release, ep.slots.release)
  return p
}

/**
 * Every in-flight slot of the endpoint is taken (or others already wait): the attempt, which has
 * `timeoutMs` left, waits for one, first come first served. It is sent only with at least
 * sendFloorMs() of that time left, so it waits at most the rest; one that gets no slot by then is
 * answered 503 OVERLOADED, never sent (a slot that frees at the last moment must not carry a write
 * that then times out: 504, "may have run"). `bounded`: refused at once (503 OVERLOADED, and the
 * client's connection closed after the reply) when limits.maxPendingPerEndpoint requests already
 * wait; false for an attempt that waited for the connection, and so was counted among them already.
 */
function queued<T>(d: Dispatching<T>, chosen: Routed<PooledEndpoint>, ep: PooledEndpoint, timeoutMs: number, bounded: boolean): Promise<T> {
  const slots = ep.slots
  const floorMs = sendFloorMs(d.o.commandTimeoutMs)
  const full = bounded && waitingFor(ep) >= d.o.maxPendingPerEndpoint
  if (full || timeoutMs - floorMs < 1) {
    chosen.endpoint.state.breaker.release(chosen.probe)
    const why = full
      ? `${d.o.maxPendingPerEndpoint} waiting (limits.maxPendingPerEndpoint)`
      : `too little time left to wait for a slot`
    return Promise.reject(
      new OverloadedError(`instance '${d.instance}': endpoint ${ep.id} has ${slots.max} requests in flight (limits.maxInflightPerEndpoint) and ${why}`, {
        retryAfterS: 1,
        // As Envoy's overload manager turns keep-alive off: a client that sends the next request
        // at once on the same connection (a closed loop) would keep the event loop reading
        // requests only to refuse them, and Redis's replies, which free the slots, are read late
        // (bench/README.md). A new connection waits in the listen queue instead.
        closeConnection: full,
      }),
    )
  }
  // A waiting request's bytes count against limits.inflightBytes, its free allowance included:
  // 10,000 waiting requests of 64 KiB each would otherwise hold 640 MiB beyond the budget.
  const lease = d.req.lease ?? null
  if (lease !== null && !lease.chargeAll()) {
    chosen.endpoint.state.breaker.release(chosen.probe)
    return Promise.reject(
      new OverloadedError(
        `instance '${d.instance}': endpoint ${ep.id} has ${slots.max} requests in flight (limits.maxInflightPerEndpoint), and the requests waiting hold as many bytes as limits.inflightBytes allows; not sent`,
        { retryAfterS: 1 },
      ),
    )
  }
  let w: QueuedAttempt<T> | undefined
  const p = new Promise<T>((resolve, reject) => {
    w = new QueuedAttempt(d, chosen, ep, floorMs, resolve, reject)
  })
  slots.wait(w!, timeoutMs - floorMs)
  return p
}

/**
 * The least time an attempt that waited for a slot is sent with: a quarter of the command
 * timeout, at most 100 ms (Redis answers in well under 1 ms; a busy gateway reads the reply a
 * turn of its event loop later, tens of ms).
 */
export function sendFloorMs(commandTimeoutMs: number): number {
  return Math.max(1, Math.min(100, Math.floor(commandTimeoutMs / 4)))
}

/** An attempt waiting for a slot (slot-queue.ts): one object per waiting request, no closures. */
class QueuedAttempt<T> extends SlotWaiter {
  constructor(
    private d: Dispatching<T> | null,
    private chosen: Routed<PooledEndpoint> | null,
    private ep: PooledEndpoint | null,
    /** Kept back from the wait for the attempt itself (sendFloorMs). */
    private readonly floorMs: number,
    private resolve: ((v: T) => void) | null,
    private reject: ((e: unknown) => void) | null,
  ) {
    super()
  }

  granted(leftMs: number): void {
    const { d, chosen, ep, resolve, reject } = this
    this.forget()
    // The breaker opened while it waited (the attempts ahead of it failed): the endpoint is taken
    // for broken, so this one is not sent either (a read may still be retried elsewhere).
    if (!chosen!.probe && ep!.state.breaker.state.kind === 'open') {
      ep!.slots.release()
      reject!(new NoEndpointError(`instance '${d!.instance}': endpoint ${ep!.id} failed while the request waited for it; not sent`, { retryAfterS: 1 }))
      return
    }
    occupied(d!, chosen!, ep!, onGrid(leftMs + this.floorMs)).then(resolve, reject)
  }

  dropped(waitedMs: number, closed: boolean): void {
    const { d, chosen, ep, reject } = this
    this.forget()
    // Never sent: give a probe slot back without a verdict.
    chosen!.endpoint.state.breaker.release(chosen!.probe)
    reject!(
      closed
        ? new NoEndpointError(`instance '${d!.instance}': endpoint ${ep!.id} left the pool while the request waited for it; not sent`, { retryAfterS: 1 })
        : new OverloadedError(
            `instance '${d!.instance}': no in-flight slot of endpoint ${ep!.id} came free within ${Math.round(waitedMs)} ms (limits.maxInflightPerEndpoint = ${ep!.slots.max}); not sent`,
            { retryAfterS: 1 },
          ),
    )
  }

  /** Done: nothing of the request stays with it, whoever still holds it. */
  private forget(): void {
    this.d = null
    this.chosen = null
    this.ep = null
    this.resolve = null
    this.reject = null
  }
}

function start<T>(o: DispatchOptions, req: DispatchRequest, run: Run<T>): Promise<T> {
  const { resolved } = req
  const instance = resolved.instance.name
  const scope = req.scope ?? null
  const d: Dispatching<T> = {
    o,
    req,
    run,
    instance,
    identity: req.identity ?? GATEWAY_IDENTITY,
    scripted: req.scripted === true,
    scope,
    deadlineAt: performance.now() + o.commandTimeoutMs + o.deadlineMarginMs,
  }
  if (req.kind !== 'read') return send(d, pick(d, [], 'first'), true)

  const { retry, hedge } = o.router.countRequest(resolved.instance)
  const hedgeAfterMs = resolved.instance.spec.policy.hedgeAfterMs
  if (hedgeAfterMs === null) {
    // No hedging (the default): the first attempt's promise, with at most one retry behind it.
    // The same rules as below, without a promise of its own or per-request closures for the hedge.
    const first = pick(d, [], 'first')
    return send(d, first, true).catch((err: unknown) => {
      // A Redis error reply is an answer: return it, never retry it.
      if (!isRetryable(err)) throw err
      if (!retry.tryRetry()) {
        o.events.emit('budgetExhausted', { instance, budget: 'retry' })
        throw err
      }
      let again: Routed<PooledEndpoint>
      try {
        again = pick(d, [first.endpoint.state], 'retry')
      } catch {
        throw err // no other endpoint: the original failure stands
      }
      const p = send(d, again, false)
      o.events.emit('retry', { instance, reason: errorCode(err), scope })
      return p
    })
  }
  const tried: EndpointState[] = []
  return new Promise<T>((resolve, reject) => {
      let inFlight = 0
      let settled = false
      let retried = false
      let lastError: unknown
      let hedgeTimer: NodeJS.Timeout | null = null
      const done = (fn: () => void): void => {
        if (settled) return
        settled = true
        if (hedgeTimer) clearTimeout(hedgeTimer)
        fn()
      }
      const launch = (why: 'first' | 'retry' | 'hedge'): boolean => {
        let chosen: Routed<PooledEndpoint>
        try {
          chosen = pick(d, tried, why)
        } catch (err) {
          // No (other) endpoint can take it: the first attempt fails with that reason; a retry
          // fails with the original error; a hedge is simply not sent.
          if (why === 'first') done(() => reject(err))
          else if (why === 'retry') done(() => reject(lastError))
          return false
        }
        tried.push(chosen.endpoint.state)
        const p = send(d, chosen, why === 'first')
        inFlight++
        if (why === 'retry') o.events.emit('retry', { instance, reason: errorCode(lastError), scope })
        if (why === 'hedge') o.events.emit('hedge', { instance, result: 'sent', scope })
        p.then(
          (r) => {
            inFlight--
            if (!settled && why === 'hedge') o.events.emit('hedge', { instance, result: 'won', scope })
            done(() => resolve(r))
          },
          (err: unknown) => {
            inFlight--
            if (settled) return
            // A Redis error reply is an answer: return it, never retry it.
            if (!isRetryable(err)) return done(() => reject(err))
            lastError = err
            if (inFlight > 0) return // a hedge (or the first attempt) may still answer
            if (!retried) {
              if (retry.tryRetry()) {
                retried = true
                launch('retry')
                return
              }
              o.events.emit('budgetExhausted', { instance, budget: 'retry' })
            }
            done(() => reject(lastError))
          },
        )
        return true
      }
      if (!launch('first')) return
      if (hedgeAfterMs !== null) {
        hedgeTimer = setTimeout(() => {
          hedgeTimer = null
          if (settled) return
          if (hedge.tryHedge()) launch('hedge')
          else o.events.emit('budgetExhausted', { instance, budget: 'hedge' })
        }, hedgeAfterMs)
      }
  })
}

function emitSelect(
  events: EventHub,
  scope: TraceScope,
  resolved: Resolved,
  attempt: 'first' | 'retry' | 'hedge',
  startMs: number,
  chosen: Routed<PooledEndpoint> | null,
  clientId: string | null,
  err: unknown,
): void {
  const policy = resolved.instance.spec.policy
  const sticky = policy.strategy === 'maglev'
  events.emit('routeSelect', {
    scope,
    startMs,
    endMs: performance.now(),
    instance: resolved.instance.name,
    attempt,
    balancer: policy.strategy,
    candidates: chosen?.candidates ?? 0,
    endpoint: chosen?.endpoint.spec.id ?? null,
    role: chosen?.role ?? null,
    reason: chosen?.reason ?? (err instanceof Error ? err.message : String(err)),
    probe: chosen?.probe ?? false,
    stickyKey: sticky ? clientId : null,
    error: chosen === null ? errorCode(err) : null,
  })
}

function errorCode(err: unknown): string {
  return err instanceof GatewayError ? err.code : err instanceof RedisReplyError ? 'REDIS' : 'UNKNOWN'
}
