// One MONITOR connection per SSE stream (README "MONITOR"): MONITOR turns a connection into a feed
// of every command the server runs, so it can be neither a shared command connection nor the
// subscriber connection. Each stream opens its own RespConnection in push mode, as the Redis user
// the token runs as (the admin level user: its rules are +@all, MONITOR included), sends MONITOR,
// and hands each line to its sink. It is never re-established: when the connection is lost (or
// reset because Redis broke the protocol) the stream ends and the client reconnects, so a line is
// never silently missing in the middle of a stream. stop() closes the connection for good.
//
// Bounded like pub/sub messages: each line is held to limits.maxReply (the connection's cap), a
// larger one is skipped as it streams in and counted (dropped()); a line longer than the parser's
// MAX_LINE_BYTES (64 KiB, simple strings have no length prefix) resets the connection, which ends
// the stream.

import { Buffer } from 'node:buffer'
import { TooLargeError } from '../core/errors.js'
import { withTimer } from '../core/timeout.js'
import { RespConnection, type RespConnectionOptions } from './resp-connection.js'
import { ReplyError } from './resp-parser.js'

export interface MonitorSink {
  /** One line as Redis sends it: `<unix time> [<db> <client>] "<command>" "<arg>"...`. */
  line(text: string): void
  /** The connection is gone (lost, reset, or refused MONITOR after a reconnect): end the stream. */
  close(reason: string): void
}

export interface MonitorOptions {
  /** Connecting, authenticating and Redis's OK to MONITOR together. */
  readonly timeoutMs: number
  readonly onFault?: (err: Error) => void
}

export class MonitorConnection {
  private readonly conn: RespConnection
  private state: 'connecting' | 'confirming' | 'streaming' | 'stopped' = 'connecting'
  private confirm: { resolve(): void; reject(err: Error): void } | null = null
  private readonly confirmed: Promise<void>
  private skipped = 0

  constructor(
    conn: RespConnectionOptions,
    private readonly sink: MonitorSink,
    private readonly opts: MonitorOptions,
  ) {
    this.confirmed = new Promise<void>((resolve, reject) => {
      this.confirm = { resolve, reject }
    })
    this.confirmed.catch(() => {})
    this.conn = new RespConnection(
      { ...conn, push: (v) => this.pushed(v) },
      {
        onReady: () => this.ready(),
        onClose: (reason) => this.lost(`connection to Redis lost: ${reason}`),
        ...(opts.onFault ? { onFault: opts.onFault } : {}),
      },
    )
  }

  /** Lines skipped for being over limits.maxReply. */
  get dropped(): number {
    return this.skipped
  }

  /**
   * Connects and sends MONITOR; resolves once Redis answered OK. Rejects (the connection stopped)
   * when that does not happen within timeoutMs, or Redis refuses MONITOR (ACL).
   */
  async start(): Promise<void> {
    this.conn.start()
    const { timeoutMs } = this.opts
    try {
      await withTimer(this.confirmed, timeoutMs, () => new Error(`MONITOR not confirmed within ${timeoutMs} ms`))
    } catch (err) {
      this.stop()
      throw err
    }
  }

  /** Closes the connection for good; the sink hears nothing more. Idempotent. */
  stop(): void {
    if (this.state === 'stopped') return
    this.state = 'stopped'
    this.confirm?.reject(new Error('stopped'))
    this.confirm = null
    this.conn.stop()
  }

  private ready(): void {
    if (this.state !== 'connecting') {
      // A reconnect after the stream was lost: nothing to resume (lost() ended it).
      this.stop()
      return
    }
    this.state = 'confirming'
    if (!this.conn.send(['MONITOR'])) this.lost('connection to Redis lost before MONITOR was sent')
  }

  private lost(reason: string): void {
    if (this.state === 'stopped') return
    if (this.state === 'connecting') return // still trying: start()'s timer decides
    const confirming = this.state === 'confirming'
    this.stop()
    if (!confirming) this.sink.close(reason)
  }

  private pushed(v: unknown): void {
    if (this.state === 'stopped') return
    if (this.state === 'confirming') {
      if (v instanceof ReplyError) {
        const c = this.confirm
        this.confirm = null
        this.stop()
        c?.reject(v)
        return
      }
      this.state = 'streaming'
      const c = this.confirm
      this.confirm = null
      c?.resolve()
      return
    }
    if (v instanceof TooLargeError) {
      this.skipped++
      this.opts.onFault?.(new Error(`MONITOR line dropped: ${v.message}`))
      return
    }
    if (Buffer.isBuffer(v)) {
      this.sink.line(v.toString('utf8'))
      return
    }
    if (typeof v === 'string') {
      this.sink.line(v)
      return
    }
    // An error reply or anything else has no place in a monitor feed.
    this.stop()
    this.sink.close(v instanceof Error ? `Redis: ${v.message}` : 'unexpected reply on the MONITOR connection')
  }
}
