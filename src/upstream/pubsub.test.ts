// PubSubHub (pubsub.ts) on its RespConnection in push mode, against real redis-server processes
// and, for a broken or hostile Redis, a fake TCP server: binary-safe messages and pmessages in
// order, reference counting and closing, confirmation before subscribe() resolves, the connect and
// command timeouts, ACL refusals (first subscribe and resubscribe), resubscribing after a restart,
// messages over the cap dropped without losing the connection, and protocol attacks that reset
// the connection (never the process) after which the hub subscribes again.

import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { freePort } from '../../test/helpers/ports.js'
import { startRedis, type RedisServer } from '../../test/helpers/redis-server.js'
import { waitFor } from '../../test/helpers/wait.js'
import type { EndpointSpec } from '../core/topology.js'
import { NoEndpointError, TooLargeError } from '../core/errors.js'
import type { UpstreamOptions } from './endpoint-client.js'
import { PubSubHub, type SubscriptionSink } from './pubsub.js'
import { RespConnection } from './resp-connection.js'

const MiB = 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Helpers

interface Received {
  readonly pattern: Buffer | null
  readonly channel: Buffer
  readonly payload: Buffer
}

interface Recorder extends SubscriptionSink {
  readonly got: Received[]
  readonly closes: string[]
}

function recorder(): Recorder {
  const r: Recorder = {
    got: [],
    closes: [],
    message(pattern, channel, payload) {
      // Copies: the hub hands over slices of the connection's read buffers.
      r.got.push({ pattern: pattern && Buffer.from(pattern), channel: Buffer.from(channel), payload: Buffer.from(payload) })
    },
    close(reason) {
      r.closes.push(reason)
    },
  }
  return r
}

const payloads = (r: Recorder): string[] => r.got.map((m) => m.payload.toString())

interface Hub {
  readonly hub: PubSubHub
  readonly faults: Error[]
}

const hubs: PubSubHub[] = []
const servers: RedisServer[] = []
const closers: (() => Promise<void>)[] = []

afterEach(async () => {
  for (const h of hubs.splice(0)) h.stop('test over')
  for (const c of closers.splice(0)) await c()
})
afterAll(async () => {
  for (const s of servers.splice(0)) await s.stop()
})

function hub(target: { host: string; port: number }, opts: Partial<UpstreamOptions> = {}): Hub {
  const spec: EndpointSpec = { id: `${target.host}:${target.port}`, host: target.host, port: target.port, ready: true }
  const faults: Error[] = []
  const h = new PubSubHub(
    spec,
    { username: '', password: '', tls: false, commandTimeoutMs: 2_000, connectTimeoutMs: 1_000, maxReplyBytes: MiB, ...opts },
    { onFault: (err) => faults.push(err) },
  )
  hubs.push(h)
  return { hub: h, faults }
}

/** The gateway's subscriber connections on `server` (CLIENT LIST, flag P), with their ids and users. */
async function subscribers(server: RedisServer): Promise<{ id: string; user: string }[]> {
  return (await server.clientList()).filter((c) => (c['flags'] ?? '').includes('P')).map((c) => ({ id: c['id']!, user: c['user']! }))
}

async function numsub(server: RedisServer, channel: string | Buffer): Promise<number> {
  const reply = (await server.client().pubsub('NUMSUB', channel as string)) as [string, number]
  return Number(reply[1])
}

/**
 * A fake Redis for the subscriber: parses the commands it receives and hands each to `onCommand`
 * with the connection's number (1, 2, ...), so a test scripts what each connection gets.
 */
async function fakeRedis(
  onCommand: (conn: number, args: Buffer[], socket: net.Socket) => void,
): Promise<{ port: number; connections: () => number; firstBytes: () => Buffer[] }> {
  let n = 0
  const sockets = new Set<net.Socket>()
  const first: Buffer[] = []
  const server = net.createServer((socket) => {
    const conn = ++n
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      if (buf.length === 0 && first.length < conn) first.push(Buffer.from(chunk.subarray(0, 3)))
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const parsed = parseCommand(buf)
        if (parsed === null) return
        buf = buf.subarray(parsed.end)
        onCommand(conn, parsed.args, socket)
      }
    })
  })
  const port = await freePort('127.0.0.1')
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  closers.push(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { port, connections: () => n, firstBytes: () => first }
}

/** One `*N $len arg ...` command from the front of `buf`, or null while incomplete. */
function parseCommand(buf: Buffer): { args: Buffer[]; end: number } | null {
  const line = (at: number): { text: string; next: number } | null => {
    const crlf = buf.indexOf('\r\n', at)
    return crlf < 0 ? null : { text: buf.toString('latin1', at, crlf), next: crlf + 2 }
  }
  const head = line(0)
  if (head === null) return null
  const count = Number(head.text.slice(1))
  const args: Buffer[] = []
  let at = head.next
  for (let i = 0; i < count; i++) {
    const len = line(at)
    if (len === null) return null
    const size = Number(len.text.slice(1))
    if (buf.length < len.next + size + 2) return null
    args.push(buf.subarray(len.next, len.next + size))
    at = len.next + size + 2
  }
  return { args, end: at }
}

const bulk = (b: string | Buffer): Buffer => {
  const v = typeof b === 'string' ? Buffer.from(b) : b
  return Buffer.concat([Buffer.from(`$${v.length}\r\n`), v, Buffer.from('\r\n')])
}
const confirmation = (kind: string, name: Buffer, count: number): Buffer => Buffer.concat([Buffer.from('*3\r\n'), bulk(kind), bulk(name), Buffer.from(`:${count}\r\n`)])
const message = (channel: string, payload: string): Buffer => Buffer.concat([Buffer.from('*3\r\n'), bulk('message'), bulk(channel), bulk(payload)])

// ---------------------------------------------------------------------------------------------

describe('PubSubHub on a real Redis', () => {
  let redis: RedisServer

  beforeAll(async () => {
    redis = await startRedis()
    servers.push(redis)
  })

  test('message and pmessage deliver binary channel names, patterns and payloads intact and in order', async () => {
    const { hub: h, faults } = hub(redis)
    const chan = Buffer.from([0x63, 0x00, 0xff, 0x80, 0x0d, 0x0a, 0xe2, 0x82])
    const patternText = Buffer.from([0x70, 0xfe, 0x00])
    const pattern = Buffer.concat([patternText, Buffer.from('*')])
    const plain = recorder()
    const pat = recorder()
    await h.subscribe('channel', [chan], plain)
    await h.subscribe('pattern', [pattern], pat)
    // Resolved only once Redis confirmed: subscribed there now, not eventually.
    expect(await numsub(redis, chan)).toBe(1)
    expect(Number(await redis.client().pubsub('NUMPAT'))).toBe(1)
    expect(h.size).toEqual({ channels: 1, patterns: 1, connected: true })

    const direct = redis.client()
    const sent = Array.from({ length: 20 }, (_, i) => Buffer.concat([randomBytes(i * 50), Buffer.from([0x00, 0xff, 0x0d, 0x0a, i])]))
    for (const p of sent) await direct.publish(chan, p)
    const patChannel = Buffer.concat([patternText, Buffer.from([0x00, 0x01, 0xff])])
    await direct.publish(patChannel, Buffer.from([0xde, 0xad, 0xbe, 0xef]))
    await waitFor(() => plain.got.length === sent.length && pat.got.length === 1, { message: 'every message' })
    expect(plain.got.map((m) => m.payload)).toEqual(sent)
    for (const m of plain.got) {
      expect(m.pattern).toBeNull()
      expect(m.channel.equals(chan)).toBe(true)
    }
    expect(pat.got[0]!.pattern!.equals(pattern)).toBe(true)
    expect(pat.got[0]!.channel.equals(patChannel)).toBe(true)
    expect(pat.got[0]!.payload.equals(Buffer.from([0xde, 0xad, 0xbe, 0xef]))).toBe(true)
    expect(faults).toEqual([])
  })

  test('names are reference-counted; the connection closes when the last one goes', async () => {
    const { hub: h } = hub(redis)
    const a = recorder()
    const b = recorder()
    // Both at once: the second waits for the first's SUBSCRIBE instead of sending its own.
    const [offA, offB] = await Promise.all([h.subscribe('channel', [Buffer.from('rc:1'), Buffer.from('rc:2')], a), h.subscribe('channel', [Buffer.from('rc:1')], b)])
    expect(await numsub(redis, 'rc:1')).toBe(1)
    expect(await subscribers(redis)).toHaveLength(1)
    await redis.client().publish('rc:1', 'both')
    await waitFor(() => a.got.length === 1 && b.got.length === 1)

    offA()
    offA() // idempotent
    // rc:2 had only a: unsubscribed in Redis; rc:1 still has b.
    await waitFor(async () => (await numsub(redis, 'rc:2')) === 0, { message: 'rc:2 unsubscribed' })
    expect(await numsub(redis, 'rc:1')).toBe(1)
    expect(h.size).toEqual({ channels: 1, patterns: 0, connected: true })
    await redis.client().publish('rc:1', 'only b')
    await waitFor(() => b.got.length === 2)
    expect(payloads(a)).toEqual(['both'])

    offB()
    expect(h.size).toEqual({ channels: 0, patterns: 0, connected: false })
    await waitFor(async () => (await subscribers(redis)).length === 0, { message: 'the subscriber connection to close' })
    // A later subscribe opens a new one.
    const c = recorder()
    await h.subscribe('channel', [Buffer.from('rc:1')], c)
    expect(await subscribers(redis)).toHaveLength(1)
  })

  test('a message larger than the cap is dropped as it streams; the next one arrives on the same connection', async () => {
    const { hub: h, faults } = hub(redis, { maxReplyBytes: MiB })
    const sink = recorder()
    await h.subscribe('channel', [Buffer.from('big')], sink)
    const [before] = await subscribers(redis)
    const direct = redis.client()
    // A write token can publish this from a script: 5 MB built inside Redis.
    expect(await direct.eval("return redis.call('PUBLISH', KEYS[1], string.rep('x', 5000000))", 1, 'big')).toBe(1)
    // Under the cap: delivered whole.
    const half = randomBytes(MiB / 2)
    await direct.publish('big', half)
    await direct.publish('big', 'small')
    await waitFor(() => sink.got.length === 2, { message: 'the messages after the big one' })
    expect(sink.got[0]!.payload.equals(half)).toBe(true)
    expect(payloads(sink)[1]).toBe('small')
    expect(faults.map((f) => f.message)).toEqual([expect.stringMatching(/dropped: reply is larger than 1048576 bytes/)])
    // Still subscribed on the very same connection: nothing was reset.
    expect(h.size.connected).toBe(true)
    expect(await subscribers(redis)).toEqual([before])
    expect(sink.closes).toEqual([])
  })

  test('subscribe() rejects with NoEndpointError when nothing listens, within the connect timeout', async () => {
    const port = await freePort('127.0.0.1')
    const { hub: h } = hub({ host: '127.0.0.1', port }, { connectTimeoutMs: 300 })
    const started = performance.now()
    const err = await h.subscribe('channel', [Buffer.from('x')], recorder()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoEndpointError)
    expect((err as Error).message).toMatch(/not connected within 300 ms \(.*ECONNREFUSED/)
    expect(performance.now() - started).toBeLessThan(2_000)
    // Nothing is left wanted, so nothing keeps reconnecting.
    expect(h.size).toEqual({ channels: 0, patterns: 0, connected: false })
  })

  test('Redis not confirming within the command timeout rejects; later confirmations stay in step', async () => {
    const server = await startRedis()
    servers.push(server)
    const { hub: h, faults } = hub(server, { commandTimeoutMs: 300 })
    const sink = recorder()
    await h.subscribe('channel', [Buffer.from('t:a')], sink)
    server.pause()
    try {
      const err = await h.subscribe('channel', [Buffer.from('t:b')], recorder()).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(NoEndpointError)
      expect((err as Error).message).toMatch(/did not confirm within 300 ms/)
    } finally {
      server.resume()
    }
    // The late SUBSCRIBE t:b confirmation, then the UNSUBSCRIBE t:b its failure sent: matched, no reset.
    await waitFor(async () => (await numsub(server, 't:b')) === 0 && (await numsub(server, 't:a')) === 1)
    await server.client().publish('t:a', 'still here')
    await waitFor(() => sink.got.length === 1)
    expect(faults).toEqual([])
    expect(h.size).toEqual({ channels: 1, patterns: 0, connected: true })
  })

  test('after a Redis restart every channel and pattern is subscribed again; streams stay open', async () => {
    const server = await startRedis()
    servers.push(server)
    const { hub: h } = hub(server)
    const plain = recorder()
    const pat = recorder()
    await h.subscribe('channel', [Buffer.from('r:chan'), Buffer.from([0x00, 0xff])], plain)
    await h.subscribe('pattern', [Buffer.from('r:news.*')], pat)
    await server.restart()
    await waitFor(async () => (await numsub(server, 'r:chan')) === 1 && (await numsub(server, Buffer.from([0x00, 0xff]))) === 1, {
      message: 'the channels subscribed again on the restarted server',
    })
    await waitFor(async () => Number(await server.client().pubsub('NUMPAT')) === 1, { message: 'the pattern subscribed again' })
    const direct = server.client()
    await direct.publish('r:chan', 'after restart')
    await direct.publish(Buffer.from([0x00, 0xff]) as unknown as string, 'binary name')
    await direct.publish('r:news.today', 'pattern after restart')
    await waitFor(() => plain.got.length === 2 && pat.got.length === 1)
    expect(payloads(plain)).toEqual(['after restart', 'binary name'])
    expect(payloads(pat)).toEqual(['pattern after restart'])
    expect([plain.closes, pat.closes]).toEqual([[], []])
    expect(h.size).toEqual({ channels: 2, patterns: 1, connected: true })
  })

  test('stop() closes every stream once and refuses new subscriptions', async () => {
    const { hub: h } = hub(redis)
    const a = recorder()
    await h.subscribe('channel', [Buffer.from('s:1'), Buffer.from('s:2')], a)
    await h.subscribe('pattern', [Buffer.from('s:*')], a)
    h.stop('endpoint removed from discovery')
    expect(a.closes).toEqual(['endpoint removed from discovery'])
    expect(h.size).toEqual({ channels: 0, patterns: 0, connected: false })
    await expect(h.subscribe('channel', [Buffer.from('s:3')], recorder())).rejects.toBeInstanceOf(NoEndpointError)
    await waitFor(async () => (await subscribers(redis)).length === 0)
  })

  test('a name that cannot fit in the cap is refused up front', async () => {
    const { hub: h } = hub(redis, { maxReplyBytes: 1024 })
    await expect(h.subscribe('channel', [Buffer.alloc(1000, 'n')], recorder())).rejects.toBeInstanceOf(TooLargeError)
    expect(h.size).toEqual({ channels: 0, patterns: 0, connected: false })
  })

  test('a sink that throws is closed; the other streams on the connection go on', async () => {
    const { hub: h, faults } = hub(redis)
    const good = recorder()
    const bad: SubscriptionSink & { closes: string[] } = {
      closes: [],
      message() {
        throw new Error('broken sink')
      },
      close(reason) {
        bad.closes.push(reason)
      },
    }
    await h.subscribe('channel', [Buffer.from('th')], bad)
    await h.subscribe('channel', [Buffer.from('th')], good)
    await redis.client().publish('th', 'one')
    await redis.client().publish('th', 'two')
    await waitFor(() => good.got.length === 2)
    expect(bad.closes.length).toBeGreaterThanOrEqual(1)
    expect(faults[0]!.message).toBe('broken sink')
    expect(h.size.connected).toBe(true)
  })
})

describe('PubSubHub connection options (those of every connection to the endpoint)', () => {
  test('a password-only server: AUTH with the password; a wrong one is NoEndpointError saying so', async () => {
    const server = await startRedis({ password: 'sub-pw' })
    servers.push(server)
    const { hub: ok } = hub(server, { password: 'sub-pw' })
    const sink = recorder()
    await ok.subscribe('channel', [Buffer.from('pw:1')], sink)
    await server.client().publish('pw:1', 'authenticated')
    await waitFor(() => sink.got.length === 1)
    const { hub: bad } = hub(server, { password: 'wrong', connectTimeoutMs: 300 })
    const err = await bad.subscribe('channel', [Buffer.from('pw:1')], recorder()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoEndpointError)
    expect((err as Error).message).toMatch(/AUTH failed: WRONGPASS/)
  })

  test('redis.tls: the subscriber speaks TLS (a plain server sees a ClientHello and never a command)', async () => {
    const commands: string[] = []
    const fake = await fakeRedis((_conn, args) => commands.push(args.map(String).join(' ')))
    const { hub: h } = hub({ host: '127.0.0.1', port: fake.port }, { tls: true, connectTimeoutMs: 300 })
    const err = await h.subscribe('channel', [Buffer.from('tls')], recorder()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoEndpointError)
    // 0x16 0x03: a TLS handshake record.
    expect(fake.firstBytes()[0]!.subarray(0, 2)).toEqual(Buffer.from([0x16, 0x03]))
    expect(commands).toEqual([])
  })
})

describe('PubSubHub with ACL users', () => {
  let redis: RedisServer

  beforeAll(async () => {
    redis = await startRedis()
    servers.push(redis)
    await redis.client().call('ACL', 'SETUSER', 'tenant', 'on', '>tenant-pw', 'resetchannels', '&tenant:*', '+@all', '~*')
  })

  test('subscribes as the configured user; a channel outside its ACL is refused, the others work', async () => {
    const { hub: h, faults } = hub(redis, { username: 'tenant', password: 'tenant-pw' })
    const sink = recorder()
    await h.subscribe('channel', [Buffer.from('tenant:news')], sink)
    expect(await subscribers(redis)).toEqual([{ id: expect.any(String), user: 'tenant' }])
    const err = await h.subscribe('channel', [Buffer.from('tenant:ok'), Buffer.from('other:news')], recorder()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoEndpointError)
    expect((err as Error).message).toMatch(/NOPERM/)
    expect(h.size).toEqual({ channels: 1, patterns: 0, connected: true })
    await redis.client().publish('tenant:news', 'for tenant')
    await waitFor(() => sink.got.length === 1)
    expect(faults).toEqual([])
  })

  test('a name Redis refuses when subscribing again after a reconnect ends its streams', async () => {
    await redis.client().call('ACL', 'SETUSER', 'shrinking', 'on', '>pw', 'resetchannels', '&keep:*', '&lose:*', '+@all', '~*')
    const { hub: h } = hub(redis, { username: 'shrinking', password: 'pw' })
    const lose = recorder()
    const keep = recorder()
    await h.subscribe('channel', [Buffer.from('lose:1')], lose)
    await h.subscribe('channel', [Buffer.from('keep:1')], keep)
    // Redis disconnects a subscriber whose channels were revoked; the hub reconnects and subscribes
    // both again, and lose:1 is now refused.
    await redis.client().call('ACL', 'SETUSER', 'shrinking', 'resetchannels', '&keep:*')
    await waitFor(() => lose.closes.length === 1, { message: 'the refused stream to end' })
    expect(lose.closes[0]).toMatch(/Redis refused the subscription: NOPERM/)
    expect(keep.closes).toEqual([])
    await waitFor(async () => (await numsub(redis, 'keep:1')) === 1)
    await redis.client().publish('keep:1', 'kept')
    await waitFor(() => keep.got.length === 1)
    expect(h.size).toEqual({ channels: 1, patterns: 0, connected: true })
  })
})

describe('PubSubHub against a hostile or broken Redis', () => {
  test('a 100,000-deep array is dropped like an oversized message; garbage after it resets the connection, and the hub subscribes again', async () => {
    const commands: string[] = []
    const fake = await fakeRedis((conn, args, socket) => {
      commands.push(`${conn}:${args.map((a) => a.toString('latin1')).join(' ')}`)
      if (args[0]!.toString() !== 'SUBSCRIBE') return
      socket.write(confirmation('subscribe', args[1]!, 1))
      if (conn === 1) {
        // redis-parser (ioredis) recursed once per level here: a RangeError thrown from a socket
        // data handler, which ended the process.
        socket.write('*1\r\n'.repeat(100_000) + ':1\r\n')
        socket.write(message('ch', 'between'))
        socket.write('?garbage\r\n')
      } else {
        socket.write(message('ch', 'after the reset'))
      }
    })
    const { hub: h, faults } = hub({ host: '127.0.0.1', port: fake.port })
    const sink = recorder()
    await h.subscribe('channel', [Buffer.from('ch')], sink)
    await waitFor(() => payloads(sink).includes('after the reset'), { message: 'a message on the second connection' })
    expect(payloads(sink)).toEqual(['between', 'after the reset'])
    expect(faults.map((f) => f.message)).toEqual([
      expect.stringMatching(/dropped: reply is nested deeper than 128 levels/),
      expect.stringMatching(/protocol error: unknown reply type byte 0x3f/),
    ])
    expect(commands).toEqual(['1:SUBSCRIBE ch', '2:SUBSCRIBE ch'])
    // The streams never heard of it: the hub resubscribed instead.
    expect(sink.closes).toEqual([])
    expect(h.size).toEqual({ channels: 1, patterns: 0, connected: true })
  })

  test('a confirmation that matches nothing sent, or an unexpected reply, resets the connection', async () => {
    const fake = await fakeRedis((conn, args, socket) => {
      if (args[0]!.toString() !== 'SUBSCRIBE') return
      if (conn === 1) socket.write(confirmation('subscribe', Buffer.from('not-asked'), 1))
      else if (conn === 2) {
        socket.write(confirmation('subscribe', args[1]!, 1))
        socket.write(':42\r\n')
      } else {
        socket.write(confirmation('subscribe', args[1]!, 1))
        socket.write(message('ch', 'fine'))
      }
    })
    const { hub: h, faults } = hub({ host: '127.0.0.1', port: fake.port }, { connectTimeoutMs: 2_000 })
    const sink = recorder()
    // The first connection's mismatch fails this subscribe (lost before confirmed), as any loss would.
    const first = await h.subscribe('channel', [Buffer.from('ch')], sink).catch((e: unknown) => e)
    expect(first).toBeInstanceOf(NoEndpointError)
    expect(h.size.channels).toBe(0)
    await h.subscribe('channel', [Buffer.from('ch')], sink)
    await waitFor(() => payloads(sink).includes('fine'), { message: 'the third connection to deliver' })
    expect(faults.map((f) => f.message)).toEqual([
      expect.stringMatching(/a subscribe confirmation that matches nothing sent/),
      expect.stringMatching(/unexpected reply on the subscriber connection/),
    ])
    expect(fake.connections()).toBe(3)
    expect(sink.closes).toEqual([])
  })

  test('a message arriving in pieces across many reads is delivered once, whole', async () => {
    const payload = randomBytes(200_000)
    const fake = await fakeRedis((_conn, args, socket) => {
      if (args[0]!.toString() !== 'PSUBSCRIBE') return
      socket.write(confirmation('psubscribe', args[1]!, 1))
      const m = Buffer.concat([Buffer.from('*4\r\n'), bulk('pmessage'), bulk(args[1]!), bulk('p:1'), bulk(payload)])
      let at = 0
      const drip = (): void => {
        if (at >= m.length) return
        socket.write(m.subarray(at, at + 7_001))
        at += 7_001
        setImmediate(drip)
      }
      drip()
    })
    const { hub: h, faults } = hub({ host: '127.0.0.1', port: fake.port })
    const sink = recorder()
    await h.subscribe('pattern', [Buffer.from('p:*')], sink)
    await waitFor(() => sink.got.length === 1)
    expect(sink.got[0]!.payload.equals(payload)).toBe(true)
    expect(sink.got[0]!.pattern!.toString()).toBe('p:*')
    expect(faults).toEqual([])
  })
})

describe('RespConnection push mode', () => {
  test('send() is refused before ready and command() is refused in push mode', async () => {
    const redis = await startRedis()
    servers.push(redis)
    const pushes: unknown[] = []
    const conn = new RespConnection(
      { host: redis.host, port: redis.port, username: '', password: '', tls: false, connectTimeoutMs: 1_000, retryDelayMs: () => 20, readyCheck: false, push: (v) => pushes.push(v) },
      { onReady() {}, onClose() {} },
    )
    try {
      expect(conn.send(['SUBSCRIBE', 'x'])).toBe(false)
      conn.start()
      await waitFor(() => conn.ready)
      expect(() => conn.command(['PING'], { reply() {}, lost() {} })).toThrow(/push mode/)
      expect(conn.send(['SUBSCRIBE', 'x', 'y'])).toBe(true)
      await waitFor(() => pushes.length === 2)
      expect(pushes.map((p) => (p as Buffer[]).map(String))).toEqual([
        ['subscribe', 'x', '1'],
        ['subscribe', 'y', '2'],
      ])
      expect(conn.pending).toBe(0)
    } finally {
      conn.stop()
    }
  })
})
