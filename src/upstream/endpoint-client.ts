// One Redis endpoint as the gateway talks to it: a single auto-pipelined RESP connection for
// commands (resp-connection.ts), and the options of the ioredis subscriber connection that the
// pub/sub hub opens lazily. Construction does no I/O; start() connects, stop() closes.

// The global Buffer is a getter on Node 20 (~140 instructions per use): import the binding.
import { Buffer } from 'node:buffer'
import { isIP } from 'node:net'
import type { RedisOptions } from 'ioredis'
import type { EndpointSpec } from '../discovery/topology.js'
import type { RawReply } from './encode.js'
import { NotConnectedError, RespConnection, type ReplySink } from './resp-connection.js'

export interface UpstreamOptions {
  readonly username: string
  readonly password: string
  readonly tls: boolean
  readonly commandTimeoutMs: number
  readonly connectTimeoutMs: number
}

export type Args = readonly (string | Buffer)[]

/** Backoff for re-establishing a lost connection (never for re-sending a command). */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), 2000)
}

export function clientOptions(spec: EndpointSpec, o: UpstreamOptions, extra: Partial<RedisOptions> = {}): RedisOptions {
  return {
    host: spec.host,
    port: spec.port,
    ...(o.username ? { username: o.username } : {}),
    ...(o.password ? { password: o.password } : {}),
    // SNI carries host names only (RFC 6066); an IP endpoint's certificate is still checked against it.
    ...(o.tls ? { tls: isIP(spec.host) === 0 ? { servername: spec.host } : {} } : {}),
    lazyConnect: true,
    enableAutoPipelining: true,
    // Fail at once while disconnected instead of queueing without bound.
    enableOfflineQueue: false,
    // A command is never re-sent by ioredis: retries are the gateway's decision (never for writes).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: o.commandTimeoutMs,
    connectTimeout: o.connectTimeoutMs,
    // Integer replies as exact decimal text; bulk replies stay Buffers (replyEncoding null).
    stringNumbers: true,
    enableReadyCheck: true,
    retryStrategy: (times: number) => reconnectDelayMs(times),
    reconnectOnError: () => false,
    ...extra,
  }
}

export interface EndpointClientHooks {
  /** The connection became ready (first connect or reconnect). */
  onReady(): void
  /** The connection closed unexpectedly (or could not be made), and why; commands fail until it is back. */
  onClose(reason: string): void
}

/**
 * Transport only: what the gateway believes about the endpoint (role, offsets, load) lives in
 * EndpointState, owned by the pool next to this client. Commands go over one RespConnection
 * (resp-connection.ts); the subscriber connection is ioredis's (pubsub.ts).
 */
export class EndpointClient {
  readonly id: string
  readonly spec: EndpointSpec
  readonly connection: RespConnection
  private stopped = false
  /** Why the connection last failed; null once it is ready again. */
  private failure: string | null = null
  /** Requests waiting for the connection: the connection's one ready hook serves them all. */
  private readonly waiters = new Set<(ok: boolean) => void>()

  constructor(
    spec: EndpointSpec,
    private readonly opts: UpstreamOptions,
    hooks: EndpointClientHooks = { onReady() {}, onClose() {} },
  ) {
    this.id = spec.id
    this.spec = spec
    this.connection = new RespConnection(
      {
        host: spec.host,
        port: spec.port,
        username: opts.username,
        password: opts.password,
        tls: opts.tls,
        connectTimeoutMs: opts.connectTimeoutMs,
        retryDelayMs: reconnectDelayMs,
      },
      {
        onReady: () => {
          this.failure = null
          for (const w of [...this.waiters]) w(true)
          hooks.onReady()
        },
        onClose: (reason) => {
          this.failure = reason
          if (!this.stopped) hooks.onClose(reason)
        },
      },
    )
  }

  get up(): boolean {
    return this.connection.ready
  }

  /** Requests waiting in whenReady(). */
  get waiting(): number {
    return this.waiters.size
  }

  /**
   * Resolves when the connection is ready: at once when it is, after at most connectTimeout while
   * it is being (re)established, and false when it does not come up in that time.
   */
  whenReady(): Promise<boolean> | true {
    if (this.connection.ready) return true
    if (this.stopped) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        this.waiters.delete(done)
        resolve(ok)
      }
      const timer = setTimeout(() => done(false), this.opts.connectTimeoutMs)
      this.waiters.add(done)
    })
  }

  start(): void {
    this.connection.start()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.connection.stop()
    for (const w of [...this.waiters]) w(false)
  }

  /**
   * One command with a promise for its reply (health checks, ROLE, INFO; the request path uses
   * connection.command() with a sink instead). Rejects with the Redis error reply, or with
   * NotConnectedError / ConnectionLostError.
   */
  send(args: Args): Promise<RawReply> {
    return new Promise((resolve, reject) => {
      const sink: ReplySink = {
        reply: (v) => (v instanceof Error ? reject(v) : resolve(v as RawReply)),
        lost: reject,
      }
      // Health checks report this message: it says why (a refused connection, a certificate, AUTH).
      if (!this.connection.command(args, sink)) reject(notConnected(this.id, this.failure))
    })
  }

  /** ROLE, in this turn's batch: issued right behind a write it reports the offset just after it. */
  role(): Promise<unknown> {
    return this.send(ROLE)
  }

  /** Replication id and offset from INFO replication (ROLE does not carry the id). */
  async replication(): Promise<{ replId: string | null; offset: number }> {
    const reply = await this.send(INFO_REPLICATION)
    const info = Buffer.isBuffer(reply) ? reply.toString('latin1') : String(reply)
    const m = /master_replid:([0-9a-f]+)/.exec(info)
    const o = /master_repl_offset:(\d+)/.exec(info)
    return { replId: m ? m[1]! : null, offset: o ? Number(o[1]) : 0 }
  }
}

const ROLE: Args = ['ROLE']
const INFO_REPLICATION: Args = ['INFO', 'replication']

/** `reason` only where operators read it (health state, logs), not in replies to clients. */
export function notConnected(endpoint: string, reason: string | null = null): NotConnectedError {
  return new NotConnectedError(`endpoint ${endpoint} is not connected${reason === null ? '' : ` (${reason})`}`)
}
