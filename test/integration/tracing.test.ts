// Tracing: the span tree of every request form, on real redis-server processes, collected by
// OpenTelemetry's in-memory exporter. Asserts the whole tree (server span continuing the caller's
// traceparent -> route.resolve, route.select per attempt, one client span per Redis round trip),
// the attributes docs/observability.md lists (OpenTelemetry's HTTP server and Redis client
// conventions: names, db.namespace, batches, error replies), retry/hedge/breaker events, and that
// no command argument, key, value or token reaches any span.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { Redis } from '@upstash/redis'
import { LEVEL_IDENTITY } from '../../src/core/identity.js'
import { FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'
import { HEALTH, startTopology, type Topology } from './replication-env.js'

const A = 'redis-gateway.io/'
const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
const tracer = provider.getTracer('test')

// Secrets that must never appear in a span: keys, values, client ids, tokens.
const KEY = 'secret-key-7f3a'
const VALUE = 'secret-value-91bc'
const CLIENT = 'client-id-5d2e'

let topo: Topology
let slow: FaultProxy
let gw: TestGateway

beforeAll(async () => {
  topo = await startTopology()
  slow = await startFaultProxy(topo.r1)
  gw = await startGateway({
    tracer,
    instances: [
      { name: 'main', endpoints: topo.urls, annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'round-robin' } },
      // r1 behind a proxy that can stall or slow down: retries, breakers and hedges.
      {
        name: 'faulty',
        endpoints: [topo.primary.url, slow.url, topo.r2.url],
        annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'round-robin' },
      },
      {
        name: 'hedged',
        endpoints: [topo.primary.url, slow.url, topo.r2.url],
        annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'round-robin', [`${A}hedge-after`]: '5ms' },
      },
      { name: 'sticky', endpoints: topo.urls, annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'maglev' } },
    ],
    groups: { canary: { strategy: 'weighted' } },
    extra: { ...HEALTH, redis: { commandTimeout: '300ms', connectTimeout: '300ms' } },
  })
  // primary, r1, r2 and the proxy in front of r1: all healthy with a known role.
  await waitFor(() => {
    const eps = [...gw.gateway.pool.all()]
    return eps.length === 4 && eps.every((e) => e.state.healthy && e.state.role !== 'unknown')
  }, { message: 'every endpoint checked' })
})

afterAll(async () => {
  await gw?.stop()
  await slow?.close()
  await topo?.stop()
  await provider.shutdown()
})

beforeEach(() => exporter.reset())

interface Sent {
  status: number
  body: unknown
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Sent> {
  const res = await fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  return { status: res.status, body: await res.json() }
}

/** The finished spans of one trace, with helpers to walk the tree. */
class Tree {
  constructor(readonly spans: ReadableSpan[]) {}
  get server(): ReadableSpan {
    const s = this.spans.filter((x) => x.kind === SpanKind.SERVER)
    expect(s).toHaveLength(1)
    return s[0]!
  }
  children(of: ReadableSpan, name?: string): ReadableSpan[] {
    return this.spans.filter(
      (s) => s.parentSpanContext?.spanId === of.spanContext().spanId && (name === undefined || s.name === name),
    )
  }
  one(name: string): ReadableSpan {
    const s = this.spans.filter((x) => x.name === name)
    expect(s.map((x) => x.name)).toEqual([name])
    return s[0]!
  }
}

/** Waits until the request's server span has ended (spans end after the reply is written). */
async function traceOf(traceId?: string): Promise<Tree> {
  const spans = await waitFor(
    () => {
      const all = exporter.getFinishedSpans()
      const server = all.filter((s) => s.kind === SpanKind.SERVER && (traceId === undefined || s.spanContext().traceId === traceId))
      if (server.length === 0) return null
      const id = server[server.length - 1]!.spanContext().traceId
      return all.filter((s) => s.spanContext().traceId === id)
    },
    { message: 'a finished server span' },
  )
  return new Tree(spans)
}

function noSecrets(tree: Tree, ...secrets: string[]): void {
  const text = JSON.stringify(
    tree.spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events.map((e) => [e.name, e.attributes]), status: s.status })),
  )
  for (const secret of [...secrets, WRITE_TOKEN]) expect(text).not.toContain(secret)
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT_ID = '00f067aa0ba902b7'

describe('span tree', () => {
  it('a single command continues the caller traceparent: server -> route.resolve, route.select, client span', async () => {
    await post('/v1/instances/main', ['SET', KEY, VALUE])
    exporter.reset()
    const r = await post('/v1/instances/main', ['GET', KEY], { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` })
    expect(r).toEqual({ status: 200, body: { result: VALUE } })
    const tree = await traceOf(TRACE_ID)
    const server = tree.server
    expect(server.spanContext().traceId).toBe(TRACE_ID)
    expect(server.parentSpanContext?.spanId).toBe(PARENT_ID)
    expect(server.name).toBe('POST /v1/instances/{name}')
    expect(server.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/instances/{name}',
      'http.response.status_code': 200,
      'url.scheme': 'http',
      'url.path': '/v1/instances/main',
      // From the Host header: the gateway's address as the client addressed it.
      'server.address': '127.0.0.1',
      'server.port': Number(new URL(gw.url).port),
      'redis_gateway.instance': 'main',
      'redis_gateway.command.class': 'read',
      'redis_gateway.code': 'OK',
    })
    expect(server.attributes).not.toHaveProperty('url.query')
    expect(server.attributes).not.toHaveProperty('error.type')
    expect(tree.children(server).map((s) => s.name).sort()).toEqual(['GET', 'route.resolve', 'route.select'])
    const resolve = tree.one('route.resolve')
    expect(resolve.attributes).toMatchObject({
      'redis_gateway.target.kind': 'instance',
      'redis_gateway.target.name': 'main',
      'redis_gateway.instance': 'main',
      'redis_gateway.command.class': 'read',
    })
    const select = tree.one('route.select')
    expect(select.attributes).toMatchObject({
      'redis_gateway.instance': 'main',
      'redis_gateway.attempt': 'first',
      'redis_gateway.balancer': 'round-robin',
      'redis_gateway.candidates': 2,
      'redis_gateway.role': 'replica',
      'redis_gateway.reason': 'read-policy replica',
    })
    const client = tree.one('GET')
    expect(client.kind).toBe(SpanKind.CLIENT)
    const replicaPorts = [topo.r1.port, topo.r2.port]
    expect(client.attributes).toMatchObject({
      'db.system.name': 'redis',
      'db.operation.name': 'GET',
      'db.namespace': '0',
      'server.address': '127.0.0.1',
      'network.peer.address': '127.0.0.1',
      'redis_gateway.role': 'replica',
    })
    expect(replicaPorts).toContain(client.attributes['server.port'])
    expect(client.attributes['network.peer.port']).toBe(client.attributes['server.port'])
    // One command is not a batch; a reply is not an error.
    for (const k of ['db.operation.batch.size', 'db.response.status_code', 'error.type']) expect(client.attributes).not.toHaveProperty(k)
    expect(client.status.code).toBe(SpanStatusCode.UNSET)
    expect(select.attributes['redis_gateway.endpoint']).toBe(client.attributes['redis_gateway.endpoint'])
    // Stages happen in order, inside the server span.
    const t = (s: ReadableSpan, which: 'startTime' | 'endTime') => s[which][0] * 1e9 + s[which][1]
    expect(t(resolve, 'startTime')).toBeGreaterThanOrEqual(t(server, 'startTime'))
    expect(t(select, 'startTime')).toBeGreaterThanOrEqual(t(resolve, 'endTime'))
    expect(t(client, 'startTime')).toBeGreaterThanOrEqual(t(select, 'endTime'))
    expect(t(server, 'endTime')).toBeGreaterThanOrEqual(t(client, 'endTime'))
    noSecrets(tree, KEY, VALUE)
  })

  it('a write goes to the primary; a request without traceparent starts a new trace', async () => {
    await post('/v1/instances/main', ['SET', KEY, VALUE])
    const tree = await traceOf()
    expect(tree.server.parentSpanContext).toBeUndefined()
    expect(tree.one('route.select').attributes).toMatchObject({ 'redis_gateway.role': 'primary', 'redis_gateway.reason': 'write', 'redis_gateway.candidates': 1 })
    expect(tree.one('SET').attributes).toMatchObject({ 'server.port': topo.primary.port, 'db.operation.name': 'SET' })
    expect(tree.server.attributes['redis_gateway.command.class']).toBe('write')
    noSecrets(tree, KEY, VALUE)
  })

  it('a pipeline and a transaction are one client span each, with the command count', async () => {
    await post('/v1/instances/main/pipeline', [['SET', KEY, VALUE], ['GET', KEY], ['STRLEN', KEY]])
    let tree = await traceOf()
    expect(tree.server.name).toBe('POST /v1/instances/{name}/pipeline')
    expect(tree.server.attributes['url.path']).toBe('/v1/instances/main/pipeline')
    expect(tree.children(tree.server).map((s) => s.name).sort()).toEqual(['PIPELINE', 'route.resolve', 'route.select'])
    expect(tree.one('PIPELINE').kind).toBe(SpanKind.CLIENT)
    expect(tree.one('PIPELINE').attributes).toMatchObject({ 'db.system.name': 'redis', 'db.operation.name': 'PIPELINE', 'db.operation.batch.size': 3, 'db.namespace': '0' })
    noSecrets(tree, KEY, VALUE)
    exporter.reset()
    await post('/v1/instances/main/multi-exec', [['SET', KEY, VALUE], ['GET', KEY]])
    tree = await traceOf()
    expect(tree.one('MULTI').attributes).toMatchObject({ 'db.operation.name': 'MULTI', 'db.operation.batch.size': 2 })
    expect(tree.server.attributes['redis_gateway.command.class']).toBe('multi')
  })

  it('a batch of one command is named after it: PIPELINE GET, MULTI INCR; a pipeline of one is a single operation', async () => {
    const client = async (path: string, body: unknown): Promise<ReadableSpan> => {
      exporter.reset()
      expect((await post(path, body)).status).toBe(200)
      const tree = await traceOf()
      const spans = tree.spans.filter((s) => s.kind === SpanKind.CLIENT)
      expect(spans).toHaveLength(1)
      return spans[0]!
    }
    let span = await client('/v1/instances/main/pipeline', [['GET', KEY], ['get', `${KEY}-2`]])
    expect(span.name).toBe('PIPELINE GET')
    expect(span.attributes).toMatchObject({ 'db.operation.name': 'PIPELINE GET', 'db.operation.batch.size': 2 })
    span = await client('/v1/instances/main/multi-exec', [['INCR', `${KEY}-n`], ['INCR', `${KEY}-n`]])
    expect(span.attributes).toMatchObject({ 'db.operation.name': 'MULTI INCR', 'db.operation.batch.size': 2 })
    // The batch size is never 1 (a one-operation batch is not a batch).
    span = await client('/v1/instances/main/pipeline', [['GET', KEY]])
    expect(span.name).toBe('GET')
    expect(span.attributes['db.operation.name']).toBe('GET')
    expect(span.attributes).not.toHaveProperty('db.operation.batch.size')
    span = await client('/v1/instances/main/multi-exec', [['INCR', `${KEY}-n`]])
    expect(span.name).toBe('MULTI INCR')
    expect(span.attributes).not.toHaveProperty('db.operation.batch.size')
  })

  it('a Redis error reply: its prefix is db.response.status_code and error.type, the client span an error, the server span (a 4xx) not', async () => {
    await post('/v1/instances/main', ['SET', KEY, VALUE])
    for (const [command, prefix] of [
      [['LPUSH', KEY, VALUE], 'WRONGTYPE'],
      [['INCR', KEY], 'ERR'],
    ] as const) {
      exporter.reset()
      const r = await post('/v1/instances/main', command)
      expect(r.status).toBe(400)
      const tree = await traceOf()
      const client = tree.one(command[0])
      expect(client.attributes).toMatchObject({ 'db.operation.name': command[0], 'db.response.status_code': prefix, 'error.type': prefix })
      expect(client.status).toEqual({ code: SpanStatusCode.ERROR })
      expect(tree.server.attributes).toMatchObject({ 'http.response.status_code': 400, 'redis_gateway.code': 'REDIS' })
      expect(tree.server.status.code).toBe(SpanStatusCode.UNSET)
      expect(tree.server.attributes).not.toHaveProperty('error.type')
      noSecrets(tree, KEY, VALUE)
    }
    // A transaction Redis refuses as a whole (a command failed while queued): EXECABORT.
    exporter.reset()
    expect((await post('/v1/instances/main/multi-exec', [['SET', KEY, VALUE], ['SET', KEY]])).status).toBe(400)
    let tree = await traceOf()
    expect(tree.one('MULTI SET').attributes).toMatchObject({ 'db.response.status_code': 'EXECABORT', 'error.type': 'EXECABORT' })
    expect(tree.one('MULTI SET').status.code).toBe(SpanStatusCode.ERROR)
    // One failed command in a pipeline is that item's answer: the round trip itself succeeded.
    exporter.reset()
    expect((await post('/v1/instances/main/pipeline', [['GET', KEY], ['LPUSH', KEY, VALUE]])).status).toBe(200)
    tree = await traceOf()
    expect(tree.one('PIPELINE').status.code).toBe(SpanStatusCode.UNSET)
    expect(tree.one('PIPELINE').attributes).not.toHaveProperty('error.type')
  })

  it('the path form records the route template and a scrubbed path and query, never the command, its arguments or the token', async () => {
    const res = await fetch(`${gw.url}/v1/instances/main/get/${KEY}?_token=${WRITE_TOKEN}`)
    expect(res.status).toBe(200)
    let tree = await traceOf()
    expect(tree.server.name).toBe('GET /v1/instances/{name}/{command...}')
    expect(tree.server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/v1/instances/{name}/{command...}',
      'url.path': '/v1/instances/main/REDACTED',
      'url.query': '_token=REDACTED',
    })
    noSecrets(tree, KEY)
    // Query parameters other than _token are arguments (SET key value EX 100): key and value go.
    exporter.reset()
    const set = await fetch(`${gw.url}/v1/instances/main/set/${KEY}/${VALUE}?_token=${WRITE_TOKEN}&EX=100`)
    expect(set.status).toBe(200)
    tree = await traceOf()
    expect(tree.server.attributes).toMatchObject({ 'url.path': '/v1/instances/main/REDACTED', 'url.query': '_token=REDACTED&REDACTED=REDACTED' })
    noSecrets(tree, KEY, VALUE, 'EX', '100')
  })

  it('the @upstash/redis SDK traffic is traced too (auto-pipelined calls become pipeline client spans)', async () => {
    const redis = new Redis({ url: `${gw.url}/v1/instances/main`, token: WRITE_TOKEN, enableAutoPipelining: true, enableTelemetry: false })
    await Promise.all([redis.set(KEY, VALUE), redis.get(KEY)])
    // However the SDK batched the two calls (a PIPELINE of both, or a pipeline of one each, which
    // is a plain SET and GET), the client spans account for both commands.
    const commands = (s: ReadableSpan[]) =>
      s.filter((x) => x.kind === SpanKind.CLIENT).reduce((n, x) => n + ((x.attributes['db.operation.batch.size'] as number | undefined) ?? 1), 0)
    const spans = await waitFor(() => {
      const s = exporter.getFinishedSpans()
      return commands(s) >= 2 && s.filter((x) => x.kind === SpanKind.SERVER).every((x) => x.name === 'POST /v1/instances/{name}/pipeline') ? s : null
    })
    expect(commands(spans)).toBe(2)
    noSecrets(new Tree(spans), KEY, VALUE)
  })

  it('an unknown target ends route.resolve in error, and the server span carries the 404', async () => {
    const r = await post('/v1/instances/nope', ['GET', KEY])
    expect(r.status).toBe(404)
    const tree = await traceOf()
    const resolve = tree.one('route.resolve')
    expect(resolve.attributes).toMatchObject({ 'redis_gateway.target.name': 'nope', 'error.type': 'NOTFOUND' })
    expect(resolve.status.code).toBe(SpanStatusCode.ERROR)
    expect(tree.server.attributes).toMatchObject({ 'http.response.status_code': 404, 'redis_gateway.code': 'NOTFOUND' })
    // 4xx is the client's doing: the server span is not marked failed.
    expect(tree.server.status.code).not.toBe(SpanStatusCode.ERROR)
    expect(tree.spans.filter((s) => s.name === 'route.select')).toHaveLength(0)
  })

  it('a sticky (maglev) selection records the client id hash, not the id', async () => {
    await post('/v1/instances/sticky', ['GET', KEY], { 'x-client-id': CLIENT })
    const tree = await traceOf()
    const select = tree.one('route.select')
    expect(select.attributes['redis_gateway.balancer']).toBe('maglev')
    expect(typeof select.attributes['redis_gateway.sticky_key_hash']).toBe('number')
    noSecrets(tree, CLIENT, KEY)
  })
})

describe('resilience as span events', () => {
  // Each case starts with the proxied replica healthy, its breaker closed (a stall marks it down;
  // an open breaker closes through a half-open probe, which takes a request: reads are sent).
  beforeEach(async () => {
    await waitFor(
      async () => {
        await post('/v1/instances/faulty', ['GET', KEY])
        const ep = [...gw.gateway.pool.all()].find((e) => e.client.spec.port === slow.port)!
        // Reads reach it over the write token's Redis user's connection, opened on first use:
        // open before a case stalls it (one opened during a stall fails in its handshake instead).
        return (
          ep.state.healthy && ep.state.role === 'replica' && ep.state.breaker.state.kind === 'closed' && ep.client.upFor(LEVEL_IDENTITY.write)
        )
      },
      { message: 'proxied replica healthy, breaker closed', timeoutMs: 20_000 },
    )
    exporter.reset()
  })

  it('a read stalled on one replica is retried on the other: two route.select and two client spans, a retry event', async () => {
    slow.stall()
    try {
      // Round-robin alternates the two replicas: within two reads one lands on the stalled one.
      let retried: Tree | null = null
      for (let i = 0; i < 6 && retried === null; i++) {
        exporter.reset()
        const r = await post('/v1/instances/faulty', ['GET', KEY])
        expect(r.status).toBe(200)
        const tree = await traceOf()
        if (tree.server.events.some((e) => e.name === 'retry')) retried = tree
      }
      expect(retried, 'one read was retried').not.toBeNull()
      const tree = retried!
      const retry = tree.server.events.find((e) => e.name === 'retry')!
      expect(retry.attributes).toMatchObject({ 'redis_gateway.instance': 'faulty', 'redis_gateway.reason': 'TIMEOUT' })
      const selects = tree.children(tree.server, 'route.select')
      expect(selects.map((s) => s.attributes['redis_gateway.attempt']).sort()).toEqual(['first', 'retry'])
      // The stalled attempt's client span ends when ioredis gives up on it, after the reply.
      const traceId = tree.server.spanContext().traceId
      const gets = await waitFor(() => {
        const g = exporter.getFinishedSpans().filter((s) => s.name === 'GET' && s.spanContext().traceId === traceId)
        return g.length === 2 ? g : null
      })
      const failed = gets.find((s) => s.attributes['server.port'] === slow.port)!
      expect(failed.attributes['error.type']).toBe('timeout')
      // No Redis error reply: no db.response.status_code.
      expect(failed.attributes).not.toHaveProperty('db.response.status_code')
      expect(failed.status.code).toBe(SpanStatusCode.ERROR)
      expect(gets.find((s) => s !== failed)!.attributes['server.port']).toBe(topo.r2.port)
    } finally {
      slow.resume()
    }
  })

  it('the read that trips an endpoint breaker carries a breaker event', async () => {
    slow.stall()
    try {
      // 30 concurrent reads, round-robin: several land on the stalled replica and time out
      // together; the fifth consecutive transport failure opens its breaker (each read succeeds
      // by its retry on the other replica).
      const replies = await Promise.all(Array.from({ length: 30 }, () => post('/v1/instances/faulty', ['GET', KEY])))
      expect(replies.map((r) => r.status)).toEqual(Array(30).fill(200))
      // The failed attempts' client spans end when ioredis gives up on them (after the replies).
      const client = await waitFor(() =>
        exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT && s.events.some((e) => e.name === 'breaker')) ?? null,
        { message: 'a client span with the breaker transition' },
      )
      const ev = client.events.find((e) => e.name === 'breaker')!
      expect(ev.attributes).toMatchObject({
        'redis_gateway.breaker.from': 'closed',
        'redis_gateway.breaker.to': 'open',
        'redis_gateway.endpoint': `127.0.0.1:${slow.port}`,
      })
      expect(client.attributes['server.port']).toBe(slow.port)
      expect(client.attributes['error.type']).toBe('timeout')
      // It belongs to one of the 30 requests' traces.
      const servers = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER)
      expect(servers.map((s) => s.spanContext().traceId)).toContain(client.spanContext().traceId)
      expect(exporter.getFinishedSpans().filter((s) => s.events.some((e) => e.name === 'breaker' && e.attributes?.['redis_gateway.breaker.to'] === 'open'))
        .filter((s) => s.kind === SpanKind.CLIENT)).toHaveLength(1)
    } finally {
      slow.resume()
    }
  })

  it('a slow read is hedged: hedge.sent on the server span and a second attempt', async () => {
    slow.delay(100)
    try {
      // Round-robin: within two reads the first attempt lands on the slow replica; its hedge
      // (after 5 ms) goes to the other one, which answers ~100 ms sooner.
      let hedged: Tree | null = null
      for (let i = 0; i < 6 && hedged === null; i++) {
        exporter.reset()
        const r = await post('/v1/instances/hedged', ['GET', KEY])
        expect(r.status).toBe(200)
        const tree = await traceOf()
        const first = tree.children(tree.server, 'route.select').find((s) => s.attributes['redis_gateway.attempt'] === 'first')
        if (first?.attributes['redis_gateway.endpoint'] === `127.0.0.1:${slow.port}`) hedged = tree
      }
      expect(hedged, 'a first attempt on the slow replica').not.toBeNull()
      expect(hedged!.server.events.map((e) => e.name)).toContain('hedge.sent')
      const tree = hedged!
      expect(tree.server.events.map((e) => e.name)).toContain('hedge.won')
      const selects = tree.children(tree.server, 'route.select')
      expect(selects.map((s) => s.attributes['redis_gateway.attempt']).sort()).toEqual(['first', 'hedge'])
    } finally {
      slow.delay(0)
    }
  })
})

describe('tracing off', () => {
  it('a gateway without a tracer builds no tracing events', async () => {
    const plain = await startGateway({ instances: [{ name: 'main', endpoints: topo.urls }] })
    try {
      expect(plain.gateway.events.has('requestBegin')).toBe(false)
      expect(plain.gateway.events.has('routeResolve')).toBe(false)
      expect(plain.gateway.events.has('routeSelect')).toBe(false)
      expect(gw.gateway.events.has('requestBegin')).toBe(true)
    } finally {
      await plain.stop()
    }
  })
})
