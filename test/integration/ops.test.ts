// The ops plane on an in-process gateway (README "Ops plane"): health and readiness, Prometheus
// text with every declared metric and only bounded labels, request counters that move by exactly
// the requests made, the in-flight gauge, and endpoint_up following a real redis-server's life.

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, WRITE_TOKEN, READ_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** Metric names declared in src/telemetry/metrics.ts, read from the source so new metrics are covered. */
function declaredMetricNames(): string[] {
  const src = readFileSync(path.join(repoRoot, 'src/telemetry/metrics.ts'), 'utf8')
  return [...src.matchAll(/\bname:\s*['"`](redis_gateway_[a-z0-9_]+)['"`]/g)].map((m) => m[1]!)
}

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

function parseSamples(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!
    out.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return out
}

/** Sum of a metric's samples whose labels include `labels`. */
function sum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0)
}

let redis: RedisServer
let gw: TestGateway

async function metricsText(): Promise<string> {
  const res = await fetch(`${gw.opsUrl}/metrics`)
  expect(res.status).toBe(200)
  return res.text()
}
const samples = async (): Promise<Sample[]> => parseSamples(await metricsText())

async function command(args: unknown[], token = WRITE_TOKEN, instance = 'main'): Promise<Response> {
  return fetch(gw.base(instance), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify(args),
  })
}

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({
    instances: [{ name: 'main', endpoints: [redis.url] }],
    // Held requests (CLIENT PAUSE below) must wait, not time out.
    extra: { redis: { commandTimeout: '8s', connectTimeout: '1s' } },
  })
})
afterAll(async () => {
  await gw?.stop()
  await redis?.stop()
})

describe('health and readiness', () => {
  it('/healthz is 200 JSON', async () => {
    const res = await fetch(`${gw.opsUrl}/healthz`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.json()).toEqual({ status: 'ok' })
  })

  it('/readyz is 200 once started', async () => {
    const res = await fetch(`${gw.opsUrl}/readyz`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.json()).toEqual({ status: 'ready' })
  })

  it('an unknown ops path is a 404 with a JSON error', async () => {
    for (const p of ['/nope', '/metrics/extra', '/healthz/']) {
      const res = await fetch(`${gw.opsUrl}${p}`)
      expect(res.status, p).toBe(404)
      expect(res.headers.get('content-type')).toMatch(/^application\/json/)
      const body = (await res.json()) as { error?: unknown }
      expect(typeof body.error).toBe('string')
      expect(body.error as string).toMatch(/^NOTFOUND /)
    }
  })

  it('the data plane is not served on the ops port, nor the ops plane on the data port', async () => {
    expect((await fetch(`${gw.opsUrl}/v1/instances/main`, { method: 'POST', body: '["PING"]' })).status).toBe(404)
    const res = await fetch(`${gw.url}/metrics`)
    expect(res.status).toBe(404)
    expect(await res.text()).not.toContain('redis_gateway_')
  })
})

describe('/metrics', () => {
  it('is Prometheus text declaring every metric in src/telemetry/metrics.ts', async () => {
    const names = declaredMetricNames()
    // Guard against the extraction silently finding nothing.
    expect(names.length).toBeGreaterThanOrEqual(8)
    expect(names).toContain('redis_gateway_requests_total')
    expect(names).toContain('redis_gateway_endpoint_up')

    const res = await fetch(`${gw.opsUrl}/metrics`)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await res.text()
    for (const n of names) {
      expect(text, n).toMatch(new RegExp(`^# HELP ${n} \\S`, 'm'))
      expect(text, n).toMatch(new RegExp(`^# TYPE ${n} (counter|gauge|histogram|summary)$`, 'm'))
    }
    // Every sample line parses (parseSamples throws otherwise).
    expect(parseSamples(text).length).toBeGreaterThan(0)
  })

  it('uses only bounded labels, never keys, unknown names or tokens from requests', async () => {
    const key = `ops-secret-key-${Date.now()}`
    expect((await command(['SET', key, 'v'])).status).toBe(200)
    expect((await command(['GET', key], READ_TOKEN)).status).toBe(200)
    expect((await command(['GET', key], READ_TOKEN, 'no-such-instance-xyz')).status).toBe(404)
    expect((await command(['GET', key], 'wrong-token-abc')).status).toBe(401)
    expect((await command(['NOSUCHCOMMANDZZ', key])).status).toBe(400)
    expect((await fetch(`${gw.url}/v1/instances/main/get/${key}?_token=${WRITE_TOKEN}&tracking=q-${key}`)).status).toBe(400)

    const text = await metricsText()
    for (const leaked of [key, 'no-such-instance-xyz', 'wrong-token-abc', 'NOSUCHCOMMANDZZ', WRITE_TOKEN, READ_TOKEN]) {
      expect(text, leaked).not.toContain(leaked)
    }
    const allowed = new Set(['redis_instance', 'group', 'redis_endpoint', 'role', 'class', 'outcome', 'code', 'source', 'result', 'to', 'budget', 'reason', 'le'])
    for (const s of parseSamples(text)) {
      // The prom-client default metrics (process_*, nodejs_*) carry their own fixed labels (version, space, kind...).
      if (!s.name.startsWith('redis_gateway_')) continue
      for (const label of Object.keys(s.labels)) expect(allowed.has(label), `${s.name} label ${label}`).toBe(true)
    }
    // Known label values only.
    for (const s of parseSamples(text).filter((x) => x.name === 'redis_gateway_requests_total')) {
      expect(['', 'main']).toContain(s.labels.redis_instance)
      expect(['success', 'client_error', 'server_error']).toContain(s.labels.outcome)
      expect(s.labels.code).toMatch(/^[A-Z]+$/)
    }
  })

  it('requests_total for an instance and class rises by exactly N after N requests', async () => {
    const N = 25
    const before = await samples()
    const reads0 = sum(before, 'redis_gateway_requests_total', { redis_instance: 'main', class: 'read' })
    const writes0 = sum(before, 'redis_gateway_requests_total', { redis_instance: 'main', class: 'write' })
    const readOk0 = sum(before, 'redis_gateway_requests_total', { redis_instance: 'main', class: 'read', outcome: 'success', code: 'OK' })
    const durCount0 = sum(before, 'redis_gateway_request_duration_seconds_count', { redis_instance: 'main', class: 'read' })

    for (let i = 0; i < N; i++) expect((await command(['SET', `ops:n:${i}`, String(i)])).status).toBe(200)
    const reads = await Promise.all(Array.from({ length: N }, (_, i) => command(['GET', `ops:n:${i}`], READ_TOKEN)))
    for (const r of reads) expect(r.status).toBe(200)

    const after = await samples()
    expect(sum(after, 'redis_gateway_requests_total', { redis_instance: 'main', class: 'read' }) - reads0).toBe(N)
    expect(sum(after, 'redis_gateway_requests_total', { redis_instance: 'main', class: 'write' }) - writes0).toBe(N)
    expect(
      sum(after, 'redis_gateway_requests_total', { redis_instance: 'main', class: 'read', outcome: 'success', code: 'OK' }) - readOk0,
    ).toBe(N)
    expect(sum(after, 'redis_gateway_request_duration_seconds_count', { redis_instance: 'main', class: 'read' }) - durCount0).toBe(N)
  })

  it('a Redis error reply is counted as a client error with code REDIS', async () => {
    await command(['SET', 'ops:str', 'x'])
    const labels = { redis_instance: 'main', class: 'write', outcome: 'client_error', code: 'REDIS' }
    const before = sum(await samples(), 'redis_gateway_requests_total', labels)
    const res = await command(['LPUSH', 'ops:str', 'y'])
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toMatch(/^WRONGTYPE/)
    expect(sum(await samples(), 'redis_gateway_requests_total', labels) - before).toBe(1)
  })

  it('inflight_requests counts requests being served and is back to 0 (never negative) after', async () => {
    const gauge = async (): Promise<number> => sum(await samples(), 'redis_gateway_inflight_requests')
    expect(await gauge()).toBe(0)

    // Hold 5 requests inside Redis; the unauthorised and unknown-instance ones finish at once.
    await redis.client().call('CLIENT', 'PAUSE', '1500', 'ALL')
    const held = Array.from({ length: 5 }, (_, i) => command(['GET', `ops:n:${i}`], READ_TOKEN))
    await waitFor(async () => (await gauge()) === 5, { timeoutMs: 5_000, intervalMs: 20, message: 'inflight_requests to be 5' })
    expect((await command(['PING'], 'bad-token')).status).toBe(401)
    expect((await command(['PING'], WRITE_TOKEN, 'nope')).status).toBe(404)
    expect(await gauge()).toBe(5)

    for (const r of await Promise.all(held)) expect(r.status).toBe(200)
    await waitFor(async () => (await gauge()) === 0, { timeoutMs: 5_000, message: 'inflight_requests back to 0' })
    // Errors of every kind leave it at 0 too.
    await command(['GET'], READ_TOKEN)
    await fetch(`${gw.base('main')}/pipeline`, { method: 'POST', headers: { authorization: `Bearer ${WRITE_TOKEN}` }, body: 'not json' })
    await fetch(gw.base('main'), { method: 'DELETE' })
    expect(await gauge()).toBe(0)
  })

  it('routing_table_instances is the number of instances', async () => {
    expect(sum(await samples(), 'redis_gateway_routing_table_instances')).toBe(1)
  })
})

describe('endpoint_up', () => {
  it('is 1 while redis runs, 0 after it is killed, 1 again after it restarts', async () => {
    const own = await startRedis({ appendOnly: true })
    const g = await startGateway({ instances: [{ name: 'ep', endpoints: [own.url] }] })
    try {
      const labels = { redis_instance: 'ep', redis_endpoint: `127.0.0.1:${own.port}` }
      const up = async (): Promise<number | null> => {
        const s = parseSamples(await (await fetch(`${g.opsUrl}/metrics`)).text()).filter(
          (x) => x.name === 'redis_gateway_endpoint_up' && x.labels.redis_instance === labels.redis_instance && x.labels.redis_endpoint === labels.redis_endpoint,
        )
        return s.length === 1 ? s[0]!.value : null
      }
      await waitFor(async () => (await up()) === 1, { timeoutMs: 5_000, message: 'endpoint_up 1 while redis runs' })

      await own.kill()
      await waitFor(async () => (await up()) === 0, { timeoutMs: 5_000, message: 'endpoint_up 0 after redis was killed' })
      const down = await fetch(`${g.base('ep')}/ping`, { headers: { authorization: `Bearer ${WRITE_TOKEN}` } })
      expect(down.status).toBe(503)

      await own.restart()
      await waitFor(async () => (await up()) === 1, { timeoutMs: 10_000, message: 'endpoint_up 1 after redis restarted' })
    } finally {
      await g.stop()
      await own.stop()
    }
  })
})
