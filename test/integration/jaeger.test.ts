// Traces in a real Jaeger (v2, OTLP/HTTP on its own port, in-memory storage), read back through
// Jaeger's query API as its UI shows them: the service's operation list (span names: bounded, no
// endpoint addresses or keys in it), and for a single command, a pipeline, a transaction and a
// Redis error reply the span tree of each routing stage with kinds, parent links and the
// semantic-convention tags.
//
// Runs only with JAEGER_BIN set to a Jaeger v2 binary: Debian and npm package none, and nothing is
// downloaded here. One can be built from its Go module (the Go module proxy serves it):
//   mkdir /tmp/jaeger && cd /tmp/jaeger && go mod init local/jaeger &&
//   go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.75.0 &&
//   go build -o jaeger github.com/jaegertracing/jaeger/cmd/jaeger
// then JAEGER_BIN=/tmp/jaeger/jaeger npx vitest run test/integration/jaeger.test.ts.
// test/integration/otlp-export.test.ts checks the same tree, decoded from the OTLP bytes, always.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { killAll, spawnGateway } from '../helpers/gateway-process.js'

const JAEGER_BIN = process.env['JAEGER_BIN']
const TOKEN = 'jaeger-test-token'
const PARENT = 'b7ad6b7169203331'
const traceId = (n: number): string => `0af7651916cd43dd8448eb211c8031${n.toString().padStart(2, '0')}`

/** Jaeger's query API (v1, what its UI reads): one trace. */
interface JaegerTag {
  key: string
  type: string
  value: unknown
}
interface JaegerSpan {
  traceID: string
  spanID: string
  operationName: string
  references: { refType: string; traceID: string; spanID: string }[]
  tags: JaegerTag[]
  processID: string
}
interface JaegerTrace {
  traceID: string
  spans: JaegerSpan[]
  processes: Record<string, { serviceName: string; tags: JaegerTag[] }>
}

let redis: RedisServer
let dir: string
let jaeger: ChildProcess | null = null
let jaegerLog = ''
let otlpUrl: string
let queryUrl: string

describe.skipIf(JAEGER_BIN === undefined)('traces in Jaeger', () => {
  beforeAll(async () => {
    redis = await startRedis()
    dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-jaeger-'))
    const [otlp, query, grpc, health] = [await freePort(), await freePort(), await freePort(), await freePort()]
    otlpUrl = `http://127.0.0.1:${otlp}`
    queryUrl = `http://127.0.0.1:${query}`
    const config = path.join(dir, 'jaeger.yaml')
    await writeFile(
      config,
      stringify({
        service: {
          extensions: ['jaeger_storage', 'jaeger_query', 'healthcheckv2'],
          pipelines: { traces: { receivers: ['otlp'], processors: ['batch'], exporters: ['jaeger_storage_exporter'] } },
          telemetry: { metrics: { level: 'none' }, logs: { level: 'warn' } },
        },
        extensions: {
          healthcheckv2: { use_v2: true, http: { endpoint: `127.0.0.1:${health}` } },
          jaeger_storage: { backends: { memstore: { memory: { max_traces: 10000 } } } },
          jaeger_query: { storage: { traces: 'memstore' }, http: { endpoint: `127.0.0.1:${query}` }, grpc: { endpoint: `127.0.0.1:${grpc}` } },
        },
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlp}` } } } },
        processors: { batch: { timeout: '100ms' } },
        exporters: { jaeger_storage_exporter: { trace_storage: 'memstore' } },
      }),
    )
    jaeger = spawn(JAEGER_BIN!, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] })
    jaeger.stdout?.on('data', (c: Buffer) => (jaegerLog += c.toString()))
    jaeger.stderr?.on('data', (c: Buffer) => (jaegerLog += c.toString()))
    await waitFor(async () => (await fetch(`${queryUrl}/api/services`).catch(() => null))?.ok === true, {
      message: `Jaeger's query API up (log: ${jaegerLog})`,
      timeoutMs: 30_000,
    })
  }, 60_000)

  afterAll(async () => {
    await killAll()
    if (jaeger !== null && jaeger.exitCode === null) {
      const exited = new Promise((r) => jaeger!.once('exit', r))
      jaeger.kill('SIGTERM')
      await exited
    }
    await redis?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  async function startGateway(): Promise<string> {
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
    // The exporter's default protocol, http/protobuf, to Jaeger's OTLP/HTTP receiver.
    const { stdout, stderr } = spawnGateway(file, { OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl, OTEL_BSP_SCHEDULE_DELAY: '100' })
    await waitFor(async () => (await fetch(`http://127.0.0.1:${ops}/readyz`).catch(() => null))?.ok === true, {
      message: `gateway ready (output: ${stdout()}${stderr()})`,
      timeoutMs: 20_000,
    })
    return `http://127.0.0.1:${data}`
  }

  async function send(url: string, route: string, body: unknown, n: number): Promise<number> {
    const res = await fetch(`${url}/v1/instances/main${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, traceparent: `00-${traceId(n)}-${PARENT}-01` },
      body: JSON.stringify(body),
    })
    await res.arrayBuffer()
    return res.status
  }

  async function jaegerTrace(id: string): Promise<JaegerTrace> {
    return waitFor(
      async () => {
        const res = await fetch(`${queryUrl}/api/traces/${id}`)
        if (!res.ok) return null
        const doc = (await res.json()) as { data: JaegerTrace[] }
        const t = doc.data[0]
        return t !== undefined && t.spans.length >= 4 ? t : null
      },
      { message: `trace ${id} with its four spans in Jaeger (log: ${jaegerLog})`, timeoutMs: 20_000 },
    )
  }

  const tags = (s: JaegerSpan): Record<string, unknown> => Object.fromEntries(s.tags.map((t) => [t.key, t.value]))

  /** The stages of one request as Jaeger shows them: the server span (child of the caller's) and its three children. */
  function stages(t: JaegerTrace): { server: JaegerSpan; resolve: JaegerSpan; select: JaegerSpan; client: JaegerSpan } {
    const kind = (s: JaegerSpan) => tags(s)['span.kind']
    const server = t.spans.filter((s) => kind(s) === 'server')
    expect(server).toHaveLength(1)
    expect(server[0]!.references).toEqual([{ refType: 'CHILD_OF', traceID: t.traceID, spanID: PARENT }])
    const children = t.spans.filter((s) => s !== server[0])
    expect(children).toHaveLength(3)
    for (const c of children) expect(c.references).toEqual([{ refType: 'CHILD_OF', traceID: t.traceID, spanID: server[0]!.spanID }])
    const by = (pred: (s: JaegerSpan) => boolean): JaegerSpan => {
      const found = children.filter(pred)
      expect(found).toHaveLength(1)
      return found[0]!
    }
    const resolve = by((s) => s.operationName === 'route.resolve')
    const select = by((s) => s.operationName === 'route.select')
    const client = by((s) => kind(s) === 'client')
    expect(kind(resolve)).toBe('internal')
    expect(kind(select)).toBe('internal')
    expect(t.processes[server[0]!.processID]!.serviceName).toBe('redis-gateway')
    return { server: server[0]!, resolve, select, client }
  }

  it('shows each routing stage with the HTTP and Redis semantic conventions, and a bounded operation list', async () => {
    const url = await startGateway()
    const port = Number(new URL(url).port)
    expect(await send(url, '', ['SET', 'jaeger-key', 'jaeger-value'], 1)).toBe(200)
    expect(await send(url, '/pipeline', [['SET', 'jaeger-key', 'jaeger-value'], ['GET', 'jaeger-key'], ['GET', 'jaeger-key']], 2)).toBe(200)
    expect(await send(url, '/multi-exec', [['INCR', 'jaeger-n'], ['INCR', 'jaeger-n']], 3)).toBe(200)
    expect(await send(url, '', ['LPUSH', 'jaeger-key', 'jaeger-value'], 4)).toBe(400)

    const single = stages(await jaegerTrace(traceId(1)))
    expect(single.server.operationName).toBe('POST /v1/instances/{name}')
    expect(tags(single.server)).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/instances/{name}',
      'http.response.status_code': 200,
      'url.scheme': 'http',
      'url.path': '/v1/instances/main',
      'server.address': '127.0.0.1',
      'server.port': port,
    })
    const redisTags = {
      'db.system.name': 'redis',
      'db.namespace': '0',
      'server.address': '127.0.0.1',
      'server.port': redis.port,
      'network.peer.address': '127.0.0.1',
      'network.peer.port': redis.port,
    }
    expect(single.client.operationName).toBe('SET')
    expect(tags(single.client)).toMatchObject({ ...redisTags, 'db.operation.name': 'SET' })
    expect(tags(single.select)).toMatchObject({ 'redis_gateway.attempt': 'first', 'redis_gateway.endpoint': `127.0.0.1:${redis.port}` })
    expect(tags(single.resolve)).toMatchObject({ 'redis_gateway.target.name': 'main' })

    const pipeline = stages(await jaegerTrace(traceId(2)))
    expect(pipeline.server.operationName).toBe('POST /v1/instances/{name}/pipeline')
    expect(pipeline.client.operationName).toBe('PIPELINE')
    expect(tags(pipeline.client)).toMatchObject({ ...redisTags, 'db.operation.name': 'PIPELINE', 'db.operation.batch.size': 3 })

    const multi = stages(await jaegerTrace(traceId(3)))
    expect(multi.client.operationName).toBe('MULTI INCR')
    expect(tags(multi.client)).toMatchObject({ ...redisTags, 'db.operation.name': 'MULTI INCR', 'db.operation.batch.size': 2 })

    // Jaeger marks a span with status ERROR as error=true (otel.status_code ERROR).
    const error = stages(await jaegerTrace(traceId(4)))
    expect(error.client.operationName).toBe('LPUSH')
    expect(tags(error.client)).toMatchObject({ ...redisTags, 'db.response.status_code': 'WRONGTYPE', 'error.type': 'WRONGTYPE', error: true, 'otel.status_code': 'ERROR' })
    expect(tags(error.server)).toMatchObject({ 'http.response.status_code': 400 })
    expect(tags(error.server)).not.toHaveProperty('error')

    // The service's operations (Jaeger's operation list): route templates and command names only.
    const ops = await waitFor(async () => {
      const res = await fetch(`${queryUrl}/api/operations?service=redis-gateway`)
      const doc = (await res.json()) as { data: { name: string; spanKind: string }[] }
      return doc.data.length >= 9 ? doc.data : null
    })
    expect(ops.map((o) => `${o.spanKind} ${o.name}`).sort()).toEqual([
      'client LPUSH',
      'client MULTI INCR',
      'client PIPELINE',
      'client SET',
      'internal route.resolve',
      'internal route.select',
      'server POST /v1/instances/{name}',
      'server POST /v1/instances/{name}/multi-exec',
      'server POST /v1/instances/{name}/pipeline',
    ])
    const everything = JSON.stringify(await Promise.all([1, 2, 3, 4].map((n) => jaegerTrace(traceId(n)))))
    for (const secret of ['jaeger-key', 'jaeger-value', TOKEN]) expect(everything).not.toContain(secret)
  })
})
