// Tracing, the process end: the real `src/main.ts` exports its spans over OTLP/HTTP
// when (and only when) the standard OTEL_* variables say so. A local HTTP server stands in for the
// collector (Jaeger, an OpenTelemetry Collector): it decodes the OTLP/HTTP protobuf the exporter
// sends by default (what Jaeger takes on :4318), with a decoder of its own (helpers/otlp-protobuf.ts),
// and the OTLP/JSON of OTEL_EXPORTER_OTLP_PROTOCOL=http/json. The span tree of each routing stage
// (server, route.resolve, route.select, Redis client span) is checked there as a backend gets it:
// kinds, parent links and the semantic-convention attributes, for a single command, a pipeline, a
// transaction and a Redis error reply. test/integration/jaeger.test.ts does the same against a real
// Jaeger when one is at hand.

import type { ChildProcess } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { killAll, spawnGateway } from '../helpers/gateway-process.js'
import { decodeTraceExport, SPAN_KIND, STATUS_CODE, type OtlpSpan, type OtlpValue } from '../helpers/otlp-protobuf.js'

const TOKEN = 'otlp-test-token'
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const PARENT = 'b7ad6b7169203331'

interface JsonSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: { key: string; value: Record<string, unknown> }[]
  status?: { code?: number; message?: string }
}
interface Received {
  path: string
  contentType: string
  service: OtlpValue | undefined
  spans: OtlpSpan[]
}

/** OTLP/JSON's AnyValue as the protobuf decoder gives it (64-bit integers may come as strings). */
function jsonValue(v: Record<string, unknown>): OtlpValue {
  if ('stringValue' in v) return v['stringValue'] as string
  if ('boolValue' in v) return v['boolValue'] as boolean
  if ('intValue' in v) return Number(v['intValue'])
  if ('doubleValue' in v) return Number(v['doubleValue'])
  return null
}

function fromJson(s: JsonSpan): OtlpSpan {
  return {
    traceId: s.traceId,
    spanId: s.spanId,
    parentSpanId: s.parentSpanId ?? '',
    name: s.name,
    kind: s.kind,
    startNs: 0n,
    endNs: 0n,
    attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, jsonValue(a.value)])),
    events: [],
    status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
  }
}

let redis: RedisServer
let dir: string
let collector: Server
let collectorUrl: string
const received: Received[] = []

beforeAll(async () => {
  redis = await startRedis()
  dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-otlp-'))
  collector = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const contentType = req.headers['content-type'] ?? ''
      if (contentType.includes('json')) {
        const doc = JSON.parse(body.toString('utf8')) as {
          resourceSpans: { resource: { attributes: { key: string; value: Record<string, unknown> }[] }; scopeSpans: { spans: JsonSpan[] }[] }[]
        }
        for (const rs of doc.resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value
          received.push({
            path: req.url ?? '',
            contentType,
            service: service === undefined ? undefined : jsonValue(service),
            spans: rs.scopeSpans.flatMap((s) => s.spans.map(fromJson)),
          })
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
        return
      }
      for (const rs of decodeTraceExport(body)) {
        received.push({ path: req.url ?? '', contentType, service: rs.resource['service.name'], spans: rs.scopes.flatMap((s) => s.spans) })
      }
      // An empty ExportTraceServiceResponse.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r))
  collectorUrl = `http://127.0.0.1:${(collector.address() as { port: number }).port}`
})

afterEach(killAll)

afterAll(async () => {
  collector?.close()
  await redis?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function startProcess(env: Record<string, string>): Promise<{ url: string; child: ChildProcess; exited: Promise<number | string> }> {
  const data = await freePort()
  const ops = await freePort()
  const file = path.join(dir, `gateway-${data}.yaml`)
  await writeFile(
    file,
    stringify({
      listen: { data: `127.0.0.1:${data}`, ops: `127.0.0.1:${ops}` },
      discovery: { static: { instances: [{ name: 'main', endpoints: [redis.url] }] } },
      auth: { tokens: [{ name: 'app', token: TOKEN, access: 'write', targets: ['*'] }] },
      log: { level: 'warn' },
    }),
  )
  const { child, exited, stdout, stderr } = spawnGateway(file, env)
  await waitFor(async () => (await fetch(`http://127.0.0.1:${ops}/readyz`).catch(() => null))?.ok === true, {
    message: `gateway ready (output: ${stdout()}${stderr()})`,
    timeoutMs: 20_000,
  })
  return { url: `http://127.0.0.1:${data}`, child, exited }
}

async function send(url: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${url}/v1/instances/main${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, ...headers },
    body: JSON.stringify(body),
  })
  await res.arrayBuffer()
  return res.status
}

const get = (url: string, headers: Record<string, string> = {}): Promise<number> => send(url, '', ['GET', 'otlp-key'], headers)

/** Everything the collector received, as text (to look for secrets in). */
const everything = (): string => JSON.stringify(received, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))

/** The spans of one trace at the collector, once `n` of them are in. */
function traceAtCollector(traceId: string, n: number): Promise<OtlpSpan[]> {
  return waitFor(
    () => {
      const s = received.flatMap((r) => r.spans).filter((x) => x.traceId === traceId)
      return s.length >= n ? s : null
    },
    { message: `${n} spans of trace ${traceId} at the collector` },
  )
}

/**
 * The routing stages of one request as a backend gets them: one SERVER span continuing the
 * caller's span, and its children route.resolve and route.select (INTERNAL) and the Redis CLIENT
 * span. Returns them by stage.
 */
function stages(spans: OtlpSpan[], callerSpanId: string): { server: OtlpSpan; resolve: OtlpSpan; select: OtlpSpan; client: OtlpSpan } {
  const server = spans.filter((s) => s.kind === SPAN_KIND.server)
  expect(server).toHaveLength(1)
  expect(server[0]!.parentSpanId).toBe(callerSpanId)
  const children = spans.filter((s) => s !== server[0])
  expect(children.every((s) => s.parentSpanId === server[0]!.spanId)).toBe(true)
  const one = (pred: (s: OtlpSpan) => boolean): OtlpSpan => {
    const found = children.filter(pred)
    expect(found).toHaveLength(1)
    return found[0]!
  }
  const resolve = one((s) => s.name === 'route.resolve')
  const select = one((s) => s.name === 'route.select')
  expect([resolve.kind, select.kind]).toEqual([SPAN_KIND.internal, SPAN_KIND.internal])
  const client = one((s) => s.kind === SPAN_KIND.client)
  expect(children).toHaveLength(3)
  return { server: server[0]!, resolve, select, client }
}

describe('OTLP export from the gateway process', () => {
  it('exports each routing stage as OTLP/HTTP protobuf, with the HTTP and Redis semantic conventions: a command, a pipeline, a transaction, an error reply', async () => {
    received.length = 0
    // No OTEL_EXPORTER_OTLP_PROTOCOL: the default, http/protobuf.
    const gw = await startProcess({ OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl, OTEL_BSP_SCHEDULE_DELAY: '100' })
    const port = Number(new URL(gw.url).port)
    const traceparent = (n: number) => ({ traceparent: `00-${TRACE_ID.slice(0, -1)}${n}-${PARENT}-01` })
    expect(await send(gw.url, '', ['SET', 'otlp-key', 'otlp-value'], traceparent(1))).toBe(200)
    expect(await send(gw.url, '/pipeline', [['SET', 'otlp-key', 'otlp-value'], ['GET', 'otlp-key'], ['GET', 'otlp-key']], traceparent(2))).toBe(200)
    expect(await send(gw.url, '/multi-exec', [['INCR', 'otlp-n'], ['INCR', 'otlp-n']], traceparent(3))).toBe(200)
    expect(await send(gw.url, '', ['LPUSH', 'otlp-key', 'otlp-value'], traceparent(4))).toBe(400)

    const trees = []
    for (let n = 1; n <= 4; n++) trees.push(stages(await traceAtCollector(`${TRACE_ID.slice(0, -1)}${n}`, 4), PARENT))
    expect(received[0]!.path).toBe('/v1/traces')
    expect(received[0]!.contentType).toBe('application/x-protobuf')
    expect(received[0]!.service).toBe('redis-gateway')
    const [single, pipeline, multi, error] = trees as [ReturnType<typeof stages>, ReturnType<typeof stages>, ReturnType<typeof stages>, ReturnType<typeof stages>]

    // HTTP server span: {method} {route}; url.path scrubbed of nothing here (the JSON form).
    expect(single.server.name).toBe('POST /v1/instances/{name}')
    expect(single.server.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/instances/{name}',
      'http.response.status_code': 200,
      'url.scheme': 'http',
      'url.path': '/v1/instances/main',
      'server.address': '127.0.0.1',
      'server.port': port,
    })
    expect(single.resolve.attributes).toMatchObject({ 'redis_gateway.target.name': 'main', 'redis_gateway.instance': 'main' })
    expect(single.select.attributes).toMatchObject({ 'redis_gateway.attempt': 'first', 'redis_gateway.endpoint': `127.0.0.1:${redis.port}` })
    // Redis client span: {db.operation.name}, Redis's own attributes.
    const redisAttrs = {
      'db.system.name': 'redis',
      'db.namespace': '0',
      'server.address': '127.0.0.1',
      'server.port': redis.port,
      'network.peer.address': '127.0.0.1',
      'network.peer.port': redis.port,
    }
    expect(single.client.name).toBe('SET')
    expect(single.client.attributes).toMatchObject({ ...redisAttrs, 'db.operation.name': 'SET' })
    expect(single.client.attributes).not.toHaveProperty('db.operation.batch.size')
    expect(single.client.status.code).toBe(STATUS_CODE.unset)

    expect(pipeline.server.name).toBe('POST /v1/instances/{name}/pipeline')
    expect(pipeline.client.name).toBe('PIPELINE')
    expect(pipeline.client.attributes).toMatchObject({ ...redisAttrs, 'db.operation.name': 'PIPELINE', 'db.operation.batch.size': 3 })

    expect(multi.server.name).toBe('POST /v1/instances/{name}/multi-exec')
    expect(multi.client.name).toBe('MULTI INCR')
    expect(multi.client.attributes).toMatchObject({ ...redisAttrs, 'db.operation.name': 'MULTI INCR', 'db.operation.batch.size': 2 })

    // A Redis error reply: an error of the client span (its prefix), a 4xx of the server span (not an error).
    expect(error.client.name).toBe('LPUSH')
    expect(error.client.attributes).toMatchObject({ ...redisAttrs, 'db.response.status_code': 'WRONGTYPE', 'error.type': 'WRONGTYPE' })
    expect(error.client.status).toEqual({ code: STATUS_CODE.error, message: '' })
    expect(error.server.attributes).toMatchObject({ 'http.response.status_code': 400 })
    expect(error.server.status.code).toBe(STATUS_CODE.unset)

    for (const secret of ['otlp-key', 'otlp-value', TOKEN]) expect(everything()).not.toContain(secret)
    // SIGTERM flushes what is still buffered and exits 0.
    gw.child.kill('SIGTERM')
    expect(await gw.exited).toBe(0)
  })

  it('OTLP/JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json) carries the same tree', async () => {
    received.length = 0
    const gw = await startProcess({
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    })
    expect(await get(gw.url, { traceparent: `00-${TRACE_ID}-${PARENT}-01` })).toBe(200)
    const tree = stages(await traceAtCollector(TRACE_ID, 4), PARENT)
    expect(received[0]!.contentType).toContain('application/json')
    expect(tree.client.name).toBe('GET')
    // OTLP/JSON may write 64-bit integers as numbers or strings (jsonValue takes both).
    expect(tree.client.attributes).toMatchObject({ 'db.system.name': 'redis', 'db.operation.name': 'GET', 'server.port': redis.port })
    expect(everything()).not.toContain('otlp-key')
  })

  it('OTEL_SERVICE_NAME wins over the default name', async () => {
    received.length = 0
    const gw = await startProcess({
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'gateway-eu-1',
    })
    expect(await get(gw.url)).toBe(200)
    await waitFor(() => received.length > 0, { message: 'an export' })
    expect(received[0]!.service).toBe('gateway-eu-1')
  })

  it('exports nothing without OTEL_* variables, or with OTEL_SDK_DISABLED=true', async () => {
    received.length = 0
    const plain = await startProcess({})
    const disabled = await startProcess({ OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl, OTEL_SDK_DISABLED: 'true' })
    for (let i = 0; i < 20; i++) {
      expect(await get(plain.url)).toBe(200)
      expect(await get(disabled.url)).toBe(200)
    }
    // Both processes flush on SIGTERM: had either traced, the spans would arrive by exit.
    plain.child.kill('SIGTERM')
    disabled.child.kill('SIGTERM')
    expect(await plain.exited).toBe(0)
    expect(await disabled.exited).toBe(0)
    expect(received).toEqual([])
  })
})
