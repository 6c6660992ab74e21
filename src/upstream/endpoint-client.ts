// One Redis endpoint as the gateway talks to it: a single auto-pipelined ioredis connection
// for commands, and (lazily) one subscriber connection shared by every SSE stream.
// Construction does no I/O; start() connects, stop() closes.

import { Redis, Command, type RedisOptions } from 'ioredis'
import type { EndpointSpec } from '../discovery/topology.js'
import type { RawReply } from './encode.js'

export interface UpstreamOptions {
  readonly username: string
  readonly password: string
  readonly tls: boolean
  readonly commandTimeoutMs: number
  readonly connectTimeoutMs: number
}

export type Args = readonly (string | Buffer)[]

// ioredis rewrites some replies by command name (HGETALL into an object, losing order and binary
// keys). Its transformer table is keyed by the lower-case name, so these are sent upper-case,
// which Redis treats the same and ioredis leaves alone.
const REPLY_TRANSFORMED: Record<string, true> = { hgetall: true }

/** The name to give ioredis for a raw command: upper-case where ioredis would rewrite the reply. */
export function wireName(lowerName: string): string {
  return lowerName in REPLY_TRANSFORMED ? lowerName.toUpperCase() : lowerName
}

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
    ...(o.tls ? { tls: { servername: spec.host } } : {}),
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
  /** The connection closed unexpectedly; commands fail until it is back. */
  onClose(): void
}

/**
 * Transport only: what the gateway believes about the endpoint (role, offsets, load) lives in
 * EndpointState, owned by the pool next to this client.
 */
export class EndpointClient {
  readonly id: string
  readonly spec: EndpointSpec
  readonly redis: Redis
  private stopped = false
  /** Requests waiting for the connection: one 'ready' listener serves them all. */
  private readonly waiters = new Set<(ok: boolean) => void>()

  constructor(
    spec: EndpointSpec,
    private readonly opts: UpstreamOptions,
    hooks: EndpointClientHooks = { onReady() {}, onClose() {} },
  ) {
    this.id = spec.id
    this.spec = spec
    // No ioredis commandTimeout here: each attempt arms one timer of its own (upstream/execute.ts),
    // which also settles the endpoint's accounting; a second timer per command only cost CPU.
    this.redis = new Redis(clientOptions(spec, opts, { commandTimeout: undefined }))
    this.redis.on('ready', () => {
      for (const w of [...this.waiters]) w(true)
      hooks.onReady()
    })
    this.redis.on('close', () => {
      if (!this.stopped) hooks.onClose()
    })
    // ioredis emits 'error' for connection failures; without a listener Node would crash.
    this.redis.on('error', () => {})
  }

  get up(): boolean {
    return this.redis.status === 'ready'
  }

  get commandTimeoutMs(): number {
    return this.opts.commandTimeoutMs
  }

  /**
   * Resolves when the connection is ready: at once when it is, after at most connectTimeout while
   * it is being (re)established, and false when it does not come up in that time.
   */
  whenReady(): Promise<boolean> | true {
    if (this.redis.status === 'ready') return true
    if (this.stopped || this.redis.status === 'end') return Promise.resolve(false)
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
    this.redis.connect().catch(() => {
      // Initial connect failures are retried by retryStrategy; state is reported via hooks.
    })
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.redis.disconnect(false)
  }

  /** Sends one command through ioredis's auto-pipeline with a Buffer reply. */
  send(args: Args): Promise<RawReply> {
    const name = (typeof args[0] === 'string' ? args[0] : args[0]!.toString('latin1')).toLowerCase()
    const rest = args.slice(1) as (string | Buffer)[]
    const fn = name in REPLY_TRANSFORMED ? undefined : (this.redis as unknown as Record<string, unknown>)[`${name}Buffer`]
    // ioredis's callBuffer() loses the command name under auto-pipelining, so call the
    // per-command method (which auto-pipelines correctly); fall back to a raw Command.
    if (typeof fn === 'function') {
      return (fn as (...a: (string | Buffer)[]) => Promise<RawReply>).apply(this.redis, rest)
    }
    return this.redis.sendCommand(new Command(wireName(name), rest, { replyEncoding: null })) as Promise<RawReply>
  }

  /** ROLE, auto-pipelined: issued right behind a write it reports the offset just after it. */
  role(): Promise<unknown> {
    return this.redis.role()
  }

  /** Replication id and offset from INFO replication (ROLE does not carry the id). */
  async replication(): Promise<{ replId: string | null; offset: number }> {
    const info = await this.redis.info('replication')
    const m = /master_replid:([0-9a-f]+)/.exec(info)
    const o = /master_repl_offset:(\d+)/.exec(info)
    return { replId: m ? m[1]! : null, offset: o ? Number(o[1]) : 0 }
  }
}
