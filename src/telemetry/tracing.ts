// OpenTelemetry spans built from gateway events (docs/observability.md, "Traces"): one SERVER span
// per data-plane request (continuing an incoming W3C traceparent), children `route.resolve`,
// `route.select` (one per attempt) and one CLIENT span per Redis round trip; retries, hedges and
// breaker transitions are span events. Routing code never calls this: it emits events with a
// per-request TraceScope, and only when this subscriber listens (tracing off = no listener = no
// scope, no event objects). What a span needs that the events do not carry (its server span, the
// resolution's timing) is kept here, in the scope or in route-resolve.ts. Command arguments, keys,
// values and tokens are never recorded.
// Server and client spans follow OpenTelemetry's semantic conventions for HTTP server spans and
// for Redis (database) client spans; docs/observability.md lists every attribute and the choices
// the conventions leave open (span names, error replies, db.namespace).

import { isIP } from 'node:net'
import { performance } from 'node:perf_hooks'
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapPropagator,
  type Tracer,
} from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { murmur3 } from '../balancer/hash.js'
import { SEED_KEY } from '../balancer/maglev.js'
import type { EventHub, TraceScope } from '../core/events.js'
import { onRouteResolved } from './route-resolve.js'

/** Attribute names of our own (semantic conventions where one exists). */
export const ATTR = {
  instance: 'redis_gateway.instance',
  group: 'redis_gateway.group',
  targetKind: 'redis_gateway.target.kind',
  targetName: 'redis_gateway.target.name',
  commandClass: 'redis_gateway.command.class',
  code: 'redis_gateway.code',
  attempt: 'redis_gateway.attempt',
  balancer: 'redis_gateway.balancer',
  candidates: 'redis_gateway.candidates',
  endpoint: 'redis_gateway.endpoint',
  role: 'redis_gateway.role',
  reason: 'redis_gateway.reason',
  probe: 'redis_gateway.breaker.probe',
  stickyKeyHash: 'redis_gateway.sticky_key_hash',
} as const

function spanOf(scope: TraceScope | null): Span | null {
  return scope === null ? null : (scope.span as Span | null)
}

/**
 * Event times are performance.now() milliseconds; spans get epoch milliseconds, so every span of
 * a trace is placed on the same clock (a bare performance.now() number would be shifted by each
 * span's own clock-drift correction).
 */
function epochMs(perfMs: number): number {
  return performance.timeOrigin + perfMs
}

function under(span: Span): Context {
  return trace.setSpan(ROOT_CONTEXT, span)
}

/** HTTP semantic conventions: the methods an http.request.method may name; others are `_OTHER`. */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE'])

/** What replaces a scrubbed part of url.path / url.query (the conventions' own word for it). */
const REDACTED = 'REDACTED'

/**
 * url.path with the route's arguments scrubbed: the template's literal segments and the target
 * name stay, the command, its arguments and channel names (the path form's keys and values) become
 * REDACTED; a path outside the data plane's routes is REDACTED whole.
 */
export function scrubbedPath(url: string, route: string): string {
  if (!route.startsWith('/v1/')) return `/${REDACTED}`
  const q = url.indexOf('?')
  const path = (q < 0 ? url : url.slice(0, q)).split('/')
  const template = route.split('/')
  for (let i = 0; i < template.length; i++) {
    const t = template[i]!
    if (t === '{name}') template[i] = path[i] ?? ''
    else if (t.startsWith('{')) template[i] = REDACTED
  }
  return template.join('/')
}

/**
 * url.query with every value scrubbed (`_token`'s, and the path form's arguments), and every key
 * but `_token` too (the path form's query keys are arguments as well); null without a query.
 */
export function scrubbedQuery(url: string): string | null {
  const q = url.indexOf('?')
  if (q < 0 || q === url.length - 1) return null
  return url
    .slice(q + 1)
    .split('&')
    .map((pair) => (pair.split('=', 1)[0] === '_token' ? `_token=${REDACTED}` : `${REDACTED}=${REDACTED}`))
    .join('&')
}

/** server.address and server.port from a Host header (`name`, `name:port`, `[v6]:port`); null if it is none. */
export function hostAndPort(host: string | undefined): { address: string; port: number | null } | null {
  if (host === undefined || host.length > 255) return null
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(host)
  if (m === null) return null
  const address = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!
  const port = m[2] === undefined ? null : Number(m[2])
  return { address, port: port !== null && port <= 65535 ? port : null }
}

/**
 * Subscribes tracing to the gateway's events; returns the unsubscribe function. The propagator
 * defaults to W3C trace context (what OTEL_PROPAGATORS defaults to as well).
 */
export function subscribeTracing(
  events: EventHub,
  tracer: Tracer,
  propagator: TextMapPropagator = new W3CTraceContextPropagator(),
): () => void {
  const offs = [
    // Before the requestEnd listener below: route.resolve is reported when its request ends, and
    // goes out before the server span does.
    onRouteResolved(events, (e) => {
      const parent = spanOf(e.scope)
      if (parent === null) return
      const attributes: Attributes = {
        [ATTR.targetKind]: e.kind,
        [ATTR.targetName]: e.name,
        [ATTR.commandClass]: e.class,
      }
      if (e.instance !== null) attributes[ATTR.instance] = e.instance
      if (e.group !== null) attributes[ATTR.group] = e.group
      const span = tracer.startSpan('route.resolve', { startTime: epochMs(e.startMs), attributes }, under(parent))
      if (e.error !== null) {
        span.setAttribute('error.type', e.error)
        span.setStatus({ code: SpanStatusCode.ERROR, message: e.error })
      }
      span.end(epochMs(e.endMs))
    }),
    events.on('requestBegin', (e) => {
      const carrier: Record<string, string> = {}
      if (e.traceparent !== undefined) carrier['traceparent'] = e.traceparent
      if (e.tracestate !== undefined) carrier['tracestate'] = e.tracestate
      const parent = e.traceparent === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter)
      const known = KNOWN_METHODS.has(e.method)
      const span = tracer.startSpan(
        `${known ? e.method : 'HTTP'} ${e.route}`,
        {
          kind: SpanKind.SERVER,
          startTime: epochMs(e.startMs),
          attributes: { 'http.request.method': known ? e.method : '_OTHER', 'http.route': e.route, 'url.scheme': 'http' },
        },
        parent,
      )
      // Not sampled: nothing below it would be recorded either, so the scope is not wanted and the
      // request skips building its routing events (unless the debug log wants them).
      if (!span.isRecording()) return
      e.scope.span = span
      e.scope.wanted = true
      // Built for sampled requests only: the samplers OTEL_TRACES_SAMPLER offers read no attributes.
      if (!known) span.setAttribute('http.request.method_original', e.method)
      if (e.url !== undefined) {
        span.setAttribute('url.path', scrubbedPath(e.url, e.route))
        const query = scrubbedQuery(e.url)
        if (query !== null) span.setAttribute('url.query', query)
      }
      const server = hostAndPort(e.host)
      if (server !== null) {
        span.setAttribute('server.address', server.address)
        if (server.port !== null) span.setAttribute('server.port', server.port)
      }
    }),
    events.on('routeSelect', (e) => {
      const parent = spanOf(e.scope)
      if (parent === null) return
      const attributes: Attributes = {
        [ATTR.instance]: e.instance,
        [ATTR.attempt]: e.attempt,
        [ATTR.balancer]: e.balancer,
        [ATTR.candidates]: e.candidates,
        [ATTR.reason]: e.reason,
      }
      if (e.endpoint !== null) attributes[ATTR.endpoint] = e.endpoint
      if (e.role !== null) attributes[ATTR.role] = e.role
      if (e.probe) attributes[ATTR.probe] = true
      // The client id may be personal: only its hash (the one Maglev uses) is recorded.
      if (e.stickyKey !== null) attributes[ATTR.stickyKeyHash] = murmur3(e.stickyKey, SEED_KEY)
      const span = tracer.startSpan('route.select', { startTime: epochMs(e.startMs), attributes }, under(parent))
      if (e.error !== null) {
        span.setAttribute('error.type', e.error)
        span.setStatus({ code: SpanStatusCode.ERROR, message: e.reason })
      }
      span.end(epochMs(e.endMs))
    }),
    events.on('upstream', (e) => {
      const parent = spanOf(e.scope)
      if (parent === null) return
      const attributes: Attributes = {
        'db.system.name': 'redis',
        'db.operation.name': e.operation,
        // The gateway serves database 0 only: endpoints take no database number, SELECT is refused.
        'db.namespace': '0',
        'server.address': e.host,
        'server.port': e.port,
        [ATTR.endpoint]: e.endpoint,
        [ATTR.role]: e.role,
      }
      // An endpoint given by IP address is the peer itself; a host name's address is not looked up.
      if (isIP(e.host) !== 0) {
        attributes['network.peer.address'] = e.host
        attributes['network.peer.port'] = e.port
      }
      // A batch is two or more commands (never 1): a pipeline of one is a single operation.
      if (e.commands !== 1) attributes['db.operation.batch.size'] = e.commands
      // Named {db.operation.name} alone, no {target}: docs/observability.md, "Semantic conventions".
      const span = tracer.startSpan(e.operation, { kind: SpanKind.CLIENT, startTime: epochMs(e.startMs), attributes }, under(parent))
      if (e.breaker !== null) {
        const [from, to] = e.breaker.split('->')
        const breaker = { [ATTR.endpoint]: e.endpoint, 'redis_gateway.breaker.from': from ?? '', 'redis_gateway.breaker.to': to ?? '' }
        span.addEvent('breaker', breaker)
        // A stalled attempt may end after its request has answered (and its server span ended).
        if (parent.isRecording()) parent.addEvent('breaker', breaker)
      }
      if (e.outcome !== 'ok') {
        // Redis's conventions: every error prefix is an error, and error.type matches it
        // (db.response.status_code); without a Redis error, the gateway's failure kind.
        const prefix = e.redisError ?? null
        if (prefix !== null && prefix !== '') span.setAttribute('db.response.status_code', prefix)
        const type = prefix === null ? e.outcome : prefix === '' ? '_OTHER' : prefix
        span.setAttribute('error.type', type)
        // No description: error.type says it all, and Redis's message may quote arguments.
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
      span.end(epochMs(e.startMs + e.durationS * 1000))
    }),
    events.on('retry', (e) => spanOf(e.scope)?.addEvent('retry', { [ATTR.instance]: e.instance, [ATTR.reason]: e.reason })),
    events.on('hedge', (e) => spanOf(e.scope)?.addEvent(`hedge.${e.result}`, { [ATTR.instance]: e.instance })),
    events.on('requestEnd', (e) => {
      const span = spanOf(e.scope)
      if (span === null) return
      span.setAttribute('http.response.status_code', e.status)
      span.setAttribute(ATTR.commandClass, e.class)
      span.setAttribute(ATTR.code, e.code)
      if (e.instance !== null) span.setAttribute(ATTR.instance, e.instance)
      if (e.group !== null) span.setAttribute(ATTR.group, e.group)
      // HTTP server semantics: 4xx is the client's doing, only 5xx marks the server span failed.
      if (e.status >= 500) {
        span.setAttribute('error.type', e.code)
        span.setStatus({ code: SpanStatusCode.ERROR, message: e.code })
      }
      // The scope keeps the span: an attempt that outlives the request (a stalled read that was
      // retried elsewhere) still reports its client span under this trace when it ends.
      span.end(epochMs(e.endMs))
    }),
  ]
  return () => offs.forEach((f) => f())
}
