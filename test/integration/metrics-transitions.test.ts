// Series exist before their first event: an instance's request, retry, hedge and transition series
// start at 0 when it appears and go when it leaves; breaker, endpoint up/down, role (failover) and
// maintenance transitions are counted, so a state shorter than a scrape interval still shows.
// Real redis-server processes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { READ_TOKEN, startGateway, type TestGateway, type TestInstance } from '../helpers/gateway.js'
import { RawConnection } from '../helpers/raw-http.js'
import { waitFor } from '../helpers/wait.js'
import { HEALTH, startTopology, type Topology } from './replication-env.js'

const A = 'redis-gateway.io/'
let topo: Topology
let gw: TestGateway

const instances = (maintenance = 'off'): TestInstance[] => [
  { name: 'main', endpoints: topo.urls, annotations: { [`${A}maintenance`]: maintenance } },
]

beforeAll(async () => {
  topo = await startTopology()
  gw = await startGateway({ instances: instances(), extra: HEALTH, watch: true })
  await waitFor(() => [...gw.gateway.pool.all()].every((e) => e.state.healthy && e.state.role !== 'unknown'), { message: 'endpoints checked' })
})

afterAll(async () => {
  await gw?.stop()
  await topo?.stop([topo.r1, topo.primary, topo.r2])
})

async function scrape(): Promise<string> {
  const res = await fetch(`${gw.opsUrl}/metrics`)
  expect(res.status).toBe(200)
  return res.text()
}

/** The value of one series (labels in declaration order), or undefined when it does not exist. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const ep = (port: number): string => `redis_endpoint="127.0.0.1:${port}"`

describe('series before their first event', () => {
  it('starts every alert and dashboard series of a new instance and endpoint at 0', async () => {
    const text = await scrape()
    const i = 'redis_instance="main"'
    for (const cls of ['read', 'write', 'pipeline', 'multi']) {
      expect(value(text, `redis_gateway_requests_total{${i},group="",class="${cls}",outcome="success",code="OK"}`), cls).toBe(0)
      expect(value(text, `redis_gateway_requests_total{${i},group="",class="${cls}",outcome="server_error",code="NOENDPOINT"}`), cls).toBe(0)
      expect(value(text, `redis_gateway_requests_total{${i},group="",class="${cls}",outcome="server_error",code="OVERLOADED"}`), cls).toBe(0)
    }
    for (const code of ['TIMEOUT', 'UPSTREAMRESET', 'NOENDPOINT']) expect(value(text, `redis_gateway_retries_total{${i},code="${code}"}`)).toBe(0)
    expect(value(text, `redis_gateway_requests_total{${i},group="",class="none",outcome="server_error",code="OVERLOADED"}`)).toBe(0)
    expect(value(text, 'redis_gateway_requests_total{redis_instance="",group="",class="none",outcome="server_error",code="OVERLOADED"}')).toBe(0)
    for (const r of ['sent', 'won']) expect(value(text, `redis_gateway_hedges_total{${i},result="${r}"}`)).toBe(0)
    for (const b of ['retry', 'hedge']) expect(value(text, `redis_gateway_budget_exhausted_total{${i},budget="${b}"}`)).toBe(0)
    for (const r of ['sse_backlog', 'write_timeout', 'request_timeout']) {
      expect(value(text, `redis_gateway_slow_client_disconnects_total{reason="${r}"}`)).toBe(0)
    }
    expect(value(text, 'redis_gateway_sse_streams')).toBe(0)
    // Static instances count as discovered at start; the outcomes the discovery alert counts start at 0.
    expect(value(text, 'redis_gateway_discovery_events_total{source="static",outcome="listed"}')).toBe(1)
    for (const o of ['ok', 'error', 'bad_annotation']) expect(value(text, `redis_gateway_discovery_events_total{source="static",outcome="${o}"}`)).toBe(0)
    expect(value(text, 'redis_gateway_discovery_last_sync_timestamp_seconds{source="static"}')).toBeGreaterThan(Date.now() / 1000 - 3600)
    for (const to of ['off', 'drain', 'read-only']) expect(value(text, `redis_gateway_maintenance_changes_total{${i},to="${to}"}`)).toBe(0)
    for (const s of topo.all) {
      const l = `${i},${ep(s.port)}`
      expect(value(text, `redis_gateway_breaker_state{${l}}`)).toBe(0)
      expect(value(text, `redis_gateway_endpoint_up{${l}}`)).toBe(1)
      for (const to of ['open', 'half-open', 'closed']) expect(value(text, `redis_gateway_breaker_transitions_total{${l},to="${to}"}`)).toBe(0)
      for (const to of ['primary', 'replica']) expect(value(text, `redis_gateway_role_changes_total{${l},to="${to}"}`)).toBe(0)
      // The first passing check of each endpoint counted as a transition to up.
      expect(value(text, `redis_gateway_endpoint_transitions_total{${l},to="down"}`)).toBe(0)
    }
  })
})

describe('replica lag', () => {
  const lag = (port: number): string => `redis_gateway_replica_lag_bytes{redis_instance="main",${ep(port)}}`

  it('keeps growing from the primary’s view while the replica is stalled, and goes when no one knows it', async () => {
    const writer = topo.primary.client()
    const r1 = topo.r1
    try {
      await waitFor(async () => value(await scrape(), lag(r1.port)) !== undefined, { message: 'r1 lag reported' })
      r1.pause()
      try {
        // Its own checks now time out: the replica is marked down, and only its primary still sees it.
        await waitFor(async () => value(await scrape(), `redis_gateway_endpoint_up{redis_instance="main",${ep(r1.port)}}`) === 0, {
          message: 'stalled r1 down',
        })
        const payload = 'x'.repeat(16 * 1024)
        await waitFor(async () => {
          await writer.set('lag:key', payload)
          return (value(await scrape(), lag(r1.port)) ?? 0) > 64 * 1024
        }, { message: "lag of stalled r1 reported from the primary's view" })
      } finally {
        r1.resume()
      }
      await waitFor(async () => (value(await scrape(), lag(r1.port)) ?? Infinity) < 64 * 1024, { message: 'r1 caught up' })

      // Killed: its own checks fail and its primary drops it from ROLE's list: unknown, not 0.
      await r1.kill()
      await waitFor(async () => value(await scrape(), lag(r1.port)) === undefined, { message: 'lag of stopped r1 dropped' })
      await r1.restart()
      await waitFor(async () => value(await scrape(), lag(r1.port)) !== undefined, { message: 'r1 lag back' })
    } finally {
      writer.disconnect()
    }
  })
})

describe('event streams', () => {
  it('counts open streams, and a subscriber that does not read as a slow-client disconnect', async () => {
    const port = Number(new URL(gw.url).port)
    const sub = await RawConnection.open(port)
    const publisher = topo.primary.client()
    try {
      sub.write(`POST /v1/instances/main/subscribe/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${READ_TOKEN}\r\nAccept: text/event-stream\r\nContent-Length: 0\r\n\r\n`)
      await waitFor(async () => value(await scrape(), 'redis_gateway_sse_streams') === 1, { message: 'one stream open' })
      sub.socket.pause()
      // Messages the client never reads: past the kernel's buffers, its backlog in the gateway
      // passes the stream's limit (1 MiB) and the gateway ends the stream.
      const payload = 'm'.repeat(256 * 1024)
      await waitFor(async () => {
        await publisher.publish('slow', payload)
        return value(await scrape(), 'redis_gateway_slow_client_disconnects_total{reason="sse_backlog"}') === 1
      }, { message: 'the slow subscriber disconnected and counted' })
      expect(value(await scrape(), 'redis_gateway_sse_streams')).toBe(0)
    } finally {
      publisher.disconnect()
      sub.close()
    }
  })
})

describe('transition counters', () => {
  const l = (port: number): string => `redis_instance="main",${ep(port)}`

  it('counts a short breaker open (open, half-open, closed)', async () => {
    const id = `127.0.0.1:${topo.r1.port}`
    for (const [from, to] of [['closed', 'open'], ['open', 'half-open'], ['half-open', 'closed']] as const) {
      gw.gateway.events.emit('breaker', { instances: ['main'], endpoint: id, from, to, reason: 'test' })
    }
    const text = await scrape()
    for (const to of ['open', 'half-open', 'closed']) expect(value(text, `redis_gateway_breaker_transitions_total{${l(topo.r1.port)},to="${to}"}`)).toBe(1)
    expect(value(text, `redis_gateway_breaker_state{${l(topo.r1.port)}}`)).toBe(0)
  })

  it('counts an endpoint going down and up', async () => {
    const down = `redis_gateway_endpoint_transitions_total{${l(topo.r1.port)},to="down"}`
    const up = `redis_gateway_endpoint_transitions_total{${l(topo.r1.port)},to="up"}`
    const upBefore = value(await scrape(), up)!
    await topo.r1.restart()
    await waitFor(async () => {
      const text = await scrape()
      return value(text, down)! >= 1 && value(text, up)! > upBefore
    }, { message: 'r1 down and up counted' })
  })

  it('counts a failover (a replica promoted)', async () => {
    const c = new Redis({ host: topo.r2.host, port: topo.r2.port, lazyConnect: true })
    try {
      await c.connect()
      await c.call('REPLICAOF', 'NO', 'ONE')
    } finally {
      c.disconnect()
    }
    await waitFor(async () => value(await scrape(), `redis_gateway_role_changes_total{${l(topo.r2.port)},to="primary"}`) === 1, {
      message: 'role change of r2 counted',
    })
  })

  it('counts a maintenance change made by a config reload', async () => {
    await gw.rewrite({ instances: instances('drain'), extra: HEALTH })
    await waitFor(async () => value(await scrape(), 'redis_gateway_maintenance_changes_total{redis_instance="main",to="drain"}') === 1, {
      message: 'maintenance change counted',
    })
  })

  it('drops the instance’s series when it leaves', async () => {
    await gw.rewrite({ instances: [{ name: 'other', endpoints: [topo.primary.url] }], extra: HEALTH })
    await waitFor(async () => !(await scrape()).includes('redis_instance="main"'), { message: 'series of main gone' })
    const text = await scrape()
    expect(value(text, 'redis_gateway_maintenance_changes_total{redis_instance="other",to="off"}')).toBe(0)
  })
})
