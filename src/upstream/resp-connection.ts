// One RESP2 connection to a Redis endpoint, built for the request path. A command on an idle
// connection (nothing in flight) is written at once; while replies are outstanding, commands issued
// in the same turn of the event loop leave in one write (auto-pipelining, flushed by setImmediate:
// after every socket that was readable in this turn has been served, not after each one as a
// process.nextTick flush would, which made one write per HTTP request at 50 connections); replies are parsed as they stream in (resp-parser.ts:
// iterative, charged before kept, oversized or unwanted replies skipped) and handed to a sink
// object in order: no Command object, promise or timer per command. In a 100-command pipeline ioredis's
// per-command objects and the garbage they made were most of the CPU (bench/README.md).
//
// It never queues while disconnected (a command is refused at once: NotConnectedError), never
// re-sends anything, and reconnects by itself with capped backoff. Ready means: connected,
// authenticated (AUTH when a password is configured) and not loading a dataset (INFO
// persistence, polled like ioredis's ready check). Commands that change the connection's own
// state (SELECT, SUBSCRIBE, MONITOR, CLIENT REPLY...) are refused by classification before they
// get here, so every command gets exactly one reply, in order.
// The one exception is push mode (the `push` option), for the SSE subscriber connection
// (pubsub.ts): there Redis sends a reply per channel name and messages no command asked for, so
// once ready every reply goes to one handler, charged to the connection's own cap, and commands go
// out with send(). Connecting, TLS, AUTH, reconnecting and the parser's protections are the same.
// Construction does no I/O; start() connects, stop() closes for good.

import { Buffer } from 'node:buffer'
import net from 'node:net'
import tls from 'node:tls'
import { RespParser, type ChargedSink } from './resp-parser.js'
import { BATCH_MIN_COMMANDS, encodeAsciiBatch } from './resp-batch.js'
import { ConnectionLostError, NotConnectedError, StalledError } from '../core/errors.js'
import type { Arg } from '../core/command.js'
import { ioTimeout } from '../core/timeout.js'

/** Receives the replies to the commands written for it, in order (one call per command). */
export interface ReplySink extends ChargedSink {
  /** A reply (Buffer, decimal string, null, array) or a Redis error reply (Error named ReplyError). */
  reply(value: unknown): void
  /** The connection failed before this command's reply: the command may or may not have run. */
  lost(err: Error): void
  /**
   * Asked before the bytes of this sink's reply are kept: each bulk string's length (and status
   * or error line's, inside arrays), plus REPLY_ELEMENT_BYTES (resilience/byte-budget.ts) per
   * array element. null keeps them; an Error makes the whole reply that error instead: the rest of
   * it is skipped as it arrives, never stored. Absent: the connection's maxReplyBytes applies.
   */
  charge?(bytes: number): Error | null
  /**
   * True once the reply is not wanted any more (its request timed out or its client left): it is
   * skipped, not stored, and reply() gets null.
   */
  readonly done?: boolean
}

export interface RespConnectionOptions {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly password: string
  readonly tls: boolean
  readonly connectTimeoutMs: number
  /** Delay before reconnect attempt `n` (1, 2, ...). */
  readonly retryDelayMs: (attempt: number) => number
  /**
   * Wait until Redis has loaded its dataset (INFO persistence) before ready; default true. Off for
   * restricted ACL users, which may not run INFO (a LOADING reply then fails the command).
   */
  readonly readyCheck?: boolean
  /** Reply bytes kept for a command whose sink does not charge them itself; default 512 MiB. */
  readonly maxReplyBytes?: number
  /**
   * Push mode (a subscriber connection): once the connection is ready, every reply goes here, in
   * order, instead of to a command's sink: SUBSCRIBE/UNSUBSCRIBE confirmations (one per name),
   * messages, error replies, and a TooLargeError in place of a reply larger than maxReplyBytes or
   * nested deeper than REPLY_MAX_DEPTH (skipped as it streamed in, never kept; the connection stays
   * up). Commands are written with send(); command() and commands() throw. Whatever the handler
   * throws resets the connection, as a protocol error does (onFault hears of it): throw when the
   * stream is out of step.
   */
  readonly push?: (value: unknown) => void
  /**
   * Read at each handshake: with readOnly set, READONLY follows AUTH, so a Redis Cluster replica
   * serves reads of its shard's slots on this connection (instead of MOVED). Its error reply (a
   * user without +readonly) is ignored: reads are then redirected to the primary.
   */
  readonly session?: { readonly readOnly: boolean }
  /**
   * Asked before each connect attempt (the first and every reconnect): the attempt starts when
   * `connect` is called, so its connect timeout runs from then. The pool queues its endpoints'
   * attempts with it (start-queue.ts): thousands of endpoints never connect and do their first
   * work all in one turn. Absent: attempts start at once.
   */
  readonly admit?: (connect: () => void) => void
}

export interface RespConnectionHooks {
  /** Ready (first connect or reconnect). */
  onReady(): void
  /**
   * The connection (or a connect attempt) closed; commands are refused until it is ready again.
   * `reason`: what went wrong (a socket or TLS error, AUTH refused...), for logs.
   */
  onClose(reason: string): void
  /** Something was thrown, or Redis broke the protocol, while reading: the connection was reset. */
  onFault?(err: Error): void
}

type Status = 'idle' | 'connecting' | 'ready' | 'waiting' | 'stopped'

const CRLF = '\r\n'
const HEADER_TABLE = 256
const ARRAY_HEADERS = Array.from({ length: HEADER_TABLE }, (_, n) => `*${n}\r\n`)
const BULK_HEADERS = Array.from({ length: HEADER_TABLE }, (_, n) => `$${n}\r\n`)
const arrayHeader = (n: number): string => (n < HEADER_TABLE ? ARRAY_HEADERS[n]! : `*${n}\r\n`)
const bulkHeader = (n: number): string => (n < HEADER_TABLE ? BULK_HEADERS[n]! : `$${n}\r\n`)
/** Read size on plain TCP connections (node's own default for a socket read). */
const READ_BUFFER_BYTES = 64 * 1024
/**
 * The one buffer every plain TCP connection of the process reads into: reads run one at a time
 * and onRead copies the bytes out before it returns, so nothing is ever left in it. One per
 * connection was 64 KiB each (312 MiB for 5,000 endpoints, allocated as they all connected).
 */
let sharedReadBuffer: Buffer | null = null
/** Redis's own largest bulk string (proto-max-bulk-len's default). */
const DEFAULT_MAX_REPLY_BYTES = 512 * 1024 * 1024

export class RespConnection {
  private status: Status = 'idle'
  private socket: net.Socket | null = null
  private readonly parser: RespParser
  /** Sinks of written commands, one slot per command, oldest at `head`. */
  private queue: ReplySink[] = []
  private head = 0
  /** Output of this turn: text, and Buffers (binary arguments) in between when there are any. */
  private out = ''
  private parts: (string | Buffer)[] | null = null
  private flushing = false
  private corked = 0
  private idleAtCork = false
  private attempts = 0
  private timer: NodeJS.Timeout | null = null
  /** Why the current socket failed, once it has (for onClose). */
  private failure: string | null = null
  /** An attempt waits for admission (RespConnectionOptions.admit). */
  private admitting = false
  /** Reads from Redis so far, on any socket of this connection (see timedOut()). */
  private readCount = 0
  /** Set by timedOut() before it resets the socket: what the waiting commands fail with. */
  private stalled: StalledError | null = null
  /**
   * Bytes read into the shared read buffer, which the next read (of any connection) overwrites: the
   * parser keeps slices of what it is given (bulk replies, a reply split across reads), so it gets a copy.
   */
  private readonly onRead = (n: number, buf: Buffer): boolean => {
    const chunk = Buffer.allocUnsafe(n)
    buf.copy(chunk, 0, 0, n)
    this.read(chunk)
    return true
  }
  private readonly onError = (err: Error): void => {
    this.failure ??= err.message
  }
  /** Push mode's handler (see RespConnectionOptions.push), or null. */
  private readonly push: ((value: unknown) => void) | null

  constructor(
    private readonly opts: RespConnectionOptions,
    private readonly hooks: RespConnectionHooks,
  ) {
    const push = opts.push
    this.push = push ?? null
    this.parser = new RespParser(
      push === undefined
        ? {
            peek: () => this.queue[this.head],
            reply: (v) => this.next().reply(v),
            fatal: (err) => this.fault(err),
          }
        : {
            // The handshake's replies (AUTH, the ready check) still go to their sinks; after that
            // everything is a push. Before ready, a reply nobody asked for is a protocol error as usual.
            peek: () => this.queue[this.head] ?? (this.status === 'ready' ? PUSH_SINK : undefined),
            reply: (v) => {
              if (this.head < this.queue.length) this.next().reply(v)
              else push(v)
            },
            fatal: (err) => this.fault(err),
          },
      opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES,
    )
  }

  /**
   * Bytes from Redis. Whatever is thrown while they are parsed or handed over (a bug in a sink, a
   * reply too big to allocate) resets this connection, never the process.
   */
  private read(chunk: Buffer): void {
    this.readCount++
    try {
      this.parser.execute(chunk)
    } catch (err) {
      this.fault(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** The stream cannot be trusted any more: reset the connection (its commands are lost) and say why. */
  private fault(err: Error): void {
    this.failure ??= err.message
    this.socket?.destroy(err)
    this.hooks.onFault?.(err)
  }

  get ready(): boolean {
    return this.status === 'ready'
  }

  /** Commands written and not yet answered. */
  get pending(): number {
    return this.queue.length - this.head
  }

  /** Listeners on the current socket: a fixed number, however often it reconnected (a leak check). */
  get socketListeners(): number {
    const s = this.socket
    if (s === null) return 0
    return s.listenerCount('data') + s.listenerCount('error') + s.listenerCount('close') + s.listenerCount('connect') + s.listenerCount('secureConnect')
  }

  start(): void {
    if (this.status === 'idle') this.attempt()
  }

  /** Whether an attempt waits for admission (RespConnectionOptions.admit). */
  get queued(): boolean {
    return this.admitting
  }

  /** The next connect attempt, once admitted. */
  private attempt(): void {
    const admit = this.opts.admit
    if (admit === undefined) return this.connect()
    if (this.admitting) return
    this.admitting = true
    admit(() => {
      this.admitting = false
      if (this.status === 'idle' || this.status === 'waiting') this.connect()
    })
  }

  stop(): void {
    if (this.status === 'stopped') return
    this.status = 'stopped'
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.socket?.destroy()
    this.failPending(new ConnectionLostError('Connection is closed.'))
  }

  /**
   * Writes one command for `sink` (in this turn's batch). False when not ready: nothing was written
   * and the sink hears nothing.
   */
  command(args: readonly Arg[], sink: ReplySink): boolean {
    if (this.status !== 'ready') return false
    if (args.length === 0) throw new Error('RespConnection: an empty command gets no reply')
    if (this.push !== null) throw new Error('RespConnection: in push mode, commands go out with send()')
    const idle = this.idle
    this.enqueue(args, sink)
    this.release(idle)
    return true
  }

  /** Writes several commands for one sink, back to back in this turn's batch; false when not ready. */
  commands(list: readonly (readonly Arg[])[], sink: ReplySink): boolean {
    if (this.status !== 'ready') return false
    for (const args of list) if (args.length === 0) throw new Error('RespConnection: an empty command gets no reply')
    if (this.push !== null) throw new Error('RespConnection: in push mode, commands go out with send()')
    const idle = this.idle
    const text = list.length >= BATCH_MIN_COMMANDS ? encodeAsciiBatch(list) : null
    if (text === null) for (const args of list) this.enqueue(args, sink)
    else {
      this.out += text
      for (let i = 0; i < list.length; i++) this.queue.push(sink)
    }
    this.release(idle)
    return true
  }

  /**
   * Push mode: writes one command whose replies, however many, go to the push handler. With no
   * per-command queue the connection is always idle, so it leaves at once (between cork() and
   * uncork(), at uncork()), and commands reach Redis in the order they were sent. False when not
   * ready: nothing was written.
   */
  send(args: readonly Arg[]): boolean {
    if (this.push === null) throw new Error('RespConnection: send() is for push mode; use command()')
    if (this.status !== 'ready') return false
    if (args.length === 0) throw new Error('RespConnection: an empty command')
    const idle = this.idle
    this.encode(args)
    this.release(idle)
    return true
  }

  /**
   * Commands issued until the matching uncork() leave in one write (MULTI ... EXEC, a pipeline and
   * the ROLE after it): the idle connection's immediate write waits for the last of them.
   */
  cork(): void {
    if (this.corked === 0) this.idleAtCork = this.idle
    this.corked++
  }

  uncork(): void {
    if (this.corked === 0) return
    if (--this.corked === 0) this.release(this.idleAtCork)
  }

  /**
   * Nothing in flight and nothing waiting to go: the next command is written at once. Otherwise it
   * joins the batch written after this turn of the event loop (setImmediate), as before: writing at
   * once gives one request alone on a connection (one client, or light load) its round trip
   * without waiting for the rest of the turn, and what runs after the write (promise callbacks,
   * accounting) overlaps Redis's work; under load the connection is rarely idle and commands keep
   * leaving in batches, which is what makes auto-pipelining pay.
   */
  private get idle(): boolean {
    return this.corked === 0 && !this.flushing && this.queue.length === this.head
  }

  private release(idle: boolean): void {
    if (this.corked > 0 || (this.out === '' && this.parts === null)) return
    if (idle) this.flush()
    else this.schedule()
  }

  private next(): ReplySink {
    const sink = this.queue[this.head]
    if (sink === undefined) {
      // A reply nobody asked for: the stream is out of step; start over on a new connection.
      this.socket?.destroy(new Error('unexpected reply from Redis'))
      return IGNORE
    }
    this.queue[this.head++] = IGNORE
    if (this.head === this.queue.length) {
      this.queue.length = 0
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    return sink
  }

  /** Adds a command to this turn's output, its reply to go to `sink`. */
  private enqueue(args: readonly Arg[], sink: ReplySink): void {
    this.encode(args)
    this.queue.push(sink)
  }

  private encode(args: readonly Arg[]): void {
    // The `*n` and `$len` lines of short commands and arguments come from tables: fewer string
    // concatenations and no number-to-text conversion per argument.
    let s = arrayHeader(args.length)
    for (const a of args) {
      if (typeof a === 'string') s += bulkHeader(Buffer.byteLength(a)) + a + CRLF
      else {
        // Binary-safe: the Buffer goes out as it is, between the text around it.
        s += bulkHeader(a.length)
        const parts = (this.parts ??= [])
        parts.push(this.out + s, a)
        this.out = ''
        s = CRLF
      }
    }
    this.out += s
  }

  private schedule(): void {
    if (this.flushing) return
    this.flushing = true
    setImmediate(flush, this)
  }

  /** @internal */
  flush(): void {
    this.flushing = false
    const socket = this.socket
    const parts = this.parts
    const out = this.out
    this.parts = null
    this.out = ''
    if (socket === null) return
    if (parts === null) {
      socket.write(out)
      return
    }
    socket.cork()
    for (const p of parts) socket.write(p)
    if (out.length > 0) socket.write(out)
    socket.uncork()
  }

  private connect(): void {
    this.status = 'connecting'
    const o = this.opts
    // SNI carries host names only (RFC 6066); an IP endpoint's certificate is still checked against it.
    // Plain TCP reads into one buffer (shared by every connection) and hands the bytes straight to
    // the parser: no stream machinery and no 64 KiB allocation per read (node's default). TLS
    // streams as usual.
    const socket = o.tls
      ? tls.connect({ host: o.host, port: o.port, ...(net.isIP(o.host) === 0 ? { servername: o.host } : {}) })
      : net.connect({ host: o.host, port: o.port, onread: { buffer: (sharedReadBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES)), callback: this.onRead } })
    this.failure = null
    this.socket = socket
    socket.setNoDelay(true)
    // The verdict waits for the I/O of the turn the timer fired in: after a long turn (an event loop
    // busy with thousands of clients or connects) the timer runs before the connect that completed
    // meanwhile is seen, and would cut a good connection (bench/README.md, "Cost as work grows").
    const timer = ioTimeout(() => socket.destroy(new Error(`connect timeout after ${o.connectTimeoutMs} ms`)), o.connectTimeoutMs)
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      timer.clear()
      this.handshake(socket)
    })
    if (o.tls) socket.on('data', (chunk: Buffer) => this.read(chunk))
    socket.on('error', this.onError)
    socket.once('close', () => {
      timer.clear()
      this.closed(socket)
    })
  }

  /**
   * AUTH when configured, then wait while Redis loads its dataset; then ready. Each step's reply
   * must come within the connect timeout: a server that accepts connections but does not answer
   * (stalled, paused) must not leave the connection connecting forever.
   */
  private handshake(socket: net.Socket): void {
    const o = this.opts
    const fail = (why: string): void => {
      socket.destroy(new Error(why))
    }
    const ready = (): void => {
      this.status = 'ready'
      this.attempts = 0
      this.hooks.onReady()
    }
    const step = (args: Arg[], what: string, onReply: (v: unknown) => void): void => {
      const timer = ioTimeout(() => fail(`${what} not answered within ${o.connectTimeoutMs} ms`), o.connectTimeoutMs)
      this.enqueue(
        args,
        sinkOf(
          (v) => {
            timer.clear()
            onReply(v)
          },
          (why) => {
            timer.clear()
            fail(why)
          },
        ),
      )
      this.flush()
    }
    const check = (): void => {
      if (this.socket !== socket || this.status !== 'connecting') return
      if (o.readyCheck === false) return ready()
      step(['INFO', 'persistence'], 'ready check (INFO persistence)', (v) => {
        if (v instanceof Error) return fail(`ready check failed: ${v.message}`)
        const info = Buffer.isBuffer(v) ? v.toString('latin1') : String(v)
        if (/^loading:1/m.test(info)) {
          // Like ioredis: poll again after the ETA, at most a second.
          const eta = /^loading_eta_seconds:(\d+)/m.exec(info)
          this.timer = setTimeout(check, Math.min(1000, Math.max(100, eta ? Number(eta[1]) * 1000 : 1000)))
          return
        }
        ready()
      })
    }
    const afterAuth = (): void => {
      if (o.session?.readOnly !== true) return check()
      step(['READONLY'], 'READONLY', () => check())
    }
    if (o.password) {
      const auth = o.username ? ['AUTH', o.username, o.password] : ['AUTH', o.password]
      step(auth, 'AUTH', (v) => (v instanceof Error ? fail(`AUTH failed: ${v.message}`) : afterAuth()))
    } else afterAuth()
  }

  /** Reads so far: taken when a command is written, handed back to timedOut() if it times out. */
  get reads(): number {
    return this.readCount
  }

  /**
   * A command written when `reads` was `readsAtSend` got no reply in time. The connection is reset
   * (its waiting commands are lost: UPSTREAMRESET; it reconnects) when it is stalled, not slow:
   * - not one byte has arrived since, while replies are owed (a Redis stopped in the middle of a
   *   reply, a peer gone without a FIN);
   * - or it is still passing over a refused reply (already answered 413): a server that declared
   *   10 GB and trickles, or a 200 MB value at loopback speed, would hold every command behind it
   *   for longer than their timeout; better a new connection than more of those bytes.
   * As Envoy's redis_proxy closes an upstream connection on a request timeout. A reply that is
   * being received, however slowly, keeps the connection. Returns true when the connection is busy
   * (replies kept arriving, so the command waits behind others): kept; false otherwise.
   */
  timedOut(readsAtSend: number): boolean {
    if (this.pending === 0 || this.socket === null) return false
    if (this.readCount !== readsAtSend && !this.parser.skipping) return true
    const why = this.parser.skipping
      ? 'a command timed out behind a refused reply still being skipped: connection reset'
      : 'no reply from Redis within the command timeout, and nothing else either: connection reset'
    this.stalled = new StalledError(why)
    this.socket.destroy(new Error(why))
    return false
  }

  /** Reconnects at once when waiting for the backoff before the next attempt (the endpoint is back). */
  reconnectNow(): void {
    if (this.status !== 'waiting') return
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.connect()
  }

  private closed(socket: net.Socket): void {
    if (this.socket !== socket) return
    this.socket = null
    this.parser.reset()
    this.out = ''
    this.parts = null
    if (this.status === 'stopped') return
    // Not ready before the sinks hear of it: a command sent from lost() is refused, not queued
    // on a socket that is gone.
    this.status = 'waiting'
    const stalled = this.stalled
    this.stalled = null
    this.failPending(stalled ?? new ConnectionLostError('Connection is closed.'))
    this.hooks.onClose(this.failure ?? 'closed by the server')
    if (this.status !== 'waiting') return // stopped by the hook
    this.attempts++
    this.timer = setTimeout(() => {
      this.timer = null
      if (this.status === 'waiting') this.attempt()
    }, this.opts.retryDelayMs(this.attempts))
  }

  private failPending(err: Error): void {
    const sinks = this.queue
    const from = this.head
    this.queue = []
    this.head = 0
    for (let i = from; i < sinks.length; i++) sinks[i]!.lost(err)
  }
}

function flush(c: RespConnection): void {
  c.flush()
}

const IGNORE: ReplySink = { reply() {}, lost() {} }

/**
 * What a push reply is charged to: no charge() of its own, so the parser holds each reply to the
 * connection's maxReplyBytes (counted afresh per reply), and delivers a TooLargeError instead.
 */
const PUSH_SINK: ChargedSink = {}

function sinkOf(onReply: (v: unknown) => void, onLost: (why: string) => void): ReplySink {
  return { reply: onReply, lost: (e) => onLost(e.message) }
}
