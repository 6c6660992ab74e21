// Tests for the TCP fault proxy, against a real redis-server with ioredis: each fault has the
// effect a fault-injection test relies on, heal() undoes them all, and close() leaves nothing
// behind (sockets, listeners, timers).

import net from 'node:net'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { FaultProxy, startFaultProxy } from './fault-proxy.js'
import { startRedis, type RedisServer } from './redis-server.js'
import { waitFor } from './wait.js'

let redis: RedisServer
let proxy: FaultProxy
const clients = new Set<Redis>()

/** An ioredis client through the proxy that never reconnects or queues, so faults show directly. */
function viaProxy(opts: RedisOptions = {}): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port: proxy.port,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    lazyConnect: true,
    ...opts,
  })
  client.on('error', () => {})
  clients.add(client)
  return client
}

async function connected(opts: RedisOptions = {}): Promise<Redis> {
  const client = viaProxy(opts)
  await client.connect()
  return client
}

/** Resolves with 'pending' if `p` has not settled within ms. */
function within<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)))]).finally(() =>
    clearTimeout(timer),
  )
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
  })
}

async function redisClients(): Promise<number> {
  const m = /connected_clients:(\d+)/.exec(await redis.info('clients'))
  return Number(m?.[1]) - 1 // info() counts its own connection
}

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

describe('FaultProxy', () => {
  beforeAll(async () => {
    proxy = await startFaultProxy(redis)
  })
  afterEach(async () => {
    for (const c of clients) c.disconnect()
    clients.clear()
    await proxy.heal()
    await waitFor(() => proxy.connections === 0, { message: 'proxy connections closed' })
  })
  afterAll(async () => {
    await proxy?.close()
  })

  it('forwards traffic and counts connections', async () => {
    expect(proxy.port).toBeGreaterThan(0)
    expect(proxy.port).not.toBe(redis.port)
    expect(proxy.url).toBe(`redis://127.0.0.1:${proxy.port}`)
    const a = await connected()
    const b = await connected()
    await a.set('fp:k', 'v')
    expect(await b.get('fp:k')).toBe('v')
    // Binary-safe and large payloads pass unchanged.
    const big = Buffer.alloc(3 * 1024 * 1024, 0xab)
    big[0] = 0
    await a.set('fp:big', big)
    expect((await b.getBuffer('fp:big'))?.equals(big)).toBe(true)
    expect(proxy.connections).toBe(2)
    a.disconnect()
    await waitFor(() => proxy.connections === 1, { message: 'one connection closed' })
    b.disconnect()
    await waitFor(() => proxy.connections === 0, { message: 'both connections closed' })
  })

  it('delay(ms) adds latency in both directions and keeps order', async () => {
    const c = await connected()
    await c.ping()
    proxy.delay(60)
    const t0 = performance.now()
    expect(await c.ping()).toBe('PONG')
    const rtt = performance.now() - t0
    // Once on the way in and once on the way out (lower bound only: this tests the helper).
    expect(rtt).toBeGreaterThanOrEqual(2 * 60 - 1)

    // Many commands in flight, the delay changed while they flow: replies stay in order.
    const pipeline = c.pipeline()
    for (let i = 0; i < 200; i++) pipeline.incr('fp:order')
    const pending = pipeline.exec()
    proxy.delay(5)
    const replies = await pending
    expect(replies?.map(([err, v]) => (err ? String(err) : v))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
    await c.del('fp:order')

    // Cleared: a round trip no longer pays the delay twice (a loose bound, only to show it is off).
    proxy.delay(0)
    const t1 = performance.now()
    await c.ping()
    expect(performance.now() - t1).toBeLessThan(2 * 60)
  })

  it('stall() holds a command (a client timeout fires) and resume() completes it', async () => {
    const c = await connected()
    const timed = await connected({ commandTimeout: 200 })
    await c.set('fp:stall', 'held')
    proxy.stall()
    const started = performance.now()
    const held = c.get('fp:stall')
    await expect(timed.get('fp:stall')).rejects.toThrow(/timed out/i)
    expect(performance.now() - started).toBeGreaterThanOrEqual(199)
    expect(await within(held, 100)).toBe('pending')
    // The sockets stay open while stalled, and new connects are still accepted.
    expect(proxy.connections).toBe(2)
    expect(await connectOutcome(proxy.port)).toBe('connected')
    proxy.resume()
    expect(await held).toBe('held')
    expect(await c.get('fp:stall')).toBe('held')
  })

  it('reset() closes every connection with an RST', async () => {
    const c = await connected()
    await c.ping()
    const before = await redisClients()
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
    const raw = net.connect({ host: '127.0.0.1', port: proxy.port })
    await new Promise((resolve) => raw.once('connect', resolve))
    const rawError = new Promise<string>((resolve) => raw.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')))
    await waitFor(() => proxy.connections === 2)
    await proxy.reset()
    expect(proxy.connections).toBe(0)
    await closed
    expect(c.status).not.toBe('ready')
    await expect(c.ping()).rejects.toThrow()
    // A plain socket sees a reset, not a clean end.
    raw.write('PING\r\n')
    expect(await rawError).toBe('ECONNRESET')
    raw.destroy()
    // The upstream halves are gone too: the server sees its clients leave.
    await waitFor(async () => (await redisClients()) <= before - 1, { message: 'redis-server lost the proxied client' })
    // New connections work at once.
    expect(await (await connected()).ping()).toBe('PONG')
  })

  it('refuse(true) makes connects fail with ECONNREFUSED; refuse(false) listens again on the same port', async () => {
    const existing = await connected()
    const port = proxy.port
    await proxy.refuse(true)
    expect(proxy.faults.refusing).toBe(true)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
    const refused = viaProxy()
    const connectError = new Promise<string>((resolve) => refused.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)))
    await expect(refused.connect()).rejects.toThrow()
    expect(await connectError).toBe('ECONNREFUSED')
    // Existing connections are not touched.
    expect(await existing.ping()).toBe('PONG')
    await proxy.refuse(false)
    expect(proxy.port).toBe(port)
    expect(await connectOutcome(port)).toBe('connected')
    expect(await (await connected()).ping()).toBe('PONG')
  })

  it('heal() clears delay, stall and refuse at once and flushes held data', async () => {
    const c = await connected()
    await c.set('fp:heal', '1')
    proxy.delay(300)
    proxy.stall()
    await proxy.refuse(true)
    const held = c.incr('fp:heal')
    expect(await within(held, 100)).toBe('pending')
    await proxy.heal()
    expect(proxy.faults).toEqual({ delayMs: 0, stalled: false, refusing: false })
    expect(await held).toBe(2)
    const t0 = performance.now()
    expect(await (await connected()).ping()).toBe('PONG')
    // The 300 ms delay is gone (it would cost at least 600 ms per round trip).
    expect(performance.now() - t0).toBeLessThan(600)
  })

  it('a target that is down resets the client connection', async () => {
    const dead = await startFaultProxy({ port: await (async () => {
      // A port nobody listens on: take one from a proxy and close it.
      const p = await startFaultProxy(redis)
      const port = p.port
      await p.close()
      return port
    })() })
    try {
      const socket = net.connect({ host: '127.0.0.1', port: dead.port })
      const outcome = await new Promise<string>((resolve) => {
        socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''))
        socket.once('close', () => resolve('closed'))
      })
      expect(outcome).toBe('ECONNRESET')
      await waitFor(() => dead.connections === 0)
    } finally {
      await dead.close()
    }
  })
})

describe('FaultProxy.close()', () => {
  it('closes every socket, the listener and every timer', async () => {
    const resources = (): Record<string, number> => {
      const counts: Record<string, number> = {}
      for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
      return counts
    }
    const before = resources()
    proxy = await startFaultProxy(redis)
    const a = await connected()
    const b = await connected()
    proxy.delay(50)
    proxy.stall()
    const heldA = a.ping()
    const heldB = b.ping()
    expect(proxy.connections).toBe(2)
    await proxy.close()
    expect(proxy.connections).toBe(0)
    await expect(heldA).rejects.toThrow()
    await expect(heldB).rejects.toThrow()
    expect(await connectOutcome(proxy.port)).toBe('ECONNREFUSED')
    await proxy.close() // idempotent
    for (const c of clients) c.disconnect()
    clients.clear()
    // No listener, socket or timer of the proxy is left (ioredis' own sockets are gone too).
    await waitFor(() => {
      const after = resources()
      for (const kind of ['TCPServerWrap', 'TCPSocketWrap', 'Timeout']) {
        expect(after[kind] ?? 0, `${kind}: ${JSON.stringify(after)} vs ${JSON.stringify(before)}`).toBeLessThanOrEqual(before[kind] ?? 0)
      }
    })
  })
})
