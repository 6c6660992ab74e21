// RespConnection (resp-connection.ts) against real redis-server processes: refusal until ready,
// binary-safe round trips and reply shapes, order under auto-pipelining, connection loss and
// reconnect, AUTH (password and ACL user), stop(), a port where nothing listens, and the LOADING
// ready check. EndpointClient's promise wrappers and failureKind are checked on top of it, and its
// connect admission (the pool's start queue) and shared command tables.

import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net, { type Socket } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { freePort } from '../../test/helpers/ports.js'
import { parseInfo, startRedis, type RedisServer, type StartRedisOptions } from '../../test/helpers/redis-server.js'
import { waitFor } from '../../test/helpers/wait.js'
import { referenceTable } from '../../test/helpers/resp.js'
import { startFakeRedis } from '../../test/helpers/fake-redis.js'
import { EndpointClient, SharedTables, reconnectDelayMs } from './endpoint-client.js'
import { RespBytes } from './resp-parser.js'
import { parseCommandTable, replyDigest, tableOf, type LearnedTable } from '../routing/command-table.js'
import { failureKind } from '../core/failures.js'
import type { Arg } from '../core/command.js'
import { RespConnection, type ReplySink, type RespConnectionOptions } from './resp-connection.js'
import { ConnectionLostError, NotConnectedError, StalledError } from '../core/errors.js'

// ---------------------------------------------------------------------------------------------
// Helpers

/** A sink that keeps everything it hears. */
interface Recorder extends ReplySink {
  readonly replies: unknown[]
  readonly losses: Error[]
}

function recorder(onReply?: (v: unknown) => void): Recorder {
  const r: Recorder = {
    replies: [],
    losses: [],
    reply(v) {
      r.replies.push(v)
      onReply?.(v)
    },
    lost(e) {
      r.losses.push(e)
    },
  }
  return r
}

interface Opened {
  readonly conn: RespConnection
  /** Times each hook fired, and the reasons onClose gave. */
  readonly events: { ready: number; close: number; reasons: string[] }
  /** Attempt numbers retryDelayMs was asked for, in order. */
  readonly attempts: number[]
}

const conns: RespConnection[] = []
const servers: RedisServer[] = []

afterEach(() => {
  for (const c of conns.splice(0)) c.stop()
})
afterAll(async () => {
  for (const s of servers.splice(0)) await s.stop()
})

async function server(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const s = await startRedis(opts)
  servers.push(s)
  return s
}

type Target = { host: string; port: number; password?: string | undefined }

function open(
  target: Target,
  overrides: Partial<RespConnectionOptions> = {},
  hooks: { onReady?: () => void; onClose?: () => void } = {},
): Opened {
  const events = { ready: 0, close: 0, reasons: [] as string[] }
  const attempts: number[] = []
  const conn = new RespConnection(
    {
      host: target.host,
      port: target.port,
      username: '',
      password: target.password ?? '',
      tls: false,
      connectTimeoutMs: 2_000,
      retryDelayMs: (n) => {
        attempts.push(n)
        return 20
      },
      ...overrides,
    },
    {
      onReady: () => {
        events.ready++
        hooks.onReady?.()
      },
      onClose: (reason) => {
        events.close++
        events.reasons.push(reason)
        hooks.onClose?.()
      },
    },
  )
  conns.push(conn)
  return { conn, events, attempts }
}

async function openReady(target: Target, overrides: Partial<RespConnectionOptions> = {}): Promise<Opened> {
  const o = open(target, overrides)
  o.conn.start()
  await waitFor(() => o.conn.ready, { message: 'the connection to become ready' })
  return o
}

/** One command and its reply (an Error value for a Redis error reply); rejects when lost or refused. */
function call(conn: RespConnection, args: readonly Arg[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!conn.command(args, { reply: resolve, lost: reject })) reject(new Error(`refused: ${String(args[0])}`))
  })
}

function buf(s: string): Buffer {
  return Buffer.from(s, 'utf8')
}

async function clientFields(s: RedisServer): Promise<Record<string, string>> {
  return parseInfo(await s.info('clients'))
}

/**
 * Waits until the server counts `n` clients, the helper's own INFO connection included. Polled,
 * because the server may still be closing the helper's earlier connections; a connection too many
 * that stays (a leak, a second connect) never lets it pass.
 */
async function waitForClients(s: RedisServer, n: number, message: string): Promise<void> {
  await waitFor(async () => (await clientFields(s))['connected_clients'] === String(n), { message })
}

/** Waits until the connection with this CLIENT ID is blocked in BLPOP on the server. */
async function waitBlocked(s: RedisServer, id: string): Promise<void> {
  const admin = s.client()
  try {
    await waitFor(async () => /\bcmd=blpop\b.*\bflags=b\b|\bflags=b\b.*\bcmd=blpop\b/.test(String(await admin.call('CLIENT', 'LIST', 'ID', id))), {
      message: `client ${id} to block in BLPOP`,
    })
  } finally {
    admin.disconnect()
  }
}

let keyNo = 0
function key(name: string): string {
  return `rc:${++keyNo}:${name}`
}

// ---------------------------------------------------------------------------------------------

let main: RedisServer
beforeAll(async () => {
  main = await server()
})

describe('before start() and becoming ready', () => {
  test('refuses commands before start(): false, and the sink hears nothing', async () => {
    const { conn, events } = open(main)
    const sink = recorder()
    expect(conn.ready).toBe(false)
    expect(conn.command(['PING'], sink)).toBe(false)
    expect(conn.commands([['PING'], ['PING']], sink)).toBe(false)
    expect(conn.pending).toBe(0)
    expect(conn.socketListeners).toBe(0)
    // Construction did no I/O: the server sees no client but the helper's own INFO connection.
    await waitForClients(main, 1, 'no client but the helper')

    conn.start()
    // Not ready in the same turn: the handshake (INFO persistence) has not been answered.
    expect(conn.ready).toBe(false)
    expect(conn.command(['PING'], sink)).toBe(false)
    await waitFor(() => conn.ready, { message: 'ready after start()' })
    expect(events).toEqual({ ready: 1, close: 0, reasons: [] })

    // A second start() is a no-op: still one connection, onReady not fired again.
    conn.start()
    expect(await call(conn, ['PING'])).toEqual(buf('PONG'))
    await waitForClients(main, 2, 'one connection and the helper')
    expect(events).toEqual({ ready: 1, close: 0, reasons: [] })
    expect(sink.replies).toEqual([])
    expect(sink.losses).toEqual([])
  })
})

describe('connect timeout', () => {
  test('a connect that completed while the event loop was blocked past the timeout is kept, not cut', async () => {
    const s = await server()
    const { conn, events } = open({ host: '127.0.0.1', port: s.port }, { connectTimeoutMs: 100 })
    conn.start()
    // The kernel completes the connect at once; JavaScript sees it only after this turn, in which
    // the connect timer has already expired (a busy gateway: thousands of clients in one turn).
    const until = Date.now() + 300
    while (Date.now() < until) {
      // busy
    }
    await waitFor(() => events.ready === 1 || events.close > 0)
    expect(events.reasons).toEqual([])
    expect(events.ready).toBe(1)
  })

  test('a handshake reply that arrived while the event loop was blocked past the timeout is taken, not cut', async () => {
    // An in-process server, so that the test can block the event loop right after the reply to the
    // ready check is written: the reply is then in the kernel while the step's timer expires.
    let blocked = 0
    const fake = net.createServer((sock) => {
      sock.on('data', (b: Buffer) => {
        if (!/INFO/i.test(b.toString('latin1'))) return
        const info = 'loading:0\r\n'
        sock.write(`$${info.length}\r\n${info}\r\n`)
        const until = Date.now() + 300
        while (Date.now() < until) {
          // busy
        }
        blocked++
      })
    })
    fake.listen(0, '127.0.0.1')
    await once(fake, 'listening')
    try {
      const { port } = fake.address() as net.AddressInfo
      const { conn, events } = open({ host: '127.0.0.1', port }, { connectTimeoutMs: 100 })
      conn.start()
      await waitFor(() => events.ready === 1 || events.close > 0)
      expect(blocked).toBe(1)
      expect(events.reasons).toEqual([])
      expect(events.ready).toBe(1)
    } finally {
      for (const c of conns.splice(0)) c.stop()
      fake.close()
    }
  })
})

describe('round trips', () => {
  let conn: RespConnection
  beforeAll(async () => {
    conn = (await openReady(main)).conn
    // Kept across tests of this block (afterEach stops the ones opened per test).
    conns.splice(conns.indexOf(conn), 1)
  })
  afterAll(() => conn.stop())

  test('SET/GET with string arguments; status replies are Buffers', async () => {
    const k = key('s')
    const ok = await call(conn, ['SET', k, 'hello'])
    expect(Buffer.isBuffer(ok)).toBe(true)
    expect(ok).toEqual(buf('OK'))
    expect(await call(conn, ['GET', k])).toEqual(buf('hello'))
    // Lower-case command names are Redis's business, not the connection's.
    expect(await call(conn, ['get', k])).toEqual(buf('hello'))
  })

  test('binary Buffer arguments (CR LF, NUL, 0xff, every byte value) come back byte-identical', async () => {
    const value = Buffer.concat([
      Buffer.from([0x0d, 0x0a, 0x00, 0xff, 0x24, 0x2a, 0x0d, 0x0a, 0x2d]),
      Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      Buffer.from('\r\n$3\r\nfoo\r\n', 'latin1'),
    ])
    const k = Buffer.concat([buf(key('bin')), Buffer.from([0x00, 0xff, 0x0d, 0x0a])])
    expect(await call(conn, ['SET', k, value])).toEqual(buf('OK'))
    const got = await call(conn, ['GET', k])
    expect(Buffer.isBuffer(got)).toBe(true)
    expect((got as Buffer).equals(value)).toBe(true)
    expect(await call(conn, ['STRLEN', k])).toBe(String(value.length))
    // The key is binary too: the same bytes as text (UTF-8) name another key.
    expect(await call(conn, ['EXISTS', k.toString('utf8')])).toBe('0')
  })

  test('a 4 MiB random value and its reply cross many socket chunks intact', async () => {
    const k = key('big')
    const value = randomBytes(4 * 1024 * 1024)
    expect(await call(conn, ['SET', k, value])).toEqual(buf('OK'))
    const got = (await call(conn, ['GET', k])) as Buffer
    expect(got.length).toBe(value.length)
    expect(got.equals(value)).toBe(true)
  })

  test('commands and arguments around the 256 boundary of the header tables arrive exactly', async () => {
    // *n and $len lines below 256 come from tables, from 256 up they are formatted.
    for (const n of [254, 255, 256, 257, 600]) {
      const k = key(`list${n}`)
      const items = Array.from({ length: n - 2 }, (_, i) => `i${i}`)
      expect(await call(conn, ['RPUSH', k, ...items])).toBe(String(n - 2))
      expect(await call(conn, ['LLEN', k])).toBe(String(n - 2))
    }
    for (const len of [0, 1, 254, 255, 256, 257, 1000]) {
      const k = key(`len${len}`)
      const text = 'x'.repeat(len)
      const bytes = Buffer.alloc(len, 0x41)
      expect(await call(conn, ['SET', k, text])).toEqual(buf('OK'))
      expect(await call(conn, ['GET', k])).toEqual(buf(text))
      expect(await call(conn, ['SET', k, bytes])).toEqual(buf('OK'))
      expect(await call(conn, ['STRLEN', k])).toBe(String(len))
    }
  })

  test('UTF-8 multibyte string arguments: lengths are counted in bytes', async () => {
    const k = key('ü€𝄞')
    const text = 'héllo wörld € 𝄞 日本語 🙂'
    expect(text.length).not.toBe(Buffer.byteLength(text))
    // GET and STRLEN share a write behind SET: a length counted in UTF-16 units would garble them.
    const [set, get, strlen] = await Promise.all([call(conn, ['SET', k, text]), call(conn, ['GET', k]), call(conn, ['STRLEN', k])])
    expect(set).toEqual(buf('OK'))
    expect(get).toEqual(buf(text))
    expect((get as Buffer).toString('utf8')).toBe(text)
    expect(strlen).toBe(String(Buffer.byteLength(text)))
  })

  test('empty arguments (string and Buffer) are empty bulk strings', async () => {
    const k1 = key('empty-s')
    const k2 = key('empty-b')
    expect(await call(conn, ['SET', k1, ''])).toEqual(buf('OK'))
    expect(await call(conn, ['SET', k2, Buffer.alloc(0)])).toEqual(buf('OK'))
    expect(await call(conn, ['EXISTS', k1, k2])).toBe('2')
    expect(await call(conn, ['GET', k1])).toEqual(Buffer.alloc(0))
    expect(await call(conn, ['STRLEN', k2])).toBe('0')
    // An empty key name is a key like any other.
    expect(await call(conn, ['SET', '', 'x'])).toEqual(buf('OK'))
    expect(await call(conn, ['GET', Buffer.alloc(0)])).toEqual(buf('x'))
  })

  test('integers come back as exact decimal strings, beyond 2^53 too', async () => {
    const k = key('n')
    expect(await call(conn, ['INCR', k])).toBe('1')
    expect(await call(conn, ['DECRBY', k, '3'])).toBe('-2')
    expect(await call(conn, ['SET', k, '9007199254740992'])).toEqual(buf('OK'))
    // 2^53 + 1 has no double: a number would have come back as ...992.
    expect(await call(conn, ['INCR', k])).toBe('9007199254740993')
    expect(await call(conn, ['INCRBY', k, '9223372036854775807'])).toBeInstanceOf(Error)
    expect(await call(conn, ['SET', k, '9223372036854775806'])).toEqual(buf('OK'))
    expect(await call(conn, ['INCR', k])).toBe('9223372036854775807')
  })

  test('nil is null, also inside arrays; an empty array is []', async () => {
    const k = key('x')
    expect(await call(conn, ['GET', key('missing')])).toBeNull()
    expect(await call(conn, ['SET', k, 'v'])).toEqual(buf('OK'))
    expect(await call(conn, ['MGET', k, key('missing'), k])).toEqual([buf('v'), null, buf('v')])
    expect(await call(conn, ['LRANGE', key('missing'), '0', '-1'])).toEqual([])
  })

  test('HGETALL stays a flat array of Buffers; XRANGE and COMMAND INFO are nested', async () => {
    const h = key('h')
    expect(await call(conn, ['HSET', h, 'f1', 'v1', 'f2', Buffer.from([0, 1, 2])])).toBe('2')
    const all = (await call(conn, ['HGETALL', h])) as unknown[]
    expect(all).toHaveLength(4)
    for (const item of all) expect(Buffer.isBuffer(item)).toBe(true)
    const pairs = new Map<string, Buffer>()
    for (let i = 0; i < all.length; i += 2) pairs.set((all[i] as Buffer).toString(), all[i + 1] as Buffer)
    expect(pairs).toEqual(new Map([['f1', buf('v1')], ['f2', Buffer.from([0, 1, 2])]]))

    const s = key('stream')
    expect(await call(conn, ['XADD', s, '1-1', 'a', '1', 'b', '2'])).toEqual(buf('1-1'))
    expect(await call(conn, ['XADD', s, '2-1', 'c', '3'])).toEqual(buf('2-1'))
    expect(await call(conn, ['XRANGE', s, '-', '+'])).toEqual([
      [buf('1-1'), [buf('a'), buf('1'), buf('b'), buf('2')]],
      [buf('2-1'), [buf('c'), buf('3')]],
    ])

    const info = (await call(conn, ['COMMAND', 'INFO', 'get'])) as unknown[][]
    expect(info).toHaveLength(1)
    const get = info[0]!
    expect(get[0]).toEqual(buf('get'))
    // Arity, first key, last key, step: integers as decimal text inside the nested array.
    expect(get.slice(1, 2)).toEqual(['2'])
    expect(get.slice(3, 6)).toEqual(['1', '1', '1'])
    expect(Array.isArray(get[2])).toBe(true)
    expect((get[2] as Buffer[]).map((f) => f.toString())).toContain('readonly')
  })

  test('error replies are Errors named ReplyError with Redis’s message, and the stream stays in step', async () => {
    const k = key('str')
    const [set, wrongType, unknown, arity, after] = await Promise.all([
      call(conn, ['SET', k, 'v']),
      call(conn, ['LPUSH', k, 'x']),
      call(conn, ['NOSUCHCOMMAND', 'a']),
      call(conn, ['GET']),
      call(conn, ['GET', k]),
    ])
    expect(set).toEqual(buf('OK'))
    for (const e of [wrongType, unknown, arity]) {
      expect(e).toBeInstanceOf(Error)
      expect((e as Error).name).toBe('ReplyError')
    }
    expect((wrongType as Error).message).toBe('WRONGTYPE Operation against a key holding the wrong kind of value')
    expect((unknown as Error).message).toMatch(/^ERR unknown command 'NOSUCHCOMMAND'/)
    expect((arity as Error).message).toMatch(/^ERR wrong number of arguments for 'get' command/)
    expect(after).toEqual(buf('v'))
    expect(failureKind(wrongType)).toBe('reply')
  })

  test('an error reply inside an array (EXEC) is an Error element', async () => {
    const k = key('tx')
    const sink = recorder()
    const done = waitFor(() => sink.replies.length === 4, { message: 'MULTI, 2x QUEUED, EXEC' })
    expect(conn.commands([['MULTI'], ['SET', k, 'v'], ['LPUSH', k, 'x'], ['EXEC']], sink)).toBe(true)
    await done
    expect(sink.replies.slice(0, 3)).toEqual([buf('OK'), buf('QUEUED'), buf('QUEUED')])
    const exec = sink.replies[3] as unknown[]
    expect(exec[0]).toEqual(buf('OK'))
    expect(exec[1]).toBeInstanceOf(Error)
    expect((exec[1] as Error).name).toBe('ReplyError')
    expect((exec[1] as Error).message).toMatch(/^WRONGTYPE/)
  })
})

describe('ordering and batching', () => {
  let conn: RespConnection
  beforeAll(async () => {
    conn = (await openReady(main)).conn
    conns.splice(conns.indexOf(conn), 1)
  })
  afterAll(() => conn.stop())

  test('10,000 commands issued in one synchronous loop each get their own reply, in order', async () => {
    const k = key('counter')
    const N = 10_000
    const sinks: Recorder[] = []
    for (let i = 0; i < N; i++) {
      const s = recorder()
      sinks.push(s)
      expect(conn.command(['INCR', k], s)).toBe(true)
    }
    // The first went out at once (the connection was idle), the rest leave together after this turn.
    expect(conn.pending).toBe(N)
    await waitFor(() => conn.pending === 0, { message: 'all replies' })
    sinks.forEach((s, i) => {
      expect(s.losses).toEqual([])
      expect(s.replies).toEqual([String(i + 1)])
    })
  })

  test('batches (flat-encoded when ASCII, per command otherwise) and single commands in one turn keep their order', async () => {
    const k = key('batches')
    const ascii = Array.from({ length: 20 }, (_, i) => ['RPUSH', k, `a${i}`])
    const utf8 = Array.from({ length: 9 }, (_, i) => ['RPUSH', k, `é${i}`])
    const binary = Array.from({ length: 8 }, (_, i) => ['RPUSH', k, Buffer.from([0xff, i])])
    const sinks = [recorder(), recorder(), recorder(), recorder(), recorder()]
    // An idle connection writes the first at once; the rest leave together after this turn.
    expect(conn.commands(ascii, sinks[0]!)).toBe(true)
    expect(conn.command(['RPUSH', k, 'single'], sinks[1]!)).toBe(true)
    expect(conn.commands(utf8, sinks[2]!)).toBe(true)
    expect(conn.commands(binary, sinks[3]!)).toBe(true)
    expect(conn.commands([...ascii.slice(0, 8), ['LRANGE', k, '0', '-1']], sinks[4]!)).toBe(true)
    await waitFor(() => sinks[4]!.replies.length === 9, { message: 'all replies' })
    expect(sinks[0]!.replies).toEqual(ascii.map((_, i) => String(i + 1)))
    expect(sinks[1]!.replies).toEqual(['21'])
    expect(sinks[2]!.replies).toEqual(utf8.map((_, i) => String(22 + i)))
    expect(sinks[3]!.replies).toEqual(binary.map((_, i) => String(31 + i)))
    const list = sinks[4]!.replies[8] as Buffer[]
    const want = [...ascii.map((c) => c[2] as string), 'single', ...utf8.map((c) => c[2] as string)].map((s) => Buffer.from(s))
    expect(list.slice(0, 30)).toEqual(want)
    expect(list.slice(30, 38)).toEqual(binary.map((c) => c[2]))
    expect(list.slice(38).map(String)).toEqual(ascii.slice(0, 8).map((c) => c[2]))
  })

  test('commands issued from reply callbacks keep their order while the queue is compacted', async () => {
    const k = key('chain')
    const first: Recorder[] = []
    const chained: Recorder[] = []
    const N = 3_000
    const CHAIN = 2_000
    for (let i = 0; i < N; i++) {
      const s = recorder(() => {
        if (i < CHAIN) {
          const c = recorder()
          chained.push(c)
          expect(conn.command(['INCR', k], c)).toBe(true)
        }
      })
      first.push(s)
      conn.command(['INCR', k], s)
    }
    await waitFor(() => chained.length === CHAIN && conn.pending === 0, { message: 'the chained replies' })
    first.forEach((s, i) => expect(s.replies).toEqual([String(i + 1)]))
    chained.forEach((s, i) => expect(s.replies).toEqual([String(N + i + 1)]))
  })

  /** Records the bytes of each socket.write() on the connection's current socket. */
  function spyWrites(c: RespConnection): { writes: number[]; restore(): void } {
    const socket = (c as unknown as { socket: Socket }).socket
    const writes: number[] = []
    const orig = socket.write
    socket.write = function (this: Socket, chunk: string | Uint8Array, ...rest: unknown[]) {
      writes.push(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length)
      return (orig as (...a: unknown[]) => boolean).call(this, chunk, ...rest)
    } as Socket['write']
    return { writes, restore: () => void (socket.write = orig) }
  }

  test('an idle connection writes a command at once; while replies are outstanding, commands leave together after the turn', async () => {
    await waitFor(() => conn.pending === 0, { message: 'idle' })
    const spy = spyWrites(conn)
    try {
      const a = recorder()
      conn.command(['PING', 'a'], a)
      // Written inside command(): a lone request does not wait for the rest of the turn.
      expect(spy.writes).toEqual([Buffer.byteLength('*2\r\n$4\r\nPING\r\n$1\r\na\r\n')])
      const b = recorder()
      const c = recorder()
      conn.command(['PING', 'b'], b)
      conn.command(['PING', 'c'], c)
      // 'a' is in flight: b and c wait for the batch.
      expect(spy.writes.length).toBe(1)
      await new Promise((r) => setImmediate(r))
      expect(spy.writes.length).toBe(2)
      expect(spy.writes[1]).toBe(2 * spy.writes[0]!)
      await waitFor(() => c.replies.length === 1, { message: 'replies' })
      expect([a, b, c].map((s) => s.replies[0])).toEqual([buf('a'), buf('b'), buf('c')])
    } finally {
      spy.restore()
    }
  })

  test('cork()/uncork(): commands issued in between leave in one write, at once on an idle connection', async () => {
    await waitFor(() => conn.pending === 0, { message: 'idle' })
    const spy = spyWrites(conn)
    try {
      const s = recorder()
      const k = key('cork')
      conn.cork()
      conn.cork()
      conn.command(['SET', k, 'v'], s)
      conn.commands([['GET', k], ['ROLE']], s)
      conn.uncork()
      expect(spy.writes).toEqual([]) // still corked once
      conn.uncork()
      expect(spy.writes.length).toBe(1)
      conn.uncork() // unbalanced: ignored
      await waitFor(() => s.replies.length === 3, { message: 'replies' })
      expect(s.replies.slice(0, 2)).toEqual([buf('OK'), buf('v')])
      expect(spy.writes.length).toBe(1)
    } finally {
      spy.restore()
    }
  })

  test('commands() for one sink: one reply per command, in order', async () => {
    const l = key('list')
    const n = 500
    const sink = recorder()
    const list = Array.from({ length: n }, (_, i) => ['RPUSH', l, `item-${i}`])
    expect(conn.commands(list, sink)).toBe(true)
    expect(conn.pending).toBe(n)
    await waitFor(() => sink.replies.length === n, { message: `${n} replies` })
    expect(sink.replies).toEqual(Array.from({ length: n }, (_, i) => String(i + 1)))
    expect(await call(conn, ['LINDEX', l, '-1'])).toEqual(buf(`item-${n - 1}`))
  })

  test('Buffer and string arguments mixed in one batch keep their order', async () => {
    const k = key('mix')
    const b1 = Buffer.from([0x00, 0x0d, 0x0a, 0xff])
    const b2 = Buffer.from([0xfe, 0x00])
    const sinks = Array.from({ length: 8 }, () => recorder())
    const cmds: Arg[][] = [
      ['SET', k, 'a'],
      ['APPEND', k, b1],
      ['APPEND', Buffer.from(k), 'b'],
      ['STRLEN', k],
      ['APPEND', Buffer.from(k), b2],
      ['GET', k],
      ['PING', 'after'],
      ['GETRANGE', k, '1', '4'],
    ]
    cmds.forEach((c, i) => expect(conn.command(c, sinks[i]!)).toBe(true))
    await waitFor(() => sinks.every((s) => s.replies.length === 1), { message: 'the mixed batch' })
    const whole = Buffer.concat([buf('a'), b1, buf('b'), b2])
    expect(sinks.map((s) => s.replies[0])).toEqual([
      buf('OK'),
      String(1 + b1.length),
      String(2 + b1.length),
      String(2 + b1.length),
      String(whole.length),
      whole,
      buf('after'),
      b1,
    ])
  })
})

describe('connection loss', () => {
  test('pending sinks get ConnectionLostError, onClose fires, commands are refused; back by itself after a restart', async () => {
    const s = await server()
    const { conn, events, attempts } = await openReady(s)
    const blocked = recorder()
    const behind = recorder()
    const batch = recorder()
    expect(conn.command(['BLPOP', 'rc:never', '0'], blocked)).toBe(true)
    expect(conn.command(['GET', 'rc:x'], behind)).toBe(true)
    expect(conn.commands([['PING'], ['PING']], batch)).toBe(true)
    expect(conn.pending).toBe(4)
    // Written and held by Redis: BLPOP blocks, the rest waits behind it.
    await waitFor(async () => parseInfo(await s.info('clients'))['blocked_clients'] === '1', { message: 'BLPOP to block' })
    expect(conn.pending).toBe(4)

    await s.kill('SIGKILL')
    // onClose fires per closed connection or refused attempt: once at least.
    await waitFor(() => events.close >= 1, { message: 'onClose' })
    expect(conn.pending).toBe(0)
    expect(conn.ready).toBe(false)
    expect(blocked.replies).toEqual([])
    expect(behind.replies).toEqual([])
    expect(batch.replies).toEqual([])
    // One lost() per command written.
    expect(blocked.losses).toHaveLength(1)
    expect(behind.losses).toHaveLength(1)
    expect(batch.losses).toHaveLength(2)
    for (const e of [...blocked.losses, ...behind.losses, ...batch.losses]) {
      expect(e).toBeInstanceOf(ConnectionLostError)
      expect(failureKind(e)).toBe('reset')
    }

    // Down: refused at once, and the sink hears nothing (not even lost()).
    const refused = recorder()
    expect(conn.command(['PING'], refused)).toBe(false)
    expect(conn.commands([['PING']], refused)).toBe(false)
    expect(conn.pending).toBe(0)
    // It keeps trying, counting attempts from 1.
    await waitFor(() => attempts.length >= 3, { message: 'reconnect attempts' })
    expect(attempts.slice(0, 3)).toEqual([1, 2, 3])
    expect(events.ready).toBe(1)

    await s.restart()
    await waitFor(() => events.ready === 2, { message: 'ready again after the restart' })
    expect(conn.ready).toBe(true)
    expect(await call(conn, ['SET', 'rc:after', 'v'])).toEqual(buf('OK'))
    expect(await call(conn, ['GET', 'rc:after'])).toEqual(buf('v'))
    expect(refused.replies).toEqual([])
    expect(refused.losses).toEqual([])

    // Ready resets the attempt count: the next outage starts again at 1.
    const before = attempts.length
    const closes = events.close
    await s.kill('SIGKILL')
    await waitFor(() => events.close > closes && attempts.length > before, { message: 'the second outage' })
    expect(attempts[before]).toBe(1)
    await s.restart()
    await waitFor(() => events.ready === 3, { message: 'ready after the second restart' })
    expect(await call(conn, ['GET', 'rc:after'])).toBeNull() // no persistence: a fresh dataset
  })

  test('a connection killed by the server (CLIENT KILL) fails what was in flight and comes back', async () => {
    const { conn, events } = await openReady(main)
    const id = (await call(conn, ['CLIENT', 'ID'])) as string
    const blocked = recorder()
    conn.command(['BLPOP', key('never'), '0'], blocked)
    await waitBlocked(main, id)
    const admin = main.client()
    expect(await admin.call('CLIENT', 'KILL', 'ID', id)).toBe(1)
    await waitFor(() => blocked.losses.length === 1, { message: 'lost()' })
    expect(blocked.losses[0]).toBeInstanceOf(ConnectionLostError)
    await waitFor(() => events.ready === 2, { message: 'ready again' })
    expect(events.close).toBe(1)
    expect(await call(conn, ['CLIENT', 'ID'])).not.toBe(id)
  })

  test('a reply nobody asked for (a pub/sub message) makes it start over on a new connection', async () => {
    const { conn, events } = await openReady(main)
    const ch = key('ch')
    const sub = recorder()
    conn.command(['SUBSCRIBE', ch], sub)
    await waitFor(() => sub.replies.length === 1, { message: 'SUBSCRIBE reply' })
    expect(sub.replies[0]).toEqual([buf('subscribe'), buf(ch), '1'])
    expect(await main.client().publish(ch, 'surprise')).toBe(1)
    await waitFor(() => events.close === 1 && events.ready === 2, { message: 'a new connection' })
    expect(sub.replies).toHaveLength(1)
    expect(await call(conn, ['PING'])).toEqual(buf('PONG'))
  })

  test('timedOut(): reset when nothing at all has arrived since the command was written (stalled), kept when bytes came (slow)', async () => {
    const { conn, events } = await openReady(main)
    const id = (await call(conn, ['CLIENT', 'ID'])) as string
    // Bytes arrived after the reference point: a slow connection, kept.
    const before = conn.reads
    expect(await call(conn, ['PING'])).toEqual(buf('PONG'))
    const blocked = recorder()
    conn.command(['BLPOP', key('never'), '0'], blocked)
    await waitBlocked(main, id)
    expect(conn.timedOut(before)).toBe(true)
    await new Promise((r) => setTimeout(r, 100))
    expect(events.close).toBe(0)
    // Nothing since the BLPOP was written: stalled, reset; what waited on it is lost.
    const stalled = recorder()
    const atSend = conn.reads
    conn.command(['PING'], stalled)
    expect(conn.timedOut(atSend)).toBe(false)
    await waitFor(() => events.close === 1, { message: 'reset' })
    // ...as timeouts (504), not as a lost connection: Redis stopped answering.
    expect(blocked.losses[0]).toBeInstanceOf(StalledError)
    expect(stalled.losses[0]).toBeInstanceOf(StalledError)
    expect(failureKind(stalled.losses[0])).toBe('timeout')
    await waitFor(() => events.ready === 2, { timeoutMs: 3_000, message: 'ready again' })
    expect(await call(conn, ['PING'])).toEqual(buf('PONG'))
  })

  // Once a bug: closed() failed the pending sinks while the status was still 'ready', so a command
  // sent from lost() was accepted into the dead connection's batch, and on reconnect the handshake's
  // reply went to that stale sink: the connection never became ready again.
  test('command() from inside lost() is refused, and the connection still comes back', async () => {
    const { conn, events } = await openReady(main)
    const id = (await call(conn, ['CLIENT', 'ID'])) as string
    const retried = recorder()
    let accepted: boolean | undefined
    const blocked: ReplySink = {
      reply() {},
      lost() {
        accepted = conn.command(['PING'], retried)
      },
    }
    conn.command(['BLPOP', key('never'), '0'], blocked)
    await waitBlocked(main, id)
    await main.client().call('CLIENT', 'KILL', 'ID', id)
    await waitFor(() => events.close === 1, { message: 'onClose' })
    // Expected: false (not connected); actual: true.
    expect(accepted).toBe(false)
    // Expected: ready again within the retry delay; actual: stuck in the handshake forever.
    await waitFor(() => events.ready === 2, { timeoutMs: 3_000, message: 'ready again' })
    expect(retried.replies).toEqual([])
    expect(await call(conn, ['PING'])).toEqual(buf('PONG'))
  })
})

describe('AUTH', () => {
  const PASSWORD = 'rc-secret'
  let s: RedisServer
  beforeAll(async () => {
    s = await server({ password: PASSWORD })
  })

  test('with the right password it becomes ready as the default user', async () => {
    const { conn, events } = await openReady({ host: s.host, port: s.port, password: PASSWORD })
    expect(await call(conn, ['ACL', 'WHOAMI'])).toEqual(buf('default'))
    expect(events).toEqual({ ready: 1, close: 0, reasons: [] })
  })

  test('with a wrong password it never becomes ready and keeps retrying without piling up sockets', async () => {
    const { conn, events, attempts } = open({ host: s.host, port: s.port, password: 'wrong' }, {})
    conn.start()
    const listeners = new Set<number>()
    await waitFor(
      () => {
        listeners.add(conn.socketListeners)
        return attempts.length >= 8
      },
      { intervalMs: 2, message: '8 refused attempts' },
    )
    expect(events.ready).toBe(0)
    expect(conn.ready).toBe(false)
    expect(events.close).toBeGreaterThanOrEqual(8)
    expect(attempts.slice(0, 8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    // One socket at a time, with a fixed set of listeners (0 between attempts; data, error, close
    // and the connect once-listeners, Node's own included, while connecting).
    expect(Math.max(...listeners)).toBeLessThanOrEqual(5)
    const fields = await clientFields(s)
    expect(Number(fields['connected_clients'])).toBeLessThanOrEqual(3)
    expect(conn.command(['PING'], recorder())).toBe(false)
    // Each close says why, for the logs.
    expect(events.reasons[0]).toMatch(/^AUTH failed: WRONGPASS/)
  })

  test('without a password the ready check gets NOAUTH: never ready', async () => {
    const { conn, events, attempts } = open({ host: s.host, port: s.port })
    conn.start()
    await waitFor(() => attempts.length >= 3, { message: 'refused attempts' })
    expect(events.ready).toBe(0)
    expect(conn.ready).toBe(false)
    expect(events.reasons[0]).toMatch(/^ready check failed: NOAUTH/)
  })

  test('an ACL user works with username + password (the default user keeps its password)', async () => {
    const admin = s.client()
    expect(await admin.call('ACL', 'SETUSER', 'gw', 'on', '>gwpass', '~*', '&*', '+@all')).toBe('OK')
    const { conn } = await openReady({ host: s.host, port: s.port, password: 'gwpass' }, { username: 'gw' })
    expect(await call(conn, ['ACL', 'WHOAMI'])).toEqual(buf('gw'))
    expect(await call(conn, ['SET', 'rc:acl', 'v'])).toEqual(buf('OK'))

    // The user's password alone is tried as the default user's: refused.
    const alone = open({ host: s.host, port: s.port, password: 'gwpass' })
    alone.conn.start()
    // And the right user with the default user's password: refused too.
    const mixed = open({ host: s.host, port: s.port, password: PASSWORD }, { username: 'gw' })
    mixed.conn.start()
    await waitFor(() => alone.attempts.length >= 3 && mixed.attempts.length >= 3, { message: 'refused attempts' })
    expect(alone.events.ready + mixed.events.ready).toBe(0)
  })
})

describe('stop()', () => {
  test('fails pending sinks, closes the connection for good, and start() afterwards does nothing', async () => {
    const s = await server()
    await waitForClients(s, 1, 'only the helper')
    const { conn, events, attempts } = await openReady(s)
    await waitForClients(s, 2, 'the server to see the connection')

    const blocked = recorder()
    const behind = recorder()
    conn.command(['BLPOP', 'rc:never', '0'], blocked)
    conn.command(['GET', 'rc:x'], behind)
    await waitFor(async () => (await clientFields(s))['blocked_clients'] === '1', { message: 'BLPOP to block' })

    conn.stop()
    // At once, not on the socket's close event.
    expect(blocked.losses).toHaveLength(1)
    expect(behind.losses).toHaveLength(1)
    expect(blocked.losses[0]).toBeInstanceOf(ConnectionLostError)
    expect(conn.pending).toBe(0)
    expect(conn.ready).toBe(false)
    expect(conn.command(['PING'], recorder())).toBe(false)

    await waitForClients(s, 1, 'the server to see the connection go')
    // A deliberate stop is no outage: no onClose, no reconnect scheduled.
    expect(events.close).toBe(0)
    expect(attempts).toEqual([])

    // start() after stop() does nothing: it would have created a socket (with listeners) at once.
    conn.start()
    expect(conn.socketListeners).toBe(0)
    expect(conn.ready).toBe(false)
    conn.stop() // twice is fine
    expect(blocked.losses).toHaveLength(1)
    expect(events.ready).toBe(1)
  })

  test('stop() from the onClose hook ends the retries', async () => {
    const port = await freePort()
    let conn: RespConnection | undefined
    const o = open({ host: '127.0.0.1', port }, {}, { onClose: () => conn?.stop() })
    conn = o.conn
    conn.start()
    await waitFor(() => o.events.close === 1, { message: 'the refused connect' })
    expect(o.attempts).toEqual([])
    expect(conn.socketListeners).toBe(0)
  })
})

describe('nothing listening', () => {
  test('not ready; onClose per attempt, retry delays asked for growing attempt numbers; no unhandled errors', async () => {
    const port = await freePort()
    const unhandled: unknown[] = []
    const onError = (e: unknown): void => void unhandled.push(e)
    process.on('uncaughtException', onError)
    process.on('unhandledRejection', onError)
    try {
      const delays: number[] = []
      const { conn, events, attempts } = open(
        { host: '127.0.0.1', port },
        {
          retryDelayMs: (n) => {
            attempts.push(n)
            delays.push(n * 3)
            return n * 3
          },
        },
      )
      conn.start()
      await waitFor(() => attempts.length >= 6, { message: '6 attempts' })
      expect(attempts.slice(0, 6)).toEqual([1, 2, 3, 4, 5, 6])
      expect(delays.slice(0, 6)).toEqual([3, 6, 9, 12, 15, 18])
      // Between turns, every close has asked for exactly one delay.
      expect(events.close).toBe(attempts.length)
      expect(events.reasons.every((r) => r.includes('ECONNREFUSED'))).toBe(true)
      expect(events.ready).toBe(0)
      expect(conn.ready).toBe(false)
      expect(conn.command(['PING'], recorder())).toBe(false)
      conn.stop()
      const n = attempts.length
      expect(conn.socketListeners).toBe(0)
      expect(attempts.length).toBe(n)
    } finally {
      process.off('uncaughtException', onError)
      process.off('unhandledRejection', onError)
    }
    expect(unhandled).toEqual([])
  })

  test('reconnectDelayMs (the gateway’s backoff) grows and is capped at 2 s', () => {
    const d = [1, 2, 3, 4, 5, 6, 7, 20, 1000].map(reconnectDelayMs)
    expect(d).toEqual([100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000])
  })
})

describe('EndpointClient over the connection', () => {
  test('a COMMAND INFO reply over 16 MiB is not held: no table (the built-in one applies), and the connection serves on', async () => {
    const fake = await startFakeRedis()
    // 90,000 entries of ~200 bytes: ~18 MB, sent whole.
    const entry = `*6\r\n$190\r\n${'x'.repeat(190)}\r\n:1\r\n*0\r\n:0\r\n:0\r\n:0\r\n`
    fake.on('COMMAND', (_args, socket) => void socket.write(`*90000\r\n${entry.repeat(90_000)}`))
    const errors: Error[] = []
    const spec = { id: `127.0.0.1:${fake.port}`, host: '127.0.0.1', port: fake.port, ready: true }
    const opts = { username: '', password: '', tls: false, commandTimeoutMs: 5000, connectTimeoutMs: 1000 }
    const client = new EndpointClient(spec, opts, { onReady: () => {}, onClose: () => {}, onCommands: (_t, e) => void (e && errors.push(e)) }, undefined, { tables: new SharedTables() })
    try {
      client.start()
      expect(await client.whenReady()).toBe(true)
      expect(await client.learnCommands()).toBeNull()
      expect(errors.map((e) => e.message)).toEqual(['COMMAND INFO answered more than 16777216 bytes; not read'])
      expect(await client.send(['PING'])).toEqual(buf('PONG'))
      expect(fake.connections).toHaveLength(1)
    } finally {
      await client.stop()
      await fake.close()
    }
  })

  test("the command table is read from COMMAND INFO's bytes, and is the one its values give", async () => {
    const spec = { id: `${main.host}:${main.port}`, host: main.host, port: main.port, ready: true }
    const opts = { username: '', password: '', tls: false, commandTimeoutMs: 2000, connectTimeoutMs: 1000 }
    const client = new EndpointClient(spec, opts, { onReady: () => {}, onClose: () => {} })
    try {
      client.start()
      expect(await client.whenReady()).toBe(true)
      const table = await client.learnCommands()
      expect(table).not.toBeNull()
      expect(table).toEqual(referenceTable(await client.send(['COMMAND', 'INFO'])))
      expect(table!.count).toBe(Number(await client.send(['COMMAND', 'COUNT'])))
      expect(table!.specs.get('get')).toMatchObject({ arity: 2, firstKey: 1, lastKey: 1, step: 1 })
      expect(table!.specs.get('get')!.flags).toContain('readonly')
      expect(table!.specs.get('config')!.subcommands.get('set')!.flags).toContain('admin')
    } finally {
      await client.stop()
    }
  })

  test('send/role/replication resolve with raw replies; failures carry the transport kinds', async () => {
    const spec = { id: `${main.host}:${main.port}`, host: main.host, port: main.port, ready: true }
    const opts = { username: '', password: '', tls: false, commandTimeoutMs: 1000, connectTimeoutMs: 1000 }
    const ready: string[] = []
    const client = new EndpointClient(spec, opts, { onReady: () => ready.push('ready'), onClose: () => ready.push('close') })
    try {
      expect(client.up).toBe(false)
      const refused = await client.send(['PING']).catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(NotConnectedError)
      expect(failureKind(refused)).toBe('unavailable')

      const waiting = client.whenReady()
      expect(waiting).not.toBe(true)
      client.start()
      expect(await waiting).toBe(true)
      expect(client.up).toBe(true)
      expect(client.whenReady()).toBe(true)
      expect(ready).toEqual(['ready'])

      expect(await client.send(['PING'])).toEqual(buf('PONG'))
      const err = await client.send(['GET']).catch((e: unknown) => e)
      expect((err as Error).name).toBe('ReplyError')
      const role = (await client.role()) as unknown[]
      expect(role[0]).toEqual(buf('master'))
      expect(typeof role[1]).toBe('string')
      const repl = await client.replication()
      expect(repl.replId).toMatch(/^[0-9a-f]{40}$/)
      expect(Number.isInteger(repl.offset)).toBe(true)

      const blocked = client.send(['BLPOP', key('never'), '0']).catch((e: unknown) => e)
      await waitFor(() => client.connection.pending === 1)
      await client.stop()
      const lost = await blocked
      expect(lost).toBeInstanceOf(ConnectionLostError)
      expect(await client.whenReady()).toBe(false)
      // A deliberate stop is not reported as an outage.
      expect(ready).toEqual(['ready'])
    } finally {
      await client.stop()
    }
  })
})

describe('admission (the pool\'s start queue) and shared command tables', () => {
  test('no connect until admitted; a request waiting for it asks for it; its first work settles; a reconnect is admitted again; equal tables are one object', async () => {
    const spec = { id: `${main.host}:${main.port}`, host: main.host, port: main.port, ready: true }
    const opts = { username: '', password: '', tls: false, commandTimeoutMs: 2000, connectTimeoutMs: 2000 }
    const admits: (() => void)[] = []
    const events: string[] = []
    const tables = new SharedTables()
    const client = (name: string): EndpointClient =>
      new EndpointClient(
        spec,
        opts,
        {
          onReady: () => events.push(`${name} ready`),
          onClose: () => events.push(`${name} close`),
          onSettled: () => events.push(`${name} settled`),
          onWanted: () => events.push(`${name} wanted`),
        },
        undefined,
        { admit: (go) => void admits.push(go), tables },
      )
    const a = client('a')
    const b = client('b')
    try {
      a.start()
      b.start()
      expect(admits).toHaveLength(2)
      expect(a.connection.queued && b.connection.queued).toBe(true)
      await new Promise((r) => setTimeout(r, 50))
      expect(a.up || b.up).toBe(false)
      const waiting = a.whenReady()
      expect(events).toEqual(['a wanted'])
      admits[0]!()
      expect(await waiting).toBe(true)
      await waitFor(() => events.includes('a settled'), { message: 'a settled' })
      expect(a.commands).not.toBeNull()
      admits[1]!()
      await waitFor(() => events.includes('b settled'), { message: 'b settled' })
      expect(b.commands).toBe(a.commands)
      // Its connection killed: the reconnect waits for admission like the first connect.
      const id = String(await a.send(['CLIENT', 'ID']))
      await b.send(['CLIENT', 'KILL', 'ID', id])
      await waitFor(() => admits.length === 3, { message: 'reconnect asks for admission' })
      expect(a.up).toBe(false)
      admits[2]!()
      await waitFor(() => a.up, { message: 'a reconnected' })
      expect(events.filter((e) => e.startsWith('a ')).slice(0, 5)).toEqual(['a wanted', 'a ready', 'a settled', 'a close', 'a ready'])
    } finally {
      await a.stop()
      await b.stop()
    }
  })

  test('SharedTables: two Redis processes send COMMAND INFO in different orders; the second is known by its digest, not read again', async () => {
    const other = await server()
    const opts = { username: '', password: '', tls: false, commandTimeoutMs: 2000, connectTimeoutMs: 2000 }
    const clients = [main, other].map((s) => new EndpointClient({ id: `${s.host}:${s.port}`, host: s.host, port: s.port, ready: true }, opts, { onReady: () => {}, onClose: () => {} }))
    try {
      const replies: Buffer[] = []
      for (const c of clients) {
        c.start()
        expect(await c.whenReady()).toBe(true)
        const r = await c.send(['COMMAND', 'INFO'], 1 << 24)
        expect(r).toBeInstanceOf(RespBytes)
        replies.push((r as RespBytes).bytes)
      }
      // Each process lists its command dict in its own hash order.
      expect(replies[1]!.length).toBe(replies[0]!.length)
      expect(replies[1]!.equals(replies[0]!)).toBe(false)
      expect(replyDigest(replies[1]!)).toBe(replyDigest(replies[0]!))
      const tables = new SharedTables()
      const first = await tables.read(replies[0]!)
      expect(await tables.read(replies[1]!)).toBe(first)
      expect(tables.parsed).toBe(1)
      expect(first).toEqual(parseCommandTable(replies[1]!))
    } finally {
      for (const c of clients) await c.stop()
    }
  })

  test('SharedTables: an equal table is the one kept; same fingerprint with other key positions is its own', () => {
    const t = new SharedTables()
    const mk = (firstKey: number): LearnedTable => tableOf(new Map([['get', { name: 'get', arity: 2, flags: ['readonly'], firstKey, lastKey: 1, step: 1, subcommands: new Map() }]]))
    const one = mk(1)
    expect(t.intern(one)).toBe(one)
    const same = mk(1)
    expect(same).not.toBe(one)
    expect(t.intern(same)).toBe(one)
    const other = mk(2)
    expect(other.fingerprint).toBe(one.fingerprint)
    expect(t.intern(other)).toBe(other)
  })
})

describe('LOADING', () => {
  // A small dataset loaded slowly: key-load-delay (microseconds per key, a Redis test knob) makes
  // the load last ~1-2 s on any machine, and loading-process-events-interval-bytes lets Redis
  // answer INFO while it loads. 200 MB with DEBUG POPULATE would be slower and machine-dependent.
  const KEYS = 20_000

  test('not ready while Redis loads its dataset; ready (and serving the data) once loaded', async () => {
    const s = await server({
      args: ['--enable-debug-command', 'yes', '--key-load-delay', '50', '--loading-process-events-interval-bytes', '1024'],
    })
    const admin = s.client()
    expect(await admin.call('DEBUG', 'POPULATE', String(KEYS), 'rc', '10')).toBe('OK')
    expect(await admin.call('SAVE')).toBe('OK')
    admin.disconnect()

    // What the connection's first command after each onReady gets: LOADING would mean it was
    // declared ready too early.
    const firstReplies: unknown[] = []
    let conn: RespConnection | undefined
    const o = open(s, {}, {
      onReady: () => {
        conn?.command(['DBSIZE'], { reply: (v) => firstReplies.push(v), lost: (e) => firstReplies.push(e) })
      },
    })
    conn = o.conn
    conn.start()
    await waitFor(() => o.events.ready === 1 && firstReplies.length === 1, { message: 'first ready' })
    expect(firstReplies[0]).toBe(String(KEYS))

    let restarted = false
    const restart = s.restart().then(() => void (restarted = true))
    const loading = async (): Promise<boolean | undefined> => {
      try {
        return parseInfo(await s.info('persistence'))['loading'] === '1'
      } catch {
        return undefined // not listening yet
      }
    }
    // While two probes in a row say loading:1, Redis was loading all along in between: the
    // connection, connected and asking INFO persistence by then, must not be ready.
    let whileLoading = 0
    let refusedWhileLoading = 0
    let connectedWhileLoading = 0
    while (!restarted) {
      const before = await loading()
      const ready = conn.ready
      const accepted = conn.command(['DBSIZE'], recorder())
      const listeners = conn.socketListeners
      const after = await loading()
      if (before === true && after === true) {
        whileLoading++
        expect(ready).toBe(false)
        expect(accepted).toBe(false)
        if (!accepted) refusedWhileLoading++
        // error + close only once the TCP connect has happened (the once-listener is gone; plain
        // TCP reads through onread, not a 'data' listener).
        if (listeners === 2) connectedWhileLoading++
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    await restart
    expect(whileLoading).toBeGreaterThanOrEqual(3)
    expect(refusedWhileLoading).toBe(whileLoading)
    expect(connectedWhileLoading).toBeGreaterThanOrEqual(1)
    await waitFor(() => o.events.ready === 2 && firstReplies.length === 2, { message: 'ready after loading' })
    expect(firstReplies[1]).toBe(String(KEYS))
    expect(await call(conn, ['GET', 'rc:0'])).toEqual(buf('value:0'.padEnd(10, '\0')))
  })
})
