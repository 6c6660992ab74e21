// Sends one request to an instance with the resilience rules (README "Resilience"):
// - writes (and transactions, and subscriptions) go to the primary once: never sent twice;
// - a read that fails on transport (timeout, lost or refused connection, LOADING...) is retried at
//   most once, on another endpoint, within the instance's retry budget;
// - with `hedge-after`, a read still unanswered after that delay is also sent to a second eligible
//   endpoint, within the hedge budget; the first good reply wins;
// - every request ends by its deadline (command timeout plus a small margin), even when its
//   command still waits behind a stalled batch on the connection.
// A Redis error reply is an answer (it is returned, not retried).

import { performance } from 'node:perf_hooks'
import { GatewayError, NoEndpointError, RedisReplyError, TimeoutError, UpstreamResetError } from '../core/errors.js'
import type { EventHub, TraceScope } from '../core/events.js'
import type { ExecContext } from './execute.js'
import type { PooledEndpoint } from './pool.js'
import type { EndpointState } from '../resilience/endpoint-state.js'
import type { Resolved, Routed, Router } from '../selection/router.js'
import { whenConnected } from './pool.js'
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
  /** Requests that may wait per endpoint for its connection. */
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
 */
function send<T>(d: Dispatching<T>, chosen: Routed<PooledEndpoint>, first: boolean): Promise<T> {
  const { o, instance, identity } = d
  // The first attempt starts now: the whole command timeout (the deadline is later by the margin).
  const timeoutMs = first ? o.commandTimeoutMs : Math.max(1, Math.min(o.commandTimeoutMs, Math.ceil(d.deadlineAt - performance.now())))
  const ctx: ExecContext = { instance, role: chosen.role, events: o.events, probe: chosen.probe, scope: d.scope, timeoutMs, deadlines: o.deadlines, lease: d.req.lease ?? null, identity }
  const pooled = chosen.endpoint.pooled
  let ready: PooledEndpoint | Promise<PooledEndpoint>
  try {
    ready = whenConnected(instance, pooled, o.maxPendingPerEndpoint, identity, d.scripted)
  } catch (err) {
    // Never sent: give the probe slot back without a verdict; the health checker judges it.
    chosen.endpoint.state.breaker.release(chosen.probe)
    return Promise.reject(err)
  }
  if (ready === pooled) return d.run(pooled, ctx)
  // Waiting for the connection counts against the attempt's time.
  const waitFrom = performance.now()
  return (ready as Promise<PooledEndpoint>).then(
    (ep) => {
      const left = Math.max(1, Math.ceil(timeoutMs - (performance.now() - waitFrom)))
      return d.run(ep, { ...ctx, timeoutMs: left })
    },
    (err: unknown) => {
      chosen.endpoint.state.breaker.release(chosen.probe)
      throw err
    },
  )
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
