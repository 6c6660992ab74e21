// A request's target resolution as tracing and the debug log report it, put together from the data
// plane's events: timed between `routeResolveBegin` and `routeResolve`, and completed with the
// command class, which is known only later (it depends on the resolved instance's command table),
// when the request ends. The data plane keeps none of this: it says when things happen.

import { performance } from 'node:perf_hooks'
import type { EventHub, TraceScope } from '../core/events.js'

export interface ResolvedRoute {
  readonly scope: TraceScope
  /** performance.now() ms. */
  readonly startMs: number
  readonly endMs: number
  readonly kind: 'instance' | 'group'
  readonly name: string
  readonly instance: string | null
  readonly group: string | null
  /** The request's command class ('none' when it ended before one was known). */
  readonly class: string
  /** Error code when resolution failed. */
  readonly error: string | null
}

interface Pending {
  readonly startMs: number
  endMs: number
  readonly kind: 'instance' | 'group'
  readonly name: string
  instance: string | null
  group: string | null
  error: string | null
}

/** Calls `fn` once per resolution, when its request ends; returns the unsubscribe function. */
export function onRouteResolved(events: EventHub, fn: (r: ResolvedRoute) => void): () => void {
  // By scope, so a request's resolution is dropped with the request.
  const pending = new WeakMap<TraceScope, Pending>()
  const offs = [
    events.on('routeResolveBegin', (e) => {
      pending.set(e.scope, { startMs: performance.now(), endMs: -1, kind: e.kind, name: e.name, instance: null, group: null, error: null })
    }),
    events.on('routeResolve', (e) => {
      const p = pending.get(e.scope)
      if (p === undefined) return
      p.endMs = performance.now()
      p.instance = e.instance
      p.group = e.group
      p.error = e.error
    }),
    events.on('requestEnd', (e) => {
      if (e.scope === null) return
      const p = pending.get(e.scope)
      if (p === undefined || p.endMs < 0) return
      pending.delete(e.scope)
      fn({ scope: e.scope, startMs: p.startMs, endMs: p.endMs, kind: p.kind, name: p.name, instance: p.instance, group: p.group, class: e.class, error: p.error })
    }),
  ]
  return () => offs.forEach((f) => f())
}
