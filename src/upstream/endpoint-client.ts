// One Redis endpoint as the gateway talks to it: a single auto-pipelined RESP connection for
// commands (resp-connection.ts), and the connection options it shares with the subscriber
// connection the pub/sub hub opens lazily (pubsub.ts). Construction does no I/O; start() connects,
// stop() closes.

// The global Buffer is a getter on Node 20 (~140 instructions per use): import the binding.
import { Buffer } from 'node:buffer'
import type { EndpointSpec } from '../discovery/topology.js'
import type { RawReply } from './encode.js'
import { performance } from 'node:perf_hooks'
import { NotConnectedError, RespConnection, type ReplySink, type RespConnectionOptions } from './resp-connection.js'
import { ConnectionSlot } from './connection-slot.js'
import { withTimer } from '../timeout.js'
import type { Identity } from './identity.js'
import { aclSettings, provisionLevelUsers, unmanagedReason, UNMANAGED_RETRY_MS, type AclSettings, type AclState } from './acl-users.js'

export interface UpstreamOptions {
  readonly username: string
  readonly password: string
  readonly tls: boolean
  readonly commandTimeoutMs: number
  readonly connectTimeoutMs: number
  /** `redis.aclUsers`: read, write and admin tokens run as Redis ACL users the gateway provisions. */
  readonly aclUsers?: boolean
  /** Reply bytes kept for the gateway's own commands (requests charge their lease instead). */
  readonly maxReplyBytes?: number
}

export type Args = readonly (string | Buffer)[]

/** Backoff for re-establishing a lost connection (never for re-sending a command). */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), 2000)
}

/**
 * Options of a RespConnection to `spec` as `username`: one place for the address, TLS, timeouts,
 * backoff and reply cap of every connection to an endpoint (the gateway's own, the users' tokens
 * run as, the subscribers'). `readyCheck`: wait while Redis loads its dataset (INFO persistence),
 * off for users that may not run INFO and for subscribers.
 */
export function connectionOptions(spec: EndpointSpec, o: UpstreamOptions, username: string, password: string, readyCheck: boolean): RespConnectionOptions {
  return {
    host: spec.host,
    port: spec.port,
    username,
    password,
    tls: o.tls,
    connectTimeoutMs: o.connectTimeoutMs,
    retryDelayMs: reconnectDelayMs,
    readyCheck,
    ...(o.maxReplyBytes !== undefined ? { maxReplyBytes: o.maxReplyBytes } : {}),
  }
}

export interface EndpointClientHooks {
  /** The gateway's own connection became ready (first connect or reconnect). */
  onReady(): void
  /** The gateway's own connection closed unexpectedly (or could not be made), and why; commands fail until it is back. */
  onClose(reason: string): void
  /** A connection to this endpoint was reset because something was thrown or Redis broke the protocol. */
  onFault?(err: Error): void
  /** A connection of a Redis user that tokens run as closed or could not be made, and why. */
  onUserClose?(user: string, reason: string): void
  /** The endpoint's ACL users are now managed, or cannot be (reason). */
  onAclState?(state: AclState): void
}

const NO_HOOKS: EndpointClientHooks = { onReady() {}, onClose() {} }

/**
 * Transport only: what the gateway believes about the endpoint (role, offsets, load) lives in
 * EndpointState, owned by the pool next to this client. Commands go over RespConnections
 * (resp-connection.ts): the gateway's own (health checks, and everything while ACL users are not
 * managed) and one per Redis user that tokens run as (identity.ts), opened on first use and closed
 * when idle; the subscriber connection is pubsub.ts's.
 */
export class EndpointClient {
  readonly id: string
  readonly spec: EndpointSpec
  /** The gateway's own user's connection. */
  readonly main: ConnectionSlot
  private stopped = false
  private aclState: AclState = ACL_UNKNOWN
  private provisioning: Promise<void> | null = null
  /** Requests waiting for the provisioning of the level users. */
  private aclWaiting = 0
  /** Provisioning waits for the gateway's own connection to be ready. */
  private provisionWaits = false
  /** Connections of the users tokens run as, by identity key (level name, or `user:<key>`). */
  private readonly slots = new Map<string, ConnectionSlot>()
  /** The pool's idle-sweep tick: bumped by sweepIdle(), stamped on a slot at each use. */
  private tick = 1

  constructor(
    spec: EndpointSpec,
    private readonly opts: UpstreamOptions,
    private readonly hooks: EndpointClientHooks = NO_HOOKS,
    private readonly acl: AclSettings = ACL_OFF,
  ) {
    this.id = spec.id
    this.spec = spec
    this.main = new ConnectionSlot(this.connectionOptions(opts.username, opts.password, true), {
      onReady: () => {
        hooks.onReady()
        // The endpoint is back: the users' connections need not wait out their backoff.
        for (const slot of this.slots.values()) slot.connection.reconnectNow()
        // On every (re)connect: a restarted Redis has forgotten the users, and knowing at once
        // whether they can be managed tells operators at start-up, not at the first script.
        if (acl.enabled) void this.provision(true)
      },
      onClose: (reason) => {
        if (!this.stopped) hooks.onClose(reason)
      },
      ...(hooks.onFault ? { onFault: hooks.onFault } : {}),
    })
  }

  private connectionOptions(username: string, password: string, readyCheck: boolean): RespConnectionOptions {
    return connectionOptions(this.spec, this.opts, username, password, readyCheck)
  }

  /** The gateway's own connection (health checks use it). */
  get connection(): RespConnection {
    return this.main.connection
  }

  get up(): boolean {
    return this.main.ready
  }

  /** Requests waiting for one of the endpoint's connections (or for its ACL users to be provisioned). */
  get waiting(): number {
    // Provisioning itself may wait for the gateway's own connection: not a request.
    let n = this.main.waiting - (this.provisionWaits ? 1 : 0) + this.aclWaiting
    for (const s of this.slots.values()) n += s.waiting
    return n
  }

  /** Whether the endpoint's level users are managed, and if not why (for /admin/routes and 403s). */
  get acls(): AclState {
    return this.aclState
  }

  /** Connections kept besides the gateway's own (users tokens run as), connected or reconnecting. */
  get userConnections(): number {
    return this.slots.size
  }

  /** Of those, the ones connected and ready now. */
  get userConnectionsReady(): number {
    let n = 0
    for (const s of this.slots.values()) if (s.ready) n++
    return n
  }

  /** Commands written on any of the endpoint's connections and not yet answered. */
  get pending(): number {
    let n = this.main.connection.pending
    for (const s of this.slots.values()) n += s.connection.pending
    return n
  }

  /**
   * Resolves when the gateway's own connection is ready: at once when it is, after at most
   * connectTimeout while it is being (re)established, and false when it does not come up in that time.
   */
  whenReady(): Promise<boolean> | true {
    return this.main.whenReady(this.opts.connectTimeoutMs)
  }

  /** The connection that carries `id`'s commands, or null when there is none yet (see whenReadyFor). */
  connectionFor(id: Identity): RespConnection | null {
    return id.kind === 'gateway' ? this.main.connection : (this.slotFor(id)?.connection ?? null)
  }

  /**
   * The slot of `id`'s connection, opened on first use: the gateway's own for the gateway and for
   * levels on an unmanaged endpoint; null for a level before its users are known.
   */
  private slotFor(id: Identity): ConnectionSlot | null {
    switch (id.kind) {
      case 'gateway':
        return this.main
      case 'level': {
        const s = this.aclState
        if (s.kind === 'managed') return this.slot(id.level, s.users[id.level].name, this.acl.password)
        return s.kind === 'unmanaged' ? this.main : null
      }
      case 'user':
        return this.slot(`user:${id.key}`, id.user, id.password)
    }
  }

  /** The connection for `id` is ready now. */
  upFor(id: Identity): boolean {
    return id.kind === 'gateway' ? this.main.ready : this.slotFor(id)?.ready === true
  }

  /**
   * True when `id`'s connection is ready; else a promise for whether it becomes ready within
   * connectTimeout, provisioning the endpoint's level users first when that was not done yet.
   */
  whenReadyFor(id: Identity): Promise<boolean> | true {
    const timeoutMs = this.opts.connectTimeoutMs
    if (id.kind !== 'level' || this.aclState.kind !== 'unknown') return this.slotFor(id)?.whenReady(timeoutMs) ?? Promise.resolve(false)
    const deadline = performance.now() + timeoutMs
    this.aclWaiting++
    return withTimer(this.provision(), timeoutMs, () => new Error('provisioning timed out')).then(
      () => {
        this.aclWaiting--
        return this.slotFor(id)?.whenReady(deadline - performance.now()) ?? false
      },
      () => {
        this.aclWaiting--
        return false
      },
    )
  }

  /**
   * Why `id` may not run a script or function on this endpoint, or null: a level identity on an
   * endpoint whose ACL users the gateway cannot manage would run it as the gateway's own user.
   */
  scriptRefusal(id: Identity): string | null {
    if (id.kind !== 'level' || id.level === 'admin') return null
    const s = this.aclState
    if (s.kind !== 'unmanaged') return null
    // Permissions may have been granted since: look again now and then, without making the
    // request wait for it.
    if (performance.now() - s.atMs >= UNMANAGED_RETRY_MS && this.acl.enabled) void this.provision(true)
    return s.reason
  }

  /** The slot for a Redis user, opened on first use; stamped with the current tick. */
  private slot(key: string, username: string, password: string): ConnectionSlot {
    let s = this.slots.get(key)
    if (s === undefined) {
      // No ready check: a restricted user may not run INFO (a dataset still loading answers LOADING).
      const slot: ConnectionSlot = new ConnectionSlot(this.connectionOptions(username, password, false), {
        onReady: () => {},
        onClose: (reason) => {
          // The user or this process's password is gone (Redis restarted, ACL LOAD, a newer
          // replica's password pushed ours out): provision again; the connection's next attempt
          // then authenticates.
          if (!key.startsWith('user:') && /AUTH failed/.test(reason) && this.acl.enabled) void this.provision(true)
          // Not the endpoint's health (the gateway's own connection and health checks say that).
          this.hooks.onUserClose?.(username, reason)
        },
        ...(this.hooks.onFault ? { onFault: this.hooks.onFault } : {}),
      })
      this.slots.set(key, slot)
      if (!this.stopped) slot.start()
      s = slot
    }
    s.lastUsed = this.tick
    return s
  }

  /**
   * Provisions the level users (once at a time). `again`: also when they were managed or found
   * unmanaged before (an AUTH failure, or a retry after UNMANAGED_RETRY_MS).
   */
  private provision(again = false): Promise<void> {
    if (this.provisioning !== null) return this.provisioning
    if (!again && this.aclState.kind !== 'unknown') return Promise.resolve()
    const p = this.doProvision().finally(() => {
      this.provisioning = null
    })
    this.provisioning = p
    return p
  }

  private async doProvision(): Promise<void> {
    if (!this.acl.enabled) return this.setAcl({ kind: 'unmanaged', reason: 'redis.aclUsers is false', atMs: performance.now() })
    const ready = this.main.whenReady(this.opts.connectTimeoutMs)
    if (ready !== true) {
      this.provisionWaits = true
      const ok = await ready
      this.provisionWaits = false
      if (!ok) return // not connected: stays as it was; the next request tries again
    }
    try {
      const timeoutMs = this.opts.commandTimeoutMs
      const users = await provisionLevelUsers(
        (args) => withTimer(this.send(args), timeoutMs, () => new Error(`${String(args[0])} did not answer within ${timeoutMs} ms`)),
        this.acl,
      )
      this.setAcl({ kind: 'managed', users })
      // Connections waiting out a backoff (their AUTH failed while the users were gone) go now.
      for (const slot of this.slots.values()) slot.connection.reconnectNow()
    } catch (err) {
      // A refusal by Redis is an answer (no permission, too old); a lost connection is not.
      if (err instanceof Error && err.name === 'ReplyError') {
        this.setAcl({ kind: 'unmanaged', reason: unmanagedReason(err), atMs: performance.now() })
      }
    }
  }

  private setAcl(state: AclState): void {
    const before = this.aclState
    this.aclState = state
    if (state.kind === 'unmanaged') {
      // Level users' connections would only fail their AUTH from now on.
      for (const level of ['read', 'write', 'admin'] as const) {
        const s = this.slots.get(level)
        if (s !== undefined) {
          this.slots.delete(level)
          s.stop()
        }
      }
    } else if (state.kind === 'managed' && before.kind === 'managed') {
      // New rules (a Redis upgrade added commands) mean new user names: connections of the old ones go.
      for (const level of ['read', 'write', 'admin'] as const) {
        if (before.users[level].name !== state.users[level].name) {
          const s = this.slots.get(level)
          if (s !== undefined) {
            this.slots.delete(level)
            s.stop()
          }
        }
      }
    }
    if (before.kind !== state.kind || (state.kind === 'unmanaged' && before.kind === 'unmanaged' && before.reason !== state.reason)) {
      this.hooks.onAclState?.(state)
    }
  }

  /**
   * Closes user connections not used since the previous sweep and idle now; the pool calls it
   * every idle period, so a connection lives one to two periods past its last use.
   */
  sweepIdle(): void {
    const previous = this.tick++
    for (const [key, s] of this.slots) {
      if (s.lastUsed < previous && s.idle) {
        this.slots.delete(key)
        s.stop()
      }
    }
  }

  start(): void {
    this.main.start()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.main.stop()
    for (const s of this.slots.values()) s.stop()
    this.slots.clear()
  }

  /**
   * One command on the gateway's own connection with a promise for its reply (health checks, ROLE,
   * INFO, provisioning; the request path uses connection.command() with a sink instead). Rejects
   * with the Redis error reply, or with NotConnectedError / ConnectionLostError.
   */
  send(args: Args): Promise<RawReply> {
    return new Promise((resolve, reject) => {
      const sink: ReplySink = {
        reply: (v) => (v instanceof Error ? reject(v) : resolve(v as RawReply)),
        lost: reject,
      }
      // Health checks report this message: it says why (a refused connection, a certificate, AUTH).
      if (!this.main.connection.command(args, sink)) reject(notConnected(this.id, this.main.failure))
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

const ACL_UNKNOWN: AclState = { kind: 'unknown' }
const ACL_OFF: AclSettings = aclSettings(false)

const ROLE: Args = ['ROLE']
const INFO_REPLICATION: Args = ['INFO', 'replication']

/** `reason` only where operators read it (health state, logs), not in replies to clients. */
export function notConnected(endpoint: string, reason: string | null = null): NotConnectedError {
  return new NotConnectedError(`endpoint ${endpoint} is not connected${reason === null ? '' : ` (${reason})`}`)
}
