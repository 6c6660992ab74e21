// MONITOR as Server-Sent Events (README "MONITOR"), against a real redis-server: an admin token's
// stream sees the commands other clients run, on a Redis connection of its own that is closed when
// the client leaves; read and write tokens get 403; at most MAX_MONITOR_STREAMS streams at once.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { Redis as IORedis } from 'ioredis'
import { MAX_MONITOR_STREAMS } from '../../src/http/sse.js'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { readEventLines } from '../helpers/sse.js'

let redis: RedisServer
let gw: TestGateway
let direct: IORedis

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
  direct = redis.client()
})
afterAll(async () => {
  direct?.disconnect()
  await gw?.stop()
  await redis?.stop()
})

/** Connections in monitor mode on the server (CLIENT LIST flag O). */
async function monitors(): Promise<number> {
  const list = (await direct.client('LIST')) as string
  return list.split('\n').filter((l) => /\bflags=\S*O/.test(l)).length
}

interface Stream {
  readonly status: number
  readonly headers: Headers
  /** Every `data:` payload so far. */
  readonly events: string[]
  /** Every `: comment` so far. */
  readonly comments: string[]
  /** The server ended the response. */
  readonly ended: boolean
  text(): Promise<string>
  close(): void
}

async function openMonitor(token: string, method = 'POST', base = gw.base('main')): Promise<Stream> {
  const ac = new AbortController()
  const res = await fetch(`${base}/monitor`, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    signal: ac.signal,
  })
  const lines = res.status === 200 && res.body ? readEventLines(res.body, ac.signal) : null
  return {
    status: res.status,
    headers: res.headers,
    events: lines?.events ?? [],
    comments: lines?.comments ?? [],
    get ended() {
      return lines?.ended ?? false
    },
    text: () => res.text(),
    close: () => ac.abort(),
  }
}

describe('MONITOR over SSE', () => {
  test("an admin token's stream sees a command another client runs; its connection closes when the client leaves", async () => {
    expect(await monitors()).toBe(0)
    const s = await openMonitor(ADMIN_TOKEN)
    expect(s.status).toBe(200)
    expect(s.headers.get('content-type')).toMatch(/^text\/event-stream/)
    await waitFor(() => s.events[0] === 'OK', { message: 'data: OK' })
    expect(await monitors()).toBe(1)
    // As the admin level user the gateway provisions (its rules allow MONITOR), not the gateway's own.
    const line = ((await direct.client('LIST')) as string).split('\n').find((l) => /\bflags=\S*O/.test(l))!
    expect(line).toMatch(/\buser=redis-gateway-admin-/)

    // Another client, through the gateway and directly.
    const r = await fetch(`${gw.base('main')}/set/monitored-key/line1%0Aline2`, { headers: { authorization: `Bearer ${WRITE_TOKEN}` } })
    expect(r.status).toBe(200)
    await direct.get('monitored-direct')
    const set = await waitFor(() => s.events.find((e) => e.includes('"set" "monitored-key"')), { message: 'the SET in the monitor stream' })
    // Redis's own line: time, [db client], the command quoted and escaped (no raw line break).
    expect(set).toMatch(/^\d+\.\d+ \[0 [^\]]+\] "set" "monitored-key" "line1\\nline2"$/)
    await waitFor(() => s.events.some((e) => e.includes('"get" "monitored-direct"')), { message: 'the direct GET' })

    s.close()
    await waitFor(async () => (await monitors()) === 0, { message: 'the monitor connection closed after the client left' })
  })

  test('read and write tokens get 403; without Accept: text/event-stream, 400', async () => {
    for (const token of [READ_TOKEN, WRITE_TOKEN]) {
      const s = await openMonitor(token)
      expect(s.status).toBe(403)
      expect(JSON.parse(await s.text())).toEqual({ error: expect.stringMatching(/^FORBIDDEN .*MONITOR needs admin/) })
    }
    const res = await fetch(`${gw.base('main')}/monitor`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    expect(res.status).toBe(400)
    expect(await monitors()).toBe(0)
  })

  test(`at most ${MAX_MONITOR_STREAMS} streams at once (503 OVERLOADED beyond), and a GET works too`, async () => {
    const open: Stream[] = []
    try {
      for (let i = 0; i < MAX_MONITOR_STREAMS; i++) {
        const s = await openMonitor(ADMIN_TOKEN, i === 0 ? 'GET' : 'POST')
        expect(s.status).toBe(200)
        open.push(s)
      }
      await waitFor(async () => (await monitors()) === MAX_MONITOR_STREAMS, { message: 'one monitor connection per stream' })
      const extra = await openMonitor(ADMIN_TOKEN)
      expect(extra.status).toBe(503)
      expect(extra.headers.get('retry-after')).toBe('1')
      expect(JSON.parse(await extra.text()).error).toMatch(/^OVERLOADED /)
    } finally {
      for (const s of open) s.close()
    }
    await waitFor(async () => (await monitors()) === 0, { message: 'all monitor connections closed' })
    const again = await openMonitor(ADMIN_TOKEN)
    expect(again.status).toBe(200)
    again.close()
    await waitFor(async () => (await monitors()) === 0, { message: 'closed again' })
  })

  test('a gateway shutting down ends the stream with a comment and closes its Redis connection', async () => {
    const own = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
    let stopped = false
    try {
      const s = await openMonitor(ADMIN_TOKEN, 'POST', own.base('main'))
      expect(s.status).toBe(200)
      await waitFor(() => s.events[0] === 'OK', { message: 'data: OK' })
      await waitFor(async () => (await monitors()) === 1, { message: 'one monitor' })
      await own.stop()
      stopped = true
      await waitFor(() => s.ended, { message: 'the stream ended' })
      expect(s.comments).toContain('gateway shutting down')
      await waitFor(async () => (await monitors()) === 0, { message: 'the monitor connection closed' })
    } finally {
      if (!stopped) await own.stop()
    }
  })
})
