// One Redis endpoint as the gateway talks to it: a single auto-pipelined RESP connection for
// commands (resp-connection.ts), and the connection options it shares with the subscriber
// connection the pub/sub hub opens lazily (pubsub.ts). Construction does no I/O; start() connects,
// stop() closes.

import { Buffer } from 'node:buffer'
import type { EndpointSpec } from '../core/topology.js'
import { performance } from 'node:perf_hooks'
import { RespConnection, type ReplySink, type RespConnectionOptions } from './resp-connection.js'
import { RespBytes } from './resp-parser.js'
import { ConnectionSlot } from './connection-slot.js'
import { withTimer } from '../core/timeout.js'
import { SlicedQueue } from '../core/sliced.js'
import type { Identity } from '../core/identity.js'
import { aclSettings, provisionLevelUsers, unmanagedReason, UNMANAGED_RETRY_MS, type AclSettings, type AclState } from './acl-users.js'
import { parseCommandTable, replyDigest, tableOf, type CommandSpec, type LearnedTable } from '../routing/command-table.js'
import type { RawReply } from '../core/reply.js'
import { NotConnectedError, TooLargeError } from '../core/errors.js'
import type { Arg } from '../core/command.js'

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
  /** Where the command tables' reads run, a slice per turn (the gateway's background queue; default one of its own). */
  readonly background?: SlicedQueue
}

export type Args = readonly Arg[]

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
  /** The endpoint's command table was learned or changed (COMMAND INFO), or could not be read (error). */
  onCommands?(table: LearnedTable | null, error: Error | null): void
  /** After each connect: whether the server runs in cluster mode (INFO cluster, `cluster_enabled`). */
  onClusterMode?(enabled: boolean): void
  /**
   * The work that follows each connect of the gateway's own connection is done (command table,
   * ACL users, cluster mode), whether it succeeded or not: the pool's start queue admits the next.
   */
  onSettled?(): void
  /** Something waits for a connection whose connect attempt is still queued (see EndpointShared.admit). */
  onWanted?(): void
}

/** What the pool's endpoints share (UpstreamPool): connect admission and the command tables. */
export interface EndpointShared {
  /** Admission of the gateway's own connection's connect attempts (RespConnectionOptions.admit). */
  readonly admit?: (connect: () => void) => void
  /** Equal command tables, kept once for all endpoints that report them. */
  readonly tables?: SharedTables
}

/**
 * Learned command tables by fingerprint, held weakly: endpoints whose servers report the same
 * table (same version and modules) share one object, ~200 KiB each otherwise, and the views and
 * ACL rules built from it (CommandViews, AclSettings.cache) are built once for all of them.
 */
export class SharedTables {
  private readonly byFingerprint = new Map<string, WeakRef<LearnedTable>>()
  /** Tables by the digest of the reply they were read from (replyDigest): a reply seen before is not read again. */
  private readonly byDigest = new Map<string, WeakRef<LearnedTable>>()
  /** Replies read into a table so far (the others were known by their digest). */
  parsed = 0

  /** `reads`: where COMMAND INFO replies wait to be read (read()); the gateway's background queue. */
  constructor(private readonly reads: SlicedQueue = new SlicedQueue({ sliceMs: TABLE_READ_SLICE_MS })) {}

  /**
   * The table in a COMMAND INFO reply's bytes, read in a later turn, a few milliseconds of reading
   * per turn: endpoints that connect together have their replies read in the same turn, and
   * reading them there (0.5 ms each warm, several cold) made turns of 100 ms and more at start-up.
   * A reply with the same content as one read before (whatever its order) gives that table
   * without being read: a fleet of one Redis version is read once.
   */
  read(bytes: Buffer): Promise<LearnedTable> {
    return this.reads.run(() => {
      const digest = replyDigest(bytes)
      const known = digest === null ? undefined : this.byDigest.get(digest)?.deref()
      if (known !== undefined) return known
      this.parsed++
      const table = this.intern(parseCommandTable(bytes))
      if (digest !== null) {
        pruneDead(this.byDigest)
        this.byDigest.set(digest, new WeakRef(table))
      }
      return table
    })
  }

  /** The table already kept that equals `table` (same commands, flags, arities and key positions), else `table`, kept from now on. */
  intern(table: LearnedTable): LearnedTable {
    const known = this.byFingerprint.get(table.fingerprint)?.deref()
    if (known !== undefined) {
      if (known === table || sameTable(known, table)) return known
      // Same fingerprint, other arities or key positions (the fingerprint hashes names and flags): its own.
      return table
    }
    pruneDead(this.byFingerprint)
    this.byFingerprint.set(table.fingerprint, new WeakRef(table))
    return table
  }
}

/** Drops the entries whose table no endpoint holds any more, once there are 64 or more. */
function pruneDead(refs: Map<string, WeakRef<LearnedTable>>): void {
  if (refs.size >= 64) for (const [k, ref] of refs) if (ref.deref() === undefined) refs.delete(k)
}

function sameSpec(a: CommandSpec, b: CommandSpec): boolean {
  if (a.name !== b.name || a.arity !== b.arity || a.firstKey !== b.firstKey || a.lastKey !== b.lastKey || a.step !== b.step) return false
  if (a.flags.length !== b.flags.length || a.subcommands.size !== b.subcommands.size) return false
  for (let i = 0; i < a.flags.length; i++) if (a.flags[i] !== b.flags[i]) return false
  for (const [name, sa] of a.subcommands) {
    const sb = b.subcommands.get(name)
    if (sb === undefined || !sameSpec(sa, sb)) return false
  }
  return true
}

function sameTable(a: LearnedTable, b: LearnedTable): boolean {
  if (a.count !== b.count || a.specs.size !== b.specs.size || a.moduleCommands !== b.moduleCommands) return false
  for (const [name, sa] of a.specs) {
    const sb = b.specs.get(name)
    if (sb === undefined || !sameSpec(sa, sb)) return false
  }
  return true
}

/**
 * Unknown-command checks (COMMAND COUNT, then COMMAND INFO when the count changed) run at most
 * once per this period per endpoint, however many unknown commands arrive.
 */
export const COMMAND_CHECK_INTERVAL_MS = 1_000

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
  /** Provisioning and table reads waiting for the gateway's own connection to be ready (not requests). */
  private ownWaits = 0
  /** Connections of the users tokens run as, by identity key (level name, or `user:<key>`). */
  private readonly slots = new Map<string, ConnectionSlot>()
  /** The pool's idle-sweep tick: bumped by sweepIdle(), stamped on a slot at each use. */
  private tick = 1
  /** The server's command table (COMMAND INFO), learned on every (re)connect; null before. */
  private table: LearnedTable | null = null
  private learning: Promise<LearnedTable | null> | null = null
  private lastCheckMs = -Infinity
  private checking: Promise<void> | null = null
  /** The fingerprint of the table the managed level users' rules were made from. */
  private provisionedFrom: string | null = null
  /** The next provisioning reads the table again (a reconnect asked for it). */
  private relearnWanted = false
  /** A reconnect asked for the table while a read of it was in flight (maybe from before). */
  private learnAgain = false
  /** Why the table could not be read last time (reported once per distinct reason). */
  private learnFailure: string | null = null
  /** Read by every connection's handshake: READONLY once this serves a cluster's reads. */
  private readonly session = { readOnly: false }
  /** INFO cluster's `cluster_enabled` at the last connect; null before it is known (or when INFO is refused). */
  clusterEnabled: boolean | null = null
  private connectCount = 0
  private readonly tables: SharedTables | null

  constructor(
    spec: EndpointSpec,
    private readonly opts: UpstreamOptions,
    private readonly hooks: EndpointClientHooks = NO_HOOKS,
    private readonly acl: AclSettings = ACL_OFF,
    shared: EndpointShared = {},
  ) {
    this.id = spec.id
    this.spec = spec
    this.tables = shared.tables ?? null
    const own = this.connectionOptions(opts.username, opts.password, true)
    this.main = new ConnectionSlot(shared.admit === undefined ? own : { ...own, admit: shared.admit }, {
      onReady: () => {
        this.connectCount++
        hooks.onReady()
        // The endpoint is back: the users' connections need not wait out their backoff.
        for (const slot of this.slots.values()) slot.connection.reconnectNow()
        // On every (re)connect: the server may have been upgraded or loaded modules (its command
        // table), a restarted Redis has forgotten the users, and knowing at once whether they can
        // be managed tells operators at start-up, not at the first script. Provisioning learns the
        // table first (the users' rules come from it).
        const work = acl.enabled ? this.provision(true, true) : this.learnCommands(true)
        const cluster = this.detectClusterMode()
        // Neither rejects (each catches its own failures).
        if (hooks.onSettled !== undefined) void Promise.all([work, cluster]).then(hooks.onSettled, hooks.onSettled)
      },
      onClose: (reason) => {
        if (!this.stopped) hooks.onClose(reason)
      },
      ...(hooks.onFault ? { onFault: hooks.onFault } : {}),
    })
  }

  private connectionOptions(username: string, password: string, readyCheck: boolean): RespConnectionOptions {
    return { ...connectionOptions(this.spec, this.opts, username, password, readyCheck), session: this.session }
  }

  /** INFO cluster on the gateway's own connection: cluster mode is a start-up setting, so once per connect. */
  private async detectClusterMode(): Promise<void> {
    const timeoutMs = this.opts.commandTimeoutMs
    let enabled: boolean
    try {
      const reply = await withTimer(this.send(INFO_CLUSTER), timeoutMs, () => new Error('INFO cluster timed out'))
      const info = Buffer.isBuffer(reply) ? reply.toString('latin1') : String(reply)
      enabled = /^cluster_enabled:1/m.test(info)
    } catch {
      // Refused (an ACL without INFO) or lost: unknown; an explicit mode annotation still applies.
      return
    }
    if (this.stopped) return
    this.clusterEnabled = enabled
    this.hooks.onClusterMode?.(enabled)
  }

  /**
   * The endpoint is a Redis Cluster node whose reads the gateway may send to replicas: every
   * connection sends READONLY (now, and after each reconnect), so a replica serves its shard's
   * slots instead of answering MOVED.
   */
  enableClusterReads(): void {
    if (this.session.readOnly) return
    this.session.readOnly = true
    const ignore: ReplySink = { reply() {}, lost() {} }
    this.main.connection.command(READONLY, ignore)
    for (const slot of this.slots.values()) slot.connection.command(READONLY, ignore)
  }

  /** Times the gateway's own connection became ready: a new value is a new connection (health-probe.ts). */
  get connects(): number {
    return this.connectCount
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
    let n = this.main.waiting - this.ownWaits + this.aclWaiting
    for (const s of this.slots.values()) n += s.waiting
    return n
  }

  /** The server's command table as last learned (COMMAND INFO), or null before it is known. */
  get commands(): LearnedTable | null {
    return this.table
  }

  /**
   * Reads the server's command table (COMMAND INFO) on the gateway's own connection, once at a
   * time. `again`: also when one is known (a reconnect: the server may have changed). A table
   * that changed replaces the instance views (command-table.ts) and, when the level users are
   * managed, provisions them again (their rules come from it). Resolves to the table, or to the
   * previous one (null) when it could not be read.
   */
  learnCommands(again = false): Promise<LearnedTable | null> {
    if (this.learning !== null) {
      if (again) this.learnAgain = true
      return this.learning
    }
    if (!again && this.table !== null) return Promise.resolve(this.table)
    this.learnAgain = false
    const p = this.doLearn().finally(() => {
      this.learning = null
      if (this.learnAgain && !this.stopped) void this.learnCommands(true)
    })
    this.learning = p
    return p
  }

  /** The table as the server reports it now; null when the connection is not up in time. Rejects on a Redis error. */
  private async fetchTable(): Promise<LearnedTable | null> {
    const ready = this.main.whenReady(this.opts.connectTimeoutMs)
    if (ready !== true) {
      this.ownWaits++
      const ok = await ready
      this.ownWaits--
      if (!ok) return null
    }
    const timeoutMs = this.opts.commandTimeoutMs
    const ask = (args: Args): Promise<RespBytes | RawReply> =>
      withTimer(this.send(args, MAX_TABLE_REPLY_BYTES), timeoutMs, () => new Error(`${args.join(' ')} did not answer within ${timeoutMs} ms`))
    let reply: RespBytes | RawReply
    try {
      reply = await ask(COMMAND_INFO)
    } catch (err) {
      // Redis before 7 wants names after COMMAND INFO; plain COMMAND lists them all there.
      if (!(err instanceof Error && /wrong number of arguments/i.test(err.message))) throw err
      reply = await ask(COMMAND_ALL)
    }
    this.lastCheckMs = performance.now()
    // Its bytes (a list of entries), or `*0` as an empty list; anything else is no table.
    if (reply instanceof RespBytes) return this.tables === null ? parseCommandTable(reply.bytes) : this.tables.read(reply.bytes)
    if (Array.isArray(reply) && reply.length === 0) return tableOf(new Map(), 0)
    throw new Error('COMMAND INFO did not answer a list')
  }

  /** Takes a freshly read table; true when it differs from the one known. */
  private adopt(fresh: LearnedTable): boolean {
    if (this.table !== null && this.table.fingerprint === fresh.fingerprint) return false
    const table = this.tables === null ? fresh : this.tables.intern(fresh)
    // A new object: the instance views built from the old one are rebuilt on their next use.
    this.table = table
    this.learnFailure = null
    this.hooks.onCommands?.(table, null)
    return true
  }

  private async doLearn(): Promise<LearnedTable | null> {
    try {
      const table = await this.fetchTable()
      if (table === null) return this.table
      const known = this.table !== null
      // New commands or flags: the level users' rules follow (new rules are new user names), and
      // whoever waits for the table (a request with a command it did not know) waits for them too,
      // or the new command would run as a user that lacks it (NOPERM).
      if (this.adopt(table) && known) await this.usersFollowTable()
      return this.table
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      // Once per distinct reason: unknown commands retry this every second.
      if (e.message !== this.learnFailure) this.hooks.onCommands?.(null, e)
      this.learnFailure = e.message
      return this.table
    }
  }

  /** Provisions again until the managed users' rules come from the current table (twice at most). */
  private async usersFollowTable(): Promise<void> {
    for (let i = 0; i < 2; i++) {
      if (!this.acl.enabled || this.aclState.kind !== 'managed' || this.table === null) return
      if (this.provisionedFrom === this.table.fingerprint) return
      await this.provision(true)
    }
  }

  /** For provisioning: a Redis error (NOPERM on COMMAND INFO) rejects, so the endpoint is found unmanaged with it. */
  private async doLearnForProvisioning(): Promise<LearnedTable | null> {
    const table = await this.fetchTable()
    if (table === null) return this.table
    this.adopt(table)
    return this.table
  }

  /** A MODULE command ran through the gateway: the next unknown command checks at once, not after the interval. */
  commandsMayHaveChanged(): void {
    this.lastCheckMs = -Infinity
  }

  /**
   * A command unknown to the table arrived: has the server's table changed (MODULE LOAD, an
   * upgrade behind the same connection)? Asks COMMAND COUNT at most once per
   * COMMAND_CHECK_INTERVAL_MS and reads the whole table again when the count differs (or none is
   * known yet). Never rejects.
   */
  checkCommands(): Promise<void> {
    if (this.checking !== null) return this.checking
    const now = performance.now()
    if (now - this.lastCheckMs < COMMAND_CHECK_INTERVAL_MS) return Promise.resolve()
    this.lastCheckMs = now
    const p = (async () => {
      try {
        // None yet (the connection is coming up, or COMMAND INFO was refused): read it.
        if (this.table === null) return void (await this.learnCommands())
        if (!this.main.ready) return
        const timeoutMs = this.opts.commandTimeoutMs
        const count = await withTimer(this.send(COMMAND_COUNT), timeoutMs, () => new Error('COMMAND COUNT timed out'))
        if (Number(count) !== this.table?.count) await this.learnCommands(true)
      } catch {
        // The table stays as it is; the next unknown command after the interval asks again.
      }
    })().finally(() => {
      this.checking = null
    })
    this.checking = p
    return p
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
    this.wanted()
    return this.main.whenReady(this.opts.connectTimeoutMs)
  }

  /** A connect attempt still queued for admission goes now: something waits for it. */
  private wanted(): void {
    if (this.main.connection.queued) this.hooks.onWanted?.()
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

  /**
   * Options for a new, dedicated connection that authenticates as `id`'s Redis user (MONITOR
   * streams: monitor.ts), after whenReadyFor(id) provisioned the level users: the gateway's own
   * user for the gateway and for levels on an unmanaged endpoint; null while a level's user is not
   * known yet.
   */
  dedicatedOptions(id: Identity): RespConnectionOptions | null {
    switch (id.kind) {
      case 'gateway':
        return this.connectionOptions(this.opts.username, this.opts.password, false)
      case 'level': {
        const s = this.aclState
        if (s.kind === 'managed') return this.connectionOptions(s.users[id.level].name, this.acl.password, false)
        return s.kind === 'unmanaged' ? this.connectionOptions(this.opts.username, this.opts.password, false) : null
      }
      case 'user':
        return this.connectionOptions(id.user, id.password, false)
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
    this.wanted()
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
  private provision(again = false, relearn = false): Promise<void> {
    // A reconnect while a provisioning (say, after an AUTH failure) runs: that one, or the next,
    // must read the table again.
    if (relearn) this.relearnWanted = true
    if (this.provisioning !== null) return this.provisioning
    if (!again && this.aclState.kind !== 'unknown') return Promise.resolve()
    const p = this.doProvision().finally(() => {
      this.provisioning = null
      // Asked for after this one had read the table.
      if (this.relearnWanted && !this.stopped) void this.provision(true)
    })
    this.provisioning = p
    return p
  }

  private async doProvision(): Promise<void> {
    if (!this.acl.enabled) {
      this.relearnWanted = false
      return this.setAcl({ kind: 'unmanaged', reason: 'redis.aclUsers is false', atMs: performance.now() })
    }
    const ready = this.main.whenReady(this.opts.connectTimeoutMs)
    if (ready !== true) {
      this.ownWaits++
      const ok = await ready
      this.ownWaits--
      if (!ok) {
        this.relearnWanted = false // the next (re)connect asks again
        return // not connected: stays as it was; the next request tries again
      }
    }
    const relearn = this.relearnWanted || this.table === null
    this.relearnWanted = false
    try {
      const timeoutMs = this.opts.commandTimeoutMs
      // The rules come from the server's own table (learned here when not known yet, or again on
      // a reconnect); reading it failing with a Redis error (NOPERM) is an answer too.
      // Its own read, never a learnCommands() in flight: that one may be waiting for this provisioning.
      const table = relearn ? await this.doLearnForProvisioning() : this.table
      if (table === null) return // not connected: stays as it was; the next request tries again
      const users = await provisionLevelUsers(
        (args) => withTimer(this.send(args), timeoutMs, () => new Error(`${String(args[0])} did not answer within ${timeoutMs} ms`)),
        this.acl,
        table,
      )
      this.provisionedFrom = table.fingerprint
      this.setAcl({ kind: 'managed', users })
      // Connections waiting out a backoff (their AUTH failed while the users were gone) go now.
      for (const slot of this.slots.values()) slot.connection.reconnectNow()
    } catch (err) {
      // A refusal by Redis is an answer (no permission, too old); a lost connection is not.
      if (err instanceof Error && err.name === 'ReplyError') {
        // Rules from a table older than the server (a module unloaded behind the gateway's back
        // names a command ACL SETUSER no longer knows): read the table and try once more first.
        if (!relearn && /unknown command/i.test(err.message)) {
          this.relearnWanted = true
          return
        }
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
   * with the Redis error reply, or with NotConnectedError / ConnectionLostError. `rawUpTo`: an
   * array reply comes as its bytes (ChargedSink.raw), for a reader that walks it once (COMMAND
   * INFO), and a reply over that many bytes is refused (TooLargeError) as it streams in.
   */
  send(args: Args): Promise<RawReply>
  send(args: Args, rawUpTo: number): Promise<RespBytes | RawReply>
  send(args: Args, rawUpTo?: number): Promise<RespBytes | RawReply> {
    return new Promise((resolve, reject) => {
      let bytes = 0
      const sink: ReplySink = {
        reply: (v) => (v instanceof Error ? reject(v) : resolve(v as RespBytes | RawReply)),
        lost: reject,
        ...(rawUpTo === undefined
          ? {}
          : {
              raw: true,
              charge: (n: number) =>
                (bytes += n) > rawUpTo ? new TooLargeError(`${args.join(' ')} answered more than ${rawUpTo} bytes; not read`) : null,
            }),
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
// COMMAND INFO without names lists every command (Redis 7); the gateway's user needs only
// +command|info, as documented, not the whole COMMAND.
const COMMAND_INFO: Args = ['COMMAND', 'INFO']
const COMMAND_COUNT: Args = ['COMMAND', 'COUNT']
const COMMAND_ALL: Args = ['COMMAND']
const INFO_REPLICATION: Args = ['INFO', 'replication']
const INFO_CLUSTER: Args = ['INFO', 'cluster']
/**
 * The most of a COMMAND INFO reply read (Redis 7.2's is ~90 KB, with modules a few hundred KB): a
 * server answering more is not held for it (its table is then unknown, as when COMMAND INFO fails).
 */
const MAX_TABLE_REPLY_BYTES = 16 * 1024 * 1024
/** Milliseconds of COMMAND INFO reading per turn of the event loop (SharedTables.read). */
const TABLE_READ_SLICE_MS = 5
const READONLY: Args = ['READONLY']

/** `reason` only where operators read it (health state, logs), not in replies to clients. */
export function notConnected(endpoint: string, reason: string | null = null): NotConnectedError {
  return new NotConnectedError(`endpoint ${endpoint} is not connected${reason === null ? '' : ` (${reason})`}`)
}
