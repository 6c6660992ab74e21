// The tracing subscriber's mapping of events to OpenTelemetry's semantic conventions, event by
// event (no server): HTTP server span attributes from the request line and Host header (methods
// outside the known set, scrubbed url.path / url.query), and the Redis client span's name,
// batch size, network.peer.* and error recording for every kind of outcome. The whole span tree on
// real Redis servers is test/integration/tracing.test.ts.

import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { EventHub, type TraceScope, type UpstreamEvent } from '../core/events.js'
import { hostAndPort, scrubbedPath, scrubbedQuery, subscribeTracing } from './tracing.js'

const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
const events = new EventHub()
subscribeTracing(events, provider.getTracer('test'))

afterAll(() => provider.shutdown())
beforeEach(() => exporter.reset())

function begin(method: string, url: string, route: string, host?: string): TraceScope {
  const scope: TraceScope = { wanted: false, span: null }
  events.emit('requestBegin', { scope, method, route, traceparent: undefined, tracestate: undefined, startMs: performance.now(), url, host })
  return scope
}

function end(scope: TraceScope, status = 200): void {
  events.emit('requestEnd', {
    scope,
    instance: 'main',
    group: null,
    class: 'read',
    status,
    code: 'OK',
    durationS: 0,
    endMs: performance.now(),
  })
}

function upstream(scope: TraceScope, e: Partial<UpstreamEvent>): ReadableSpan {
  events.emit('upstream', {
    instance: 'main',
    endpoint: '10.0.0.7:6380',
    role: 'primary',
    outcome: 'ok',
    durationS: 0.001,
    scope,
    operation: 'GET',
    commands: 1,
    host: '10.0.0.7',
    port: 6380,
    startMs: performance.now(),
    breaker: null,
    redisError: null,
    ...e,
  })
  const spans = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT)
  return spans[spans.length - 1]!
}

const server = (): ReadableSpan => exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER)!

describe('HTTP server span', () => {
  it('a known method names the span; url.path, server.address and server.port come with it', () => {
    end(begin('POST', '/v1/instances/orders/pipeline', '/v1/instances/{name}/pipeline', 'gateway.example:8080'))
    expect(server().name).toBe('POST /v1/instances/{name}/pipeline')
    expect(server().attributes).toEqual({
      'http.request.method': 'POST',
      'http.route': '/v1/instances/{name}/pipeline',
      'url.scheme': 'http',
      'url.path': '/v1/instances/orders/pipeline',
      'server.address': 'gateway.example',
      'server.port': 8080,
      'http.response.status_code': 200,
      'redis_gateway.command.class': 'read',
      'redis_gateway.code': 'OK',
      'redis_gateway.instance': 'main',
    })
  })

  it('a method outside the known set is _OTHER, with the original beside it, and the span is named HTTP {route}', () => {
    end(begin('PROPFIND', '/v1/instances/orders', '/v1/instances/{name}', 'localhost'), 405)
    expect(server().name).toBe('HTTP /v1/instances/{name}')
    expect(server().attributes).toMatchObject({ 'http.request.method': '_OTHER', 'http.request.method_original': 'PROPFIND', 'server.address': 'localhost' })
    // No port in Host: none recorded.
    expect(server().attributes).not.toHaveProperty('server.port')
  })

  it('an unsampled request gets no scope', () => {
    const scope: TraceScope = { wanted: false, span: null }
    const off = new EventHub()
    const offProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)], sampler: { shouldSample: () => ({ decision: 0 }), toString: () => 'off' } })
    subscribeTracing(off, offProvider.getTracer('off'))
    off.emit('requestBegin', { scope, method: 'GET', route: '/v1/instances/{name}', traceparent: undefined, tracestate: undefined, startMs: 0, url: '/v1/instances/x', host: 'h' })
    expect(scope).toEqual({ wanted: false, span: null })
  })
})

describe('scrubbing', () => {
  it('url.path keeps the route and target name, never the command, arguments or channels', () => {
    expect(scrubbedPath('/v1/instances/main', '/v1/instances/{name}')).toBe('/v1/instances/main')
    expect(scrubbedPath('/v1/groups/canary/multi-exec', '/v1/groups/{name}/multi-exec')).toBe('/v1/groups/canary/multi-exec')
    expect(scrubbedPath('/v1/instances/main/set/k%2F1/v/EX/10?_token=t', '/v1/instances/{name}/{command...}')).toBe('/v1/instances/main/REDACTED')
    expect(scrubbedPath('/v1/instances/main/subscribe/a,b', '/v1/instances/{name}/subscribe/{channels}')).toBe('/v1/instances/main/subscribe/REDACTED')
    expect(scrubbedPath('/secret/key', '/{unknown}')).toBe('/REDACTED')
  })

  it('url.query keeps only the _token key; every value and every other key (arguments) is REDACTED', () => {
    expect(scrubbedQuery('/v1/instances/main')).toBeNull()
    expect(scrubbedQuery('/v1/instances/main?')).toBeNull()
    expect(scrubbedQuery('/x?_token=secret')).toBe('_token=REDACTED')
    expect(scrubbedQuery('/x?_token=secret&EX=100&flag')).toBe('_token=REDACTED&REDACTED=REDACTED&REDACTED=REDACTED')
  })

  it('server.address / server.port from Host: names, IPv4, bracketed IPv6; anything else is none', () => {
    expect(hostAndPort('example.com')).toEqual({ address: 'example.com', port: null })
    expect(hostAndPort('10.1.2.3:8080')).toEqual({ address: '10.1.2.3', port: 8080 })
    expect(hostAndPort('[::1]:80')).toEqual({ address: '::1', port: 80 })
    expect(hostAndPort('x:99999')).toEqual({ address: 'x', port: null })
    for (const bad of [undefined, '', 'a/b', 'user@host', 'h:p', 'x'.repeat(300)]) expect(hostAndPort(bad)).toBeNull()
  })
})

describe('Redis client span', () => {
  it('named {db.operation.name}, db.namespace 0, network.peer.* for an IP endpoint, no batch size for one command', () => {
    const scope = begin('POST', '/v1/instances/main', '/v1/instances/{name}')
    const span = upstream(scope, {})
    expect(span.name).toBe('GET')
    expect(span.attributes).toEqual({
      'db.system.name': 'redis',
      'db.operation.name': 'GET',
      'db.namespace': '0',
      'server.address': '10.0.0.7',
      'server.port': 6380,
      'network.peer.address': '10.0.0.7',
      'network.peer.port': 6380,
      'redis_gateway.endpoint': '10.0.0.7:6380',
      'redis_gateway.role': 'primary',
    })
    expect(span.status.code).toBe(SpanStatusCode.UNSET)
  })

  it('an endpoint given by host name has no network.peer.* (its address is not looked up)', () => {
    const span = upstream(begin('POST', '/v1/instances/main', '/v1/instances/{name}'), { host: 'redis-0.redis.svc', endpoint: 'redis-0.redis.svc:6379', port: 6379 })
    expect(span.attributes['server.address']).toBe('redis-0.redis.svc')
    expect(span.attributes).not.toHaveProperty('network.peer.address')
    expect(span.attributes).not.toHaveProperty('network.peer.port')
  })

  it('a batch has db.operation.batch.size (0 included), a single command never', () => {
    const scope = begin('POST', '/v1/instances/main/pipeline', '/v1/instances/{name}/pipeline')
    expect(upstream(scope, { operation: 'PIPELINE GET', commands: 3 }).attributes['db.operation.batch.size']).toBe(3)
    expect(upstream(scope, { operation: 'PIPELINE', commands: 0 }).attributes['db.operation.batch.size']).toBe(0)
    expect(upstream(scope, { operation: 'MULTI INCR', commands: 1 }).attributes).not.toHaveProperty('db.operation.batch.size')
  })

  it.each([
    ['reply_error', 'WRONGTYPE', { 'db.response.status_code': 'WRONGTYPE', 'error.type': 'WRONGTYPE' }],
    ['busy', 'LOADING', { 'db.response.status_code': 'LOADING', 'error.type': 'LOADING' }],
    // A script's own error text, with no prefix: the conventions' fallback.
    ['reply_error', '', { 'error.type': '_OTHER' }],
    // The gateway's own verdict on a reply (larger than limits.maxReply): no Redis status code.
    ['reply_error', null, { 'error.type': 'reply_error' }],
    ['timeout', null, { 'error.type': 'timeout' }],
    ['unavailable', null, { 'error.type': 'unavailable' }],
    ['reset', null, { 'error.type': 'reset' }],
  ] as const)('outcome %s with Redis error %j: %j, status ERROR without a description', (outcome, redisError, attrs) => {
    const span = upstream(begin('POST', '/v1/instances/main', '/v1/instances/{name}'), { outcome, redisError })
    expect(span.attributes).toMatchObject(attrs)
    if (!('db.response.status_code' in attrs)) expect(span.attributes).not.toHaveProperty('db.response.status_code')
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR })
  })
})
