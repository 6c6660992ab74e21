// Command classification (README "How commands are classified"): is a command a read, a write,
// admin-only, refused, or unknown?
//
// Read vs write comes from Redis's own command table, the `readonly` flag of @ioredis/commands
// (Redis knows its commands better than a hand-kept list), so a new Redis write command is a write
// without anyone editing this file. The explicit tables below only
//   (a) gate dangerous commands to admin tokens,
//   (b) refuse commands that cannot run on the gateway's shared, auto-pipelined upstream connections,
//   (c) split container commands (OBJECT, SCRIPT, FUNCTION...) by subcommand, because
//       @ioredis/commands' public API carries no flags for them,
//   (d) let PING, ECHO and TIME be reads.
// It runs for every command of every request, so all of it is precomputed at module load:
// classify() does one or two Map lookups and returns shared frozen objects; it allocates nothing
// for string names that arrive all lower-case (as @upstash/redis sends them) or all upper-case
// (mixed case costs one short toLowerCase, a Buffer name one short latin1 decode).
//
// Shape of "admin-only AND impossible" (MONITOR, SYNC, PSYNC, REPLCONF, some CLIENT subcommands):
// a `refused` class with `forbiddenBelow: 'admin'`. A token below admin gets 403 (like any admin
// command, and without learning more), an admin gets 400 with the reason. It is `refused` rather
// than `admin` plus a flag so that a caller that forgets the extra field fails safe: it answers
// 400 to everyone and never sends MONITOR down a shared connection. `admission()` applies the rule.
//
// Decisions about commands that would break or leak through a shared connection (400 unless noted):
// - MULTI, EXEC, DISCARD, WATCH, UNWATCH: a transaction needs its own connection; use /multi-exec.
// - SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs: push mode; use the SSE endpoints.
// - Blocking commands (BLPOP, BRPOP... in REFUSED_WHOLE below, XREAD/XREADGROUP only with BLOCK,
//   and anything else @ioredis/commands flags `blocking`, e.g. BLMOVEM): they would stall every
//   request pipelined behind them on the same connection.
// - SELECT, HELLO, AUTH, RESET, QUIT, READONLY, READWRITE, ASKING: change (or end) the state of
//   the connection for every other request that shares it.
// - MONITOR, SYNC, PSYNC, REPLCONF: turn the connection into a monitor or replication stream
//   (admin-only: 403 below admin, 400 for admins). MONITOR is served as its own SSE stream on a
//   dedicated connection instead: {base}/monitor (http/sse.ts, upstream/monitor.ts).
// - CLIENT REPLY (OFF/SKIP desynchronise replies; ON is pointless), CLIENT TRACKING, CLIENT CACHING
//   (invalidation pushes on a shared connection), CLIENT NO-EVICT, CLIENT NO-TOUCH (would change
//   eviction/LRU behaviour for every tenant's requests), CLIENT SETNAME, CLIENT SETINFO (would
//   relabel the gateway's own connection): CLIENT is admin-only, so 403 below admin, 400 for admins.
// - SCRIPT DEBUG: puts the connection into the Lua debugger; refused for everyone.
// - Allowed for admins although they touch the shared connection or the server: CLIENT KILL,
//   CLIENT PAUSE/UNPAUSE (server-wide operations an operator means to do; the gateway reconnects
//   after a kill), CLIENT ID/INFO/GETNAME/LIST (harmless, they describe whichever shared
//   connection ran them).
//
// Admin beyond the usual dangerous commands (same blast radius as they have; the README lists them):
// SWAPDB (replaces the whole dataset an instance URL serves, like FLUSHDB), LATENCY, SLOWLOG
// (SLOWLOG GET shows other tokens' command arguments), HOTKEYS, BACKUP (Redis flags their
// subcommands `admin`), and every command Redis itself flags `admin` (PFDEBUG, PFSELFTEST, ...).
//
// Deliberately NOT reads although harmless-looking: INFO, ROLE, LASTSAVE carry no `readonly` flag
// and Redis's ACL puts them in @dangerous (server internals), so they stay writes (write token).
//
// Learned command tables (README "How commands are classified"). The flags above come from
// @ioredis/commands, a snapshot of one Redis version, which lists no module commands (JSON.*,
// FT.*, TS.*...). So each backend's own table (COMMAND INFO, command-table.ts) is learned when the
// gateway connects, merged per instance (the most restrictive class wins), and passed to
// classify() as a CommandView. Precedence, highest first:
//   1. the explicit tables above (overrides: admin-only, refused, containers, XREAD/XREADGROUP);
//   2. the server's own flags, through the view, with the same rules as for @ioredis/commands
//      (classFromFlags: admin -> admin, blocking -> refused, readonly -> read, else write), and
//      for a learned command with subcommands, the subcommand's flags; except the few module
//      commands in LEARNED_OVERRIDES (FT.CONFIG, FT.DEBUG...: admin whatever their flags say);
//   3. @ioredis/commands' flags (before any table is learned, or for a name the server lacks,
//      which Redis then answers with its own unknown-command error);
//   4. unknown (Redis's own error), except Upstash-only families (SEARCH.*, VECTOR.*) and SCAN's WITHTYPE option: refused, saying so.
// Known names cost one more Map lookup (in the view) and still allocate nothing.

import { Buffer } from 'node:buffer'
import { hasFlag, list } from '@ioredis/commands'
import type { Access } from '../core/identity.js'


export type CommandClass =
  /** `readonly` in @ioredis/commands, or one of the explicit reads (PING, ECHO, TIME, container reads). */
  | { readonly kind: 'read' }
  /** Everything else that is allowed; goes to the primary. */
  | { readonly kind: 'write' }
  /** Admin-only (403 below admin); data-wise a write: goes to the primary. */
  | { readonly kind: 'admin' }
  /**
   * Cannot run through the gateway (400 with `reason`, which names the alternative).
   * `forbiddenBelow`: tokens below this level get 403 instead, as for any admin-only command;
   * null = 400 for everyone.
   */
  | { readonly kind: 'refused'; readonly reason: string; readonly forbiddenBelow: Access | null }
  /** Not a command @ioredis/commands knows: 400 `unknownCommandMessage(args)`. */
  | { readonly kind: 'unknown' }

/** What the HTTP layer does with a command for a given token (it alone maps this to a status). */
export type Admission = 'allow' | 'forbidden' | 'refused' | 'unknown'

export interface RefusedCommand {
  readonly command: string
  readonly reason: string
  readonly forbiddenBelow: Access | null
}

const READ = Object.freeze({ kind: 'read' as const })
const WRITE = Object.freeze({ kind: 'write' as const })
const ADMIN_CLASS = Object.freeze({ kind: 'admin' as const })
const UNKNOWN = Object.freeze({ kind: 'unknown' as const })

function refused(reason: string, forbiddenBelow: Access | null = null): CommandClass {
  return Object.freeze({ kind: 'refused' as const, reason, forbiddenBelow })
}

// ---------------------------------------------------------------------------------------------
// Tables (module load only)

/** Harmless commands that carry neither `readonly` nor `write` and touch no data. Without this a
 *  read-only token could not even PING (health checks, SDK connectivity probes). */
const EXPLICIT_READS = ['ping', 'echo', 'time'] as const

/** Admin-only commands (whole command): the usual dangerous ones, plus the extensions of the header. */
const ADMIN_WHOLE = [
  // server-wide or destructive
  'flushall', 'flushdb', 'config', 'debug', 'shutdown', 'replicaof', 'slaveof', 'failover', 'acl',
  'module', 'save', 'bgsave', 'bgrewriteaof', 'cluster', 'migrate', 'keys',
  // extensions: see header
  'swapdb', 'latency', 'slowlog', 'hotkeys', 'backup',
] as const

const MULTI_EXEC = 'send the whole transaction to POST /multi-exec under the same base URL'

function blockingReason(name: string, alternative: string): string {
  return `${name} would block a connection that other requests share; ${alternative}`
}

/** Whole commands refused (top level). */
const REFUSED_WHOLE: ReadonlyArray<readonly [string, CommandClass]> = [
  ...(['multi', 'exec', 'discard'] as const).map(
    (n) => [n, refused(`${n.toUpperCase()} needs a private connection; ${MULTI_EXEC}`)] as const,
  ),
  ...(['watch', 'unwatch'] as const).map(
    (n) =>
      [
        n,
        refused(
          `${n.toUpperCase()} needs a private connection; ${MULTI_EXEC}, or use EVAL/FCALL for a check-and-set`,
        ),
      ] as const,
  ),
  ['select', refused(`SELECT would switch the database of a connection that other requests share; each instance is served from its configured database`)],
  ['hello', refused(`HELLO would change the protocol of a connection that other requests share; replies are always JSON`)],
  ['auth', refused(`AUTH is not accepted: authenticate to the gateway with "Authorization: Bearer <token>"; the gateway authenticates to Redis itself`)],
  ['reset', refused(`RESET would reset a connection that other requests share; each HTTP request stands alone`)],
  ['quit', refused(`QUIT has no connection to close; each HTTP request stands alone`)],
  ...(['readonly', 'readwrite', 'asking'] as const).map(
    (n) =>
      [n, refused(`${n.toUpperCase()} would change the state of a connection that other requests share; the gateway routes reads itself`)] as const,
  ),
  ['subscribe', refused(`SUBSCRIBE needs a private connection; use POST /subscribe/{channel} under the same base URL with "Accept: text/event-stream"`)],
  ['psubscribe', refused(`PSUBSCRIBE needs a private connection; use POST /psubscribe/{pattern} under the same base URL with "Accept: text/event-stream"`)],
  // SPUBLISH messages reach only SSUBSCRIBE clients, so pointing at /subscribe would mislead.
  ['ssubscribe', refused(`SSUBSCRIBE needs a private connection; the gateway offers only /subscribe/{channel} and /psubscribe/{pattern} (Server-Sent Events), which do not receive SPUBLISH messages`)],
  ...(['unsubscribe', 'punsubscribe', 'sunsubscribe'] as const).map(
    (n) =>
      [n, refused(`${n.toUpperCase()} has no subscription to end; a /subscribe or /psubscribe event stream ends when the client disconnects`)] as const,
  ),
  ['blpop', refused(blockingReason('BLPOP', 'poll with LPOP instead'))],
  ['brpop', refused(blockingReason('BRPOP', 'poll with RPOP instead'))],
  ['blmove', refused(blockingReason('BLMOVE', 'poll with LMOVE instead'))],
  ['brpoplpush', refused(blockingReason('BRPOPLPUSH', 'poll with LMOVE instead'))],
  ['blmpop', refused(blockingReason('BLMPOP', 'poll with LMPOP instead'))],
  ['bzpopmin', refused(blockingReason('BZPOPMIN', 'poll with ZPOPMIN instead'))],
  ['bzpopmax', refused(blockingReason('BZPOPMAX', 'poll with ZPOPMAX instead'))],
  ['bzmpop', refused(blockingReason('BZMPOP', 'poll with ZMPOP instead'))],
  ['wait', refused(blockingReason('WAIT', 'for read-your-writes send back the upstash-sync-token header instead'))],
  ['waitaof', refused(blockingReason('WAITAOF', 'for read-your-writes send back the upstash-sync-token header instead'))],
  // MONITOR has its own stream, on a connection of its own: POST {base}/monitor (sse.ts, monitor.ts).
  ['monitor', refused(`MONITOR would take over a connection that other requests share; use POST /monitor under the same base URL with "Accept: text/event-stream" (admin tokens), or connect to Redis directly`, 'admin')],
  ...(['sync', 'psync', 'replconf'] as const).map(
    (n) =>
      [n, refused(`${n.toUpperCase()} would take over a connection that other requests share; connect to Redis directly`, 'admin')] as const,
  ),
]

interface ContainerSpec {
  readonly subs: ReadonlyArray<readonly [string, CommandClass]>
  /** Any subcommand not in `subs`. */
  readonly other: CommandClass
  /** No subcommand at all. */
  readonly missing: CommandClass
}

const clientRefused = (sub: string, why: string): readonly [string, CommandClass] => [
  sub,
  refused(`CLIENT ${sub.toUpperCase()} would ${why} a connection that other requests share`, 'admin'),
]

/** Containers: commands whose meaning is in their subcommand (args[1]). An unlisted or missing
 *  subcommand is a write (conservative) unless the whole command is admin (CLIENT). */
const CONTAINERS: Readonly<Record<string, ContainerSpec>> = {
  object: { subs: [], other: READ, missing: WRITE },
  xinfo: { subs: [], other: READ, missing: WRITE },
  pubsub: { subs: [], other: READ, missing: WRITE },
  memory: { subs: [['usage', READ]], other: WRITE, missing: WRITE },
  command: {
    // Bare COMMAND lists the command table: as harmless as COMMAND LIST.
    subs: (['count', 'docs', 'info', 'list', 'getkeys', 'getkeysandflags', 'help'] as const).map(
      (s) => [s, READ] as const,
    ),
    other: WRITE,
    missing: READ,
  },
  script: {
    subs: [
      ['exists', READ],
      ['load', WRITE],
      ['flush', ADMIN_CLASS],
      ['kill', ADMIN_CLASS],
      ['debug', refused(`SCRIPT DEBUG would put a connection that other requests share into the Lua debugger; debug against Redis directly (redis-cli --ldb)`)],
    ],
    other: WRITE,
    missing: WRITE,
  },
  function: {
    subs: [
      ['list', READ],
      ['dump', READ],
      ['stats', READ],
      ['load', WRITE],
      ['flush', ADMIN_CLASS],
      ['delete', ADMIN_CLASS],
      ['restore', ADMIN_CLASS],
      ['kill', ADMIN_CLASS],
    ],
    other: WRITE,
    missing: WRITE,
  },
  client: {
    subs: [
      clientRefused('reply', 'stop or skip replies on'),
      clientRefused('tracking', 'turn on invalidation pushes for'),
      clientRefused('caching', 'change client-side caching of'),
      clientRefused('no-evict', 'change eviction behaviour of'),
      clientRefused('no-touch', 'change LRU/LFU updates of'),
      clientRefused('setname', 'rename'),
      clientRefused('setinfo', 'relabel'),
    ],
    other: ADMIN_CLASS,
    missing: ADMIN_CLASS,
  },
}

// ---------------------------------------------------------------------------------------------
// Lookup structures

type Entry =
  /** `flagged`: the class comes from @ioredis/commands' flags, so a learned table may replace it. */
  | { readonly tag: 'fixed'; readonly name: string; readonly cls: CommandClass; readonly flagged: boolean }
  | {
      readonly tag: 'container'
      readonly name: string
      readonly subs: ReadonlyMap<string, CommandClass>
      readonly spec: ContainerSpec
    }
  | {
      // XREAD / XREADGROUP: blocking only with a BLOCK option before STREAMS.
      readonly tag: 'stream-read'
      readonly name: string
      readonly group: boolean
      readonly cls: CommandClass
      readonly blocked: CommandClass
    }
  | {
      // SCAN: refused with WITHTYPE, an option only Upstash's servers have.
      readonly tag: 'scan'
      readonly name: string
      readonly cls: CommandClass
      readonly withType: CommandClass
    }

/** Longer than any command or subcommand name; longer input is never decoded or lower-cased. */
const MAX_NAME_LENGTH = 64
/** Redis truncates the name in its own unknown-command error the same way. */
const MAX_DISPLAY_LENGTH = 128

/** Keyed by lower-case and upper-case name, so the two common spellings need no lower-casing. */
function caseMap<T>(pairs: Iterable<readonly [string, T]>): Map<string, T> {
  const m = new Map<string, T>()
  for (const [k, v] of pairs) {
    m.set(k, v)
    m.set(k.toUpperCase(), v)
  }
  return m
}

const KNOWN = new Set(list)

/**
 * The class of a command from Redis's own flags (COMMAND INFO, or @ioredis/commands' copy):
 * `admin` (Redis's "dangerous" marker) -> admin; `blocking` -> refused (it would stall the shared
 * connection); `pubsub` with `noscript` (SUBSCRIBE-like) -> refused; `readonly` -> read; anything
 * else (`write`, or no data flag at all, e.g. `pubsub` alone like PUBLISH, `noscript`, `module`)
 * -> write, the conservative choice. Flags are lower-case Redis spellings. Shared frozen objects,
 * except a new refusal per refused command.
 */
export function classFromFlags(name: string, has: (flag: string) => boolean): CommandClass {
  if (has('admin')) return ADMIN_CLASS // a safety net
  if (has('blocking')) {
    return refused(`${name.toUpperCase()} is a blocking command and would block a connection that other requests share`)
  }
  // SUBSCRIBE and friends carry both (PUBLISH only `pubsub`): a new command like them would put
  // the shared connection into push mode.
  if (has('pubsub') && has('noscript')) {
    return refused(`${name.toUpperCase()} would put a connection that other requests share into subscriber mode; use the SSE endpoints`)
  }
  return has('readonly') ? READ : WRITE
}

/**
 * Overrides for commands only a backend's own table lists (modules), applied to what it reports:
 * their flags say `readonly` although they configure or inspect the server as a whole, like
 * CONFIG and DEBUG, which are admin-only. Lower case.
 */
const LEARNED_OVERRIDES: ReadonlyMap<string, CommandClass> = new Map([
  ['ft.config', ADMIN_CLASS], // RediSearch: FT.CONFIG SET changes the module's settings server-wide
  ['ft.debug', ADMIN_CLASS], // RediSearch: index internals, forced GC
  ['json.debug', ADMIN_CLASS], // RedisJSON: like DEBUG / MEMORY internals
  ['ts.debug', ADMIN_CLASS],
])

/** The explicit decision about a command a backend reports and @ioredis/commands does not, if any. */
export function learnedOverride(name: string): CommandClass | undefined {
  return LEARNED_OVERRIDES.get(name)
}

/**
 * Upstash-only command families that plain Redis cannot run: when the backend does not have them
 * either, the gateway says so itself (REFUSED) instead of Redis's bare unknown-command error.
 */
const UPSTASH_ONLY_PREFIXES = ['search.', 'vector.'] as const

function upstashOnly(args: readonly unknown[]): CommandClass | null {
  const a = args[0]
  const s = typeof a === 'string' ? a : Buffer.isBuffer(a) && a.length <= MAX_NAME_LENGTH ? a.toString('latin1') : null
  if (s === null || s.length > MAX_NAME_LENGTH) return null
  const lower = s.toLowerCase()
  for (const p of UPSTASH_ONLY_PREFIXES) {
    if (lower.startsWith(p)) {
      return refused(`${s.toUpperCase()} is an Upstash-only command that this gateway's Redis backends do not have (Redis has no ${p.toUpperCase()}* commands)`)
    }
  }
  return null
}

function baseClass(name: string): CommandClass {
  return classFromFlags(name, (flag) => hasFlag(name, flag))
}

/** One command as a backend reports it, classified (command-table.ts builds these). */
export interface LearnedEntry {
  /** Lower case. */
  readonly name: string
  /** The class of the command itself (without a subcommand, or with one the server does not list). */
  readonly cls: CommandClass
  /** Classes of its subcommands (lower-case and upper-case keys), or null when it has none. */
  readonly subs: ReadonlyMap<string, CommandClass> | null
}

/**
 * What an instance's backends report, merged (command-table.ts): entries keyed by lower-case and
 * upper-case name. Immutable; a new view replaces it when a table changes.
 */
export interface CommandView {
  readonly entries: ReadonlyMap<string, LearnedEntry>
}

function learnedClass(e: LearnedEntry, args: readonly unknown[]): CommandClass {
  if (e.subs === null || args.length < 2) return e.cls
  return find(e.subs, args[1]) ?? e.cls
}

function buildEntries(): Map<string, Entry> {
  const fixed = new Map<string, CommandClass>()
  const flagged = new Set<string>()
  for (const name of list) {
    if (name !== 'xread' && name !== 'xreadgroup') {
      fixed.set(name, baseClass(name))
      flagged.add(name)
    }
  }
  // Explicit decisions win over flags; they apply even to a name a future @ioredis/commands might
  // drop (a decision about a name stands; the tests check every name here is still known).
  const explicit = (name: string, cls: CommandClass): void => {
    fixed.set(name, cls)
    flagged.delete(name)
  }
  for (const name of EXPLICIT_READS) explicit(name, READ)
  for (const name of ADMIN_WHOLE) explicit(name, ADMIN_CLASS)
  for (const [name, cls] of REFUSED_WHOLE) explicit(name, cls)

  const entries = new Map<string, Entry>()
  for (const [name, cls] of fixed) entries.set(name, { tag: 'fixed', name, cls, flagged: flagged.has(name) && !Object.hasOwn(CONTAINERS, name) })
  for (const [name, spec] of Object.entries(CONTAINERS)) {
    entries.set(name, { tag: 'container', name, subs: caseMap(spec.subs), spec })
  }
  entries.set('xread', {
    tag: 'stream-read',
    name: 'xread',
    group: false,
    cls: READ,
    blocked: refused(blockingReason('XREAD with BLOCK', 'poll with XREAD without BLOCK instead')),
  })
  const scan = entries.get('scan')
  if (scan?.tag === 'fixed') {
    entries.set('scan', {
      tag: 'scan',
      name: 'scan',
      cls: scan.cls,
      withType: refused(
        "SCAN's WITHTYPE option is an Upstash-only extension that this gateway's Redis backends do not have; use SCAN without it (TYPE filters by type), then TYPE per key",
      ),
    })
  }
  entries.set('xreadgroup', {
    tag: 'stream-read',
    name: 'xreadgroup',
    group: true,
    cls: WRITE,
    blocked: refused(blockingReason('XREADGROUP with BLOCK', 'poll with XREADGROUP without BLOCK instead')),
  })
  return entries
}

const ENTRIES_BY_NAME = buildEntries()
const TABLE = caseMap(ENTRIES_BY_NAME)

// ---------------------------------------------------------------------------------------------
// Hot path

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

/** Case-insensitive lookup of a command or subcommand name. ASCII only, like Redis's strcasecmp:
 *  a Unicode look-alike (the Kelvin sign lower-cases to "k") must not match a real name. */
function find<T>(table: ReadonlyMap<string, T>, arg: unknown): T | undefined {
  let s: string
  if (typeof arg === 'string') s = arg
  else if (Buffer.isBuffer(arg)) {
    if (arg.length > MAX_NAME_LENGTH) return undefined
    s = arg.toString('latin1') // 1 byte = 1 char; non-ASCII bytes then fail isAscii
  } else return undefined
  if (s.length > MAX_NAME_LENGTH) return undefined
  const hit = table.get(s)
  if (hit !== undefined) return hit
  return isAscii(s) ? table.get(s.toLowerCase()) : undefined
}

/** ASCII case-insensitive equality with an upper-case literal, without allocating. */
export function isToken(arg: unknown, upper: string): boolean {
  if (typeof arg === 'string') {
    if (arg.length !== upper.length) return false
    for (let i = 0; i < arg.length; i++) {
      let c = arg.charCodeAt(i)
      if (c >= 0x61 && c <= 0x7a) c -= 0x20
      if (c !== upper.charCodeAt(i)) return false
    }
    return true
  }
  if (Buffer.isBuffer(arg)) {
    if (arg.length !== upper.length) return false
    for (let i = 0; i < arg.length; i++) {
      let c = arg[i] as number
      if (c >= 0x61 && c <= 0x7a) c -= 0x20
      if (c !== upper.charCodeAt(i)) return false
    }
    return true
  }
  return false
}

/**
 * Does a SCAN carry WITHTYPE among its options (SCAN cursor [MATCH p] [COUNT n] [TYPE t])? Option
 * values are skipped, so a MATCH pattern spelled "withtype" is not taken for the option.
 */
function hasWithType(args: readonly unknown[]): boolean {
  for (let i = 2; i < args.length; i++) {
    const a = args[i]
    if (isToken(a, 'WITHTYPE')) return true
    if (isToken(a, 'MATCH') || isToken(a, 'COUNT') || isToken(a, 'TYPE')) i += 1
  }
  return false
}

/**
 * Does an XREAD/XREADGROUP carry BLOCK among its options (before STREAMS)? Parses options the way
 * Redis does, skipping option values, so a group or consumer named "streams" or "block" is not
 * mistaken for the keyword. On an option it does not know, the alignment of what follows is
 * unknown, so any later BLOCK counts (keys included): refusing by mistake is safe, letting a
 * blocking read onto a shared connection is not.
 */
function hasBlockOption(args: readonly unknown[], group: boolean): boolean {
  for (let i = 1; i < args.length; i++) {
    const a = args[i]
    if (isToken(a, 'BLOCK')) return true
    if (isToken(a, 'STREAMS')) return false
    if (isToken(a, 'COUNT')) {
      i += 1
      continue
    }
    if (group) {
      if (isToken(a, 'GROUP')) {
        i += 2
        continue
      }
      if (isToken(a, 'NOACK')) continue
      if (isToken(a, 'CLAIM') || isToken(a, 'MAXCOUNT') || isToken(a, 'MAXSIZE')) {
        i += 1
        continue
      }
    }
    for (let j = i + 1; j < args.length; j++) if (isToken(args[j], 'BLOCK')) return true
    return false
  }
  return false
}

/**
 * Classifies one command; args[0] is its name. `view`: what the target instance's backends report
 * (command-table.ts), or null before any is known. Returns shared frozen objects; never throws.
 */
export function classify(args: readonly (string | Buffer)[], view: CommandView | null = null): CommandClass {
  const entry = find(TABLE, args[0])
  if (entry === undefined) {
    const learned = view === null ? undefined : find(view.entries, args[0])
    if (learned !== undefined) return learnedClass(learned, args)
    return upstashOnly(args) ?? UNKNOWN
  }
  switch (entry.tag) {
    case 'fixed': {
      if (!entry.flagged || view === null) return entry.cls
      const learned = find(view.entries, entry.name)
      return learned === undefined ? entry.cls : learnedClass(learned, args)
    }
    case 'container': {
      if (args.length < 2) return entry.spec.missing
      return find(entry.subs, args[1]) ?? entry.spec.other
    }
    case 'stream-read':
      return hasBlockOption(args, entry.group) ? entry.blocked : entry.cls
    case 'scan':
      return hasWithType(args) ? entry.withType : entry.cls
  }
}

const RANK: Readonly<Record<Access, number>> = { read: 0, write: 1, admin: 2 }

/** The commands classify() decides by their subcommand (lower case). */
export const CONTAINER_NAMES: readonly string[] = Object.freeze(Object.keys(CONTAINERS))

/** Whether classify() decides this command by its subcommand (args[1]); lower-case name. */
export function isContainer(name: string): boolean {
  return Object.hasOwn(CONTAINERS, name)
}

/**
 * Whether classify() decides this command by its subcommand with this view: an explicit container,
 * or a command whose class the view decides and whose learned entry has subcommands (lower case).
 */
export function bySubcommand(name: string, view: CommandView | null): boolean {
  if (isContainer(name)) return true
  if (view === null) return false
  const entry = ENTRIES_BY_NAME.get(name)
  if (entry !== undefined && !(entry.tag === 'fixed' && entry.flagged)) return false
  return (view.entries.get(name)?.subs ?? null) !== null
}

/** Commands that run code inside Redis, which may run further commands: scripts and functions. */
const SCRIPT_RUNNERS = caseMap((['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro'] as const).map((n) => [n, true] as const))

/** Does this command run a script or function (whose own commands only a Redis ACL user can bound)? */
export function runsScript(args: readonly (string | Buffer)[]): boolean {
  return find(SCRIPT_RUNNERS, args[0]) === true
}

/** Access a token needs to run the command; null when no token may run it. */
export function requiredAccess(c: CommandClass): Access | null {
  switch (c.kind) {
    case 'read':
    case 'write':
    case 'admin':
      return c.kind
    case 'refused':
    case 'unknown':
      return null
  }
}

/** read < write < admin. */
export function allows(tokenAccess: Access, needed: Access): boolean {
  return RANK[tokenAccess] >= RANK[needed]
}

/** Goes to the primary (write or admin). Refused and unknown commands go nowhere. */
export function isWriteClass(c: CommandClass): boolean {
  return c.kind === 'write' || c.kind === 'admin'
}

/**
 * The whole access decision for one command and one token, so every caller applies the same
 * order: unknown commands are unknown to everyone; an admin-only refused command is 403 below
 * admin (don't describe admin commands to non-admins) and 400 for admins.
 */
export function admission(c: CommandClass, tokenAccess: Access): Admission {
  switch (c.kind) {
    case 'unknown':
      return 'unknown'
    case 'refused':
      return c.forbiddenBelow !== null && !allows(tokenAccess, c.forbiddenBelow) ? 'forbidden' : 'refused'
    case 'read':
    case 'write':
    case 'admin':
      return allows(tokenAccess, c.kind) ? 'allow' : 'forbidden'
  }
}

function rawName(args: readonly unknown[]): string {
  const a = args[0]
  if (typeof a === 'string') return a.length > MAX_DISPLAY_LENGTH ? a.slice(0, MAX_DISPLAY_LENGTH) : a
  if (Buffer.isBuffer(a)) return a.toString('utf8', 0, Math.min(a.length, MAX_DISPLAY_LENGTH))
  return ''
}

/**
 * Lower-case command name for spans (db.operation.name) and logs. For known commands it is the
 * table's own string (no allocation). Unknown names are lower-cased (ASCII only) and cut to 128
 * characters, but still client-chosen: never use them as a metric label (use the class instead).
 * '' when args[0] is missing or not a string/Buffer.
 */
export function commandName(args: readonly (string | Buffer)[]): string {
  const entry = find(TABLE, args[0])
  if (entry !== undefined) return entry.name
  return rawName(args).replace(/[A-Z]+/g, (m) => m.toLowerCase())
}

/** Redis's own wording, with the name as the client sent it, for `kind: 'unknown'`. */
export function unknownCommandMessage(args: readonly (string | Buffer)[]): string {
  return `ERR unknown command '${rawName(args)}'`
}

// ---------------------------------------------------------------------------------------------
// Derived lists for the README and /admin views, built from the tables above so they cannot drift.
// Upper-case; "X *" = any other subcommand of X.

function describe(): { admin: string[]; refusedList: RefusedCommand[]; reads: string[] } {
  const admin: string[] = []
  const refusedList: RefusedCommand[] = []
  const reads: string[] = []
  const add = (label: string, cls: CommandClass, flaggedReadonly: boolean): void => {
    if (cls.kind === 'admin') admin.push(label)
    else if (cls.kind === 'refused') {
      refusedList.push({ command: label, reason: cls.reason, forbiddenBelow: cls.forbiddenBelow })
    } else if (cls.kind === 'read' && !flaggedReadonly) reads.push(label)
  }
  const names = [...ENTRIES_BY_NAME.keys()].sort()
  for (const name of names) {
    const e = ENTRIES_BY_NAME.get(name)
    if (e === undefined) continue
    const upper = name.toUpperCase()
    switch (e.tag) {
      case 'fixed':
        add(upper, e.cls, KNOWN.has(name) && hasFlag(name, 'readonly'))
        break
      case 'container':
        add(upper, e.spec.missing, false)
        for (const [sub, cls] of e.spec.subs) add(`${upper} ${sub.toUpperCase()}`, cls, false)
        add(`${upper} *`, e.spec.other, false)
        break
      case 'stream-read':
        add(`${upper} with BLOCK`, e.blocked, false)
        break
      case 'scan':
        add(`${upper} with WITHTYPE`, e.withType, false)
        break
    }
  }
  return { admin, refusedList, reads }
}

const DESCRIBED = describe()

/** Admin-only commands (403 below admin). */
export const ADMIN: readonly string[] = Object.freeze(DESCRIBED.admin)
/** Refused commands with their reasons (400; 403 below `forbiddenBelow`). */
export const REFUSED: readonly RefusedCommand[] = Object.freeze(DESCRIBED.refusedList.map((r) => Object.freeze(r)))
/** Reads that are not flagged `readonly` by @ioredis/commands (explicit table and container reads). */
export const EXPLICIT_READ: readonly string[] = Object.freeze(DESCRIBED.reads)
