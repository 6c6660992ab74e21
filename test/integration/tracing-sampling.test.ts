// Sampling through the gateway: an unsampled request records no span and builds none of the
// per-request routing events (resolve, select, upstream with a trace slot), which is what keeps
// ratio sampling cheap; a caller's sampled traceparent is still traced end to end, and an
// unsampled one is honoured.

import { AlwaysOffSampler, BasicTracerProvider, InMemorySpanExporter, ParentBasedSampler, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

const exporter = new InMemorySpanExporter()
// What OTEL_TRACES_SAMPLER=parentbased_traceidratio does for the requests its ratio leaves out.
const provider = new BasicTracerProvider({
  sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
})

let redis: RedisServer
let gw: TestGateway
const built = { resolve: 0, select: 0, upstreamWithScope: 0 }

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({ tracer: provider.getTracer('test'), instances: [{ name: 'main', endpoints: [redis.url] }] })
  gw.gateway.events.on('routeResolve', () => void built.resolve++)
  gw.gateway.events.on('routeSelect', () => void built.select++)
  gw.gateway.events.on('upstream', (e) => void (e.scope !== null && built.upstreamWithScope++))
})

afterAll(async () => {
  await gw?.stop()
  await redis?.stop()
  await provider.shutdown()
})

beforeEach(() => {
  exporter.reset()
  built.resolve = built.select = built.upstreamWithScope = 0
})

async function set(traceparent?: string): Promise<number> {
  const res = await fetch(`${gw.url}/v1/instances/main`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE_TOKEN}`, ...(traceparent ? { traceparent } : {}) },
    body: JSON.stringify(['SET', 'sampling:k', 'v']),
  })
  await res.arrayBuffer()
  return res.status
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'

describe('tracing with a sampler that leaves requests out', () => {
  it('an unsampled request records no span and builds no routing event', async () => {
    for (let i = 0; i < 20; i++) expect(await set()).toBe(200)
    expect(exporter.getFinishedSpans()).toEqual([])
    expect(built).toEqual({ resolve: 0, select: 0, upstreamWithScope: 0 })
  })

  it("a caller's unsampled traceparent (flags 00) is honoured the same way", async () => {
    expect(await set(`00-${TRACE}-00f067aa0ba902b7-00`)).toBe(200)
    expect(exporter.getFinishedSpans()).toEqual([])
    expect(built.select).toBe(0)
  })

  it("a caller's sampled traceparent (flags 01) is traced end to end in the caller's trace", async () => {
    expect(await set(`00-${TRACE}-00f067aa0ba902b7-01`)).toBe(200)
    const spans = exporter.getFinishedSpans()
    expect(spans.map((s) => s.name).sort()).toEqual(['POST /v1/instances/{name}', 'SET', 'route.resolve', 'route.select'])
    expect(new Set(spans.map((s) => s.spanContext().traceId))).toEqual(new Set([TRACE]))
    expect(built).toEqual({ resolve: 1, select: 1, upstreamWithScope: 1 })
  })
})
