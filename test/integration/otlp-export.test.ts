// Tracing, the process end: the real `src/main.ts` exports its spans over OTLP/HTTP
// when (and only when) the standard OTEL_* variables say so. A local HTTP server stands in for the
// collector (Jaeger, an OpenTelemetry Collector) and decodes the OTLP/JSON it receives.

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

const TOKEN = 'otlp-test-token'
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const PARENT = 'b7ad6b7169203331'

interface OtlpSpan {
  traceId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: { key: string; value: Record<string, unknown> }[]
}
interface Received {
  path: string
  service: string | undefined
  spans: OtlpSpan[]
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
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString('utf8')))
    req.on('end', () => {
      const doc = JSON.parse(body) as {
        resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[]
      }
      for (const rs of doc.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue
        received.push({ path: req.url ?? '', service, spans: rs.scopeSpans.flatMap((s) => s.spans) })
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
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

async function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${url}/v1/instances/main`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, ...headers },
    body: JSON.stringify(['GET', 'otlp-key']),
  })
  await res.arrayBuffer()
  return res.status
}

describe('OTLP export from the gateway process', () => {
  it('exports the request tree to OTEL_EXPORTER_OTLP_ENDPOINT, continuing the traceparent, under service redis-gateway', async () => {
    received.length = 0
    const gw = await startProcess({
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    })
    expect(await get(gw.url, { traceparent: `00-${TRACE_ID}-${PARENT}-01` })).toBe(200)
    const spans = await waitFor(
      () => {
        const s = received.flatMap((r) => r.spans).filter((x) => x.traceId === TRACE_ID)
        return s.length >= 4 ? s : null
      },
      { message: 'four spans of the trace at the collector' },
    )
    expect(received[0]!.path).toBe('/v1/traces')
    expect(received[0]!.service).toBe('redis-gateway')
    const server = spans.find((s) => s.name === 'POST /v1/instances/{name}')!
    expect(server.parentSpanId).toBe(PARENT)
    expect(spans.map((s) => s.name).sort()).toEqual(['GET', 'POST /v1/instances/{name}', 'route.resolve', 'route.select'])
    const client = spans.find((s) => s.name === 'GET')!
    const attr = (k: string) => client.attributes?.find((a) => a.key === k)?.value
    expect(attr('db.system.name')).toEqual({ stringValue: 'redis' })
    // OTLP/JSON may write 64-bit integers as numbers or strings.
    expect(Number(attr('server.port')?.['intValue'])).toBe(redis.port)
    expect(JSON.stringify(spans)).not.toContain('otlp-key')
    // SIGTERM flushes what is still buffered and exits 0.
    gw.child.kill('SIGTERM')
    expect(await gw.exited).toBe(0)
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
