// Redis Cluster slots: which of the 16384 hash slots a key or a command belongs to, and
// which shard serves a slot, from the cluster's own CLUSTER SHARDS (Redis 7+) or CLUSTER SLOTS
// (older) reply. Pure: no I/O, nothing wired into the gateway yet.
//
// Key slots are Redis's own (cluster.c keyHashSlot): CRC16 (XMODEM, crc16.c) of the key, or of its
// hash tag (the bytes between the first `{` and the first `}` after it, when that is not empty),
// mod 16384. A string key is hashed as its UTF-8 bytes, which is how the gateway sends it (lone
// surrogates as U+FFFD, as Buffer.from(s) writes them), without encoding it into a new Buffer.
//
// Key positions (commandKeys), most specific first:
//   1. MOVABLE below: the commands whose keys depend on their arguments (numkeys, STREAMS, STORE,
//      KEYS...), parsed the way Redis 7 does for its cluster routing and COMMAND GETKEYS (key specs
//      where they are complete, else the command's getkeys procedure: sortGetKeys, migrateGetKeys).
//      Hand-written rather than @ioredis/commands' getKeyIndexes, which takes numkeys unchecked (a
//      numkeys of 1e9 allocates a billion indexes), ignores Buffer arguments for SORT and MIGRATE,
//      and counts SORT's BY/GET patterns as keys.
//   2. The learned COMMAND INFO table (command-table.ts), which keeps first-key/last-key/step (the
//      legacy range) per command and subcommand, not the key specs. A learned command flagged
//      `movablekeys` that MOVABLE does not know (a module's) is routed by that range, possibly to
//      any node, and the node's MOVED corrects it: what ioredis Cluster does with such a command.
//   3. @ioredis/commands' getKeyIndexes(name, args) (what ioredis Cluster uses), for a command the
//      table does not have (none learned yet).
// A name none of them knows is keyless: whichever node gets it answers Redis's unknown-command error.
// SPUBLISH/SSUBSCRIBE's channel counts as a key (its legacy range): Redis's key spec flags it
// not_key, so COMMAND GETKEYS lists none, but a cluster node routes it by its slot (MOVED).
// Invalid arguments that decide where keys are (numkeys not an integer, negative, beyond the
// arguments; XREAD without STREAMS or with an unbalanced list) throw a BadRequestError that says
// which; other malformed commands get the keys Redis would find (possibly none), and the node
// answers its own arity or syntax error.
//
// Topology (parseClusterShards / parseClusterSlots -> SlotMap): replies are hostile input like any
// other. Wrong shapes, counts over CLUSTER_LIMITS, slots out of range, overlapping ranges, a node in
// two shards or a shard with slots and no primary are a ClusterReplyError naming what is wrong.
// Addresses are kept as announced; whether the gateway may connect to them is its policy, not this
// file's (no SSRF through a hostile reply).

import { Buffer } from 'node:buffer'
import { exists, getKeyIndexes, hasFlag } from '@ioredis/commands'
import { BadRequestError } from '../core/errors.js'
import type { Arg } from '../core/command.js'
import type { RawReply } from '../core/reply.js'
import type { CommandSpec, LearnedTable } from './command-table.js'
import { isToken } from './classify.js'

export const SLOT_COUNT = 16_384

// ---------------------------------------------------------------------------------------------
// CRC16 and key slots

/** CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the table of Redis's crc16.c. */
const CRC16_TABLE: Uint16Array = (() => {
  const t = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i << 8
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff
    t[i] = c
  }
  return t
})()

function crcByte(crc: number, byte: number): number {
  return ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >>> 8) ^ byte) & 0xff] as number)
}

function crcBytes(buf: Buffer, start: number, end: number): number {
  let crc = 0
  for (let i = start; i < end; i++) crc = crcByte(crc, buf[i] as number)
  return crc
}

/** CRC16 of the UTF-8 encoding of s[start, end), encoded on the fly (as Buffer.from(s, 'utf8') would). */
function crcUtf8(s: string, start: number, end: number): number {
  let crc = 0
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i)
    if (c < 0x80) {
      crc = crcByte(crc, c)
      continue
    }
    if (c < 0x800) {
      crc = crcByte(crc, 0xc0 | (c >> 6))
      crc = crcByte(crc, 0x80 | (c & 0x3f))
      continue
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < end ? s.charCodeAt(i + 1) : 0
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00)
        i++
        crc = crcByte(crc, 0xf0 | (cp >> 18))
        crc = crcByte(crc, 0x80 | ((cp >> 12) & 0x3f))
        crc = crcByte(crc, 0x80 | ((cp >> 6) & 0x3f))
        crc = crcByte(crc, 0x80 | (cp & 0x3f))
        continue
      }
      c = 0xfffd // a lone surrogate
    }
    crc = crcByte(crc, 0xe0 | (c >> 12))
    crc = crcByte(crc, 0x80 | ((c >> 6) & 0x3f))
    crc = crcByte(crc, 0x80 | (c & 0x3f))
  }
  return crc
}

/**
 * The hash slot of a key (0..16383), as Redis Cluster computes it: CRC16 of the hash tag, the bytes
 * between the first `{` and the first `}` after it, when there are any; else of the whole key (so
 * `{}` and a `{` without `}` hash the whole key). A string is hashed as its UTF-8 bytes. Allocates
 * nothing.
 */
export function keySlot(key: string | Buffer): number {
  if (typeof key === 'string') {
    // `{` and `}` are ASCII: their positions in the string are their positions in its UTF-8 bytes,
    // and no multi-byte sequence contains those byte values.
    const open = key.indexOf('{')
    if (open >= 0) {
      const close = key.indexOf('}', open + 1)
      if (close > open + 1) return crcUtf8(key, open + 1, close) & (SLOT_COUNT - 1)
    }
    return crcUtf8(key, 0, key.length) & (SLOT_COUNT - 1)
  }
  const open = key.indexOf(0x7b)
  if (open >= 0) {
    const close = key.indexOf(0x7d, open + 1)
    if (close > open + 1) return crcBytes(key, open + 1, close) & (SLOT_COUNT - 1)
  }
  return crcBytes(key, 0, key.length) & (SLOT_COUNT - 1)
}

// ---------------------------------------------------------------------------------------------
// Key positions

/** Longer names are no command's (command-table.ts skips them too). */
const MAX_NAME_LENGTH = 64

function lowerName(arg: Arg | undefined): string | null {
  if (typeof arg === 'string') return arg.length > MAX_NAME_LENGTH ? null : arg.toLowerCase()
  if (Buffer.isBuffer(arg)) return arg.length > MAX_NAME_LENGTH ? null : arg.toString('latin1').toLowerCase()
  return null
}

/** An argument quoted for an error message: JSON-escaped, cut to 32 characters. */
function quoted(arg: Arg | undefined): string {
  const s = typeof arg === 'string' ? arg : Buffer.isBuffer(arg) ? arg.toString('latin1', 0, 64) : ''
  return JSON.stringify(s.length > 32 ? `${s.slice(0, 32)}...` : s)
}

/** Redis's string2ll: an optional `-`, then digits without a leading zero (or "0"), within 64 bits. */
const INTEGER = /^(?:0|-?[1-9][0-9]{0,18})$/

/** The numkeys argument at `at`, checked the way the command itself checks it. */
function numkeys(args: readonly Arg[], name: string, at: number, keysFrom: number, step: number, min: number): number {
  const arg = args[at]
  const what = `${name.toUpperCase()}: numkeys (argument ${at})`
  if (arg === undefined) throw new BadRequestError(`${what} is missing`)
  const s = typeof arg === 'string' ? arg : arg.length <= 20 ? arg.toString('latin1') : ''
  if (!INTEGER.test(s)) throw new BadRequestError(`${what} must be an integer, got ${quoted(arg)}`)
  const n = Number(s)
  if (n < 0) throw new BadRequestError(`${what} must not be negative, got ${s}`)
  if (n < min) throw new BadRequestError(`${what} must be at least ${min}, got ${s}`)
  const available = Math.floor((args.length - keysFrom) / step)
  if (n > available) {
    const unit = step === 1 ? 'arguments' : 'key-value pairs'
    throw new BadRequestError(`${what} is ${s}, more than the ${available} ${unit} after it`)
  }
  return n
}

/** Keys counted by a numkeys argument: `before` (a destination key), then numkeys keys after it. */
function keynumKeys(args: readonly Arg[], name: string, at: number, step: number, min: number, before: number | null): number[] {
  const n = numkeys(args, name, at, at + 1, step, min)
  const keys: number[] = before === null ? [] : [before]
  for (let i = 0; i < n; i++) keys.push(at + 1 + i * step)
  return keys
}

/**
 * XREAD / XREADGROUP (key spec: the first STREAMS at or after `from`; the keys are the first half of
 * what follows it, the IDs the second half).
 */
function streamsKeys(args: readonly Arg[], name: string, from: number): number[] {
  let first = -1
  for (let i = from; i < args.length - 1; i++) {
    if (isToken(args[i], 'STREAMS')) {
      first = i + 1
      break
    }
  }
  const upper = name.toUpperCase()
  if (first < 0) throw new BadRequestError(`${upper}: the STREAMS option and its keys and IDs are missing`)
  const rest = args.length - first
  if (rest % 2 !== 0) {
    throw new BadRequestError(`${upper}: unbalanced STREAMS list: ${rest} arguments after STREAMS, each stream key needs an ID (or $ / > / +)`)
  }
  const keys: number[] = []
  for (let i = 0; i < rest / 2; i++) keys.push(first + i)
  return keys
}

/** SORT (Redis's sortGetKeys): the key, and the destination of the last STORE; BY and GET take patterns, not keys. */
function sortKeys(args: readonly Arg[]): number[] {
  if (args.length < 2) return []
  let store = -1
  for (let i = 2; i < args.length; i++) {
    const a = args[i]
    if (isToken(a, 'LIMIT')) i += 2
    else if (isToken(a, 'GET') || isToken(a, 'BY')) i += 1
    else if (isToken(a, 'STORE') && i + 1 < args.length) store = i + 1
  }
  return store < 0 ? [1] : [1, store]
}

function isEmpty(a: Arg | undefined): boolean {
  return a !== undefined && a.length === 0
}

/**
 * MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw] [KEYS key...], as
 * Redis 7 finds its keys: its key specs (the key argument; KEYS searched backwards from the
 * second-to-last argument) when no KEYS is found that way, else migrateGetKeys, which parses the
 * options from the start (so a password spelled KEYS is a password).
 */
function migrateKeys(args: readonly Arg[]): number[] {
  if (args.length < 4) return []
  let keysToken = false
  for (let i = args.length - 2; i >= 1 && !keysToken; i--) keysToken = isToken(args[i], 'KEYS')
  if (!keysToken) return [3]
  for (let i = 6; i < args.length; i++) {
    const a = args[i]
    if (isToken(a, 'KEYS')) {
      if (!isEmpty(args[3])) throw new BadRequestError('MIGRATE: with KEYS, the key argument (argument 3) must be the empty string')
      const keys: number[] = []
      for (let k = i + 1; k < args.length; k++) keys.push(k)
      return keys
    }
    if (isToken(a, 'AUTH')) i += 1
    else if (isToken(a, 'AUTH2')) i += 2
  }
  return [3]
}

/** GEORADIUS[BYMEMBER] (key specs): the key, then the argument after the first STORE and after the first STOREDIST, searched from `from`. */
function georadiusKeys(args: readonly Arg[], from: number): number[] {
  if (args.length < 2) return []
  const keys = [1]
  for (const token of ['STORE', 'STOREDIST']) {
    for (let i = from; i < args.length - 1; i++) {
      if (isToken(args[i], token)) {
        keys.push(i + 1)
        break
      }
    }
  }
  return keys
}

/** MEMORY USAGE key (Redis 6 flags MEMORY movablekeys; Redis 7 gives the subcommand its own key range). */
function memoryKeys(args: readonly Arg[]): number[] {
  return args.length >= 3 && isToken(args[1], 'USAGE') ? [2] : []
}

/** STRALGO LCS [KEYS k1 k2 | STRINGS s1 s2] (Redis 6's lcsGetKeys). */
function stralgoKeys(args: readonly Arg[]): number[] {
  for (let i = 1; i < args.length; i++) {
    if (isToken(args[i], 'STRINGS')) return []
    if (isToken(args[i], 'KEYS') && args.length - 1 - i >= 2) return [i + 1, i + 2]
  }
  return []
}

type Movable = (args: readonly Arg[], name: string) => number[]

const keynum =
  (at: number, min: number, before: number | null = null, step = 1): Movable =>
  (args, name) =>
    keynumKeys(args, name, at, step, min, before)

/** Commands whose key positions depend on their arguments, by lower-case name. */
const MOVABLE: ReadonlyMap<string, Movable> = new Map<string, Movable>([
  // Scripts and functions: numkeys may be 0 (a keyless script).
  ['eval', keynum(2, 0)],
  ['evalsha', keynum(2, 0)],
  ['eval_ro', keynum(2, 0)],
  ['evalsha_ro', keynum(2, 0)],
  ['fcall', keynum(2, 0)],
  ['fcall_ro', keynum(2, 0)],
  // destination numkeys key... (Redis: "at least 1 input key is needed").
  ['zunionstore', keynum(2, 1, 1)],
  ['zinterstore', keynum(2, 1, 1)],
  ['zdiffstore', keynum(2, 1, 1)],
  // numkeys key...
  ['zunion', keynum(1, 1)],
  ['zinter', keynum(1, 1)],
  ['zdiff', keynum(1, 1)],
  ['zintercard', keynum(1, 1)],
  ['sintercard', keynum(1, 1)],
  ['sdiffcard', keynum(1, 1)],
  ['sunioncard', keynum(1, 1)],
  ['lmpop', keynum(1, 1)],
  ['zmpop', keynum(1, 1)],
  // timeout numkeys key...
  ['blmpop', keynum(2, 1)],
  ['bzmpop', keynum(2, 1)],
  // MSETEX numkeys key value [key value ...] [options] (Redis 8.4).
  ['msetex', keynum(1, 1, null, 2)],
  ['xread', (args, name) => streamsKeys(args, name, 1)],
  // XREADGROUP GROUP group consumer ...: the search starts after the consumer, so a group or consumer named STREAMS is not the keyword.
  ['xreadgroup', (args, name) => streamsKeys(args, name, 4)],
  ['sort', sortKeys],
  // SORT_RO's BY and GET take patterns (sortROGetKeys): only the key.
  ['sort_ro', (args) => (args.length < 2 ? [] : [1])],
  ['migrate', migrateKeys],
  // GEORADIUS key lon lat radius unit [options]; GEORADIUSBYMEMBER key member radius unit [options].
  ['georadius', (args) => georadiusKeys(args, 6)],
  ['georadiusbymember', (args) => georadiusKeys(args, 5)],
  ['memory', memoryKeys],
  ['stralgo', stralgoKeys],
])

/** The commands commandKeys() parses itself (lower case). */
export const MOVABLE_KEY_COMMANDS: readonly string[] = Object.freeze([...MOVABLE.keys()])

/** Redis's legacy key range (getKeysUsingLegacyRangeSpec): out of bounds means no keys (the node answers the arity error). */
function rangeKeys(args: readonly Arg[], spec: CommandSpec): number[] {
  const { firstKey, step } = spec
  if (firstKey <= 0 || step <= 0) return []
  const last = spec.lastKey < 0 ? args.length + spec.lastKey : spec.lastKey
  const keys: number[] = []
  for (let j = firstKey; j <= last; j += step) {
    if (j >= args.length) return []
    keys.push(j)
  }
  return keys
}

function learnedKeys(args: readonly Arg[], spec: CommandSpec): number[] {
  if (spec.subcommands.size > 0 && args.length >= 2) {
    const subName = lowerName(args[1])
    const sub = subName === null ? undefined : spec.subcommands.get(subName)
    if (sub !== undefined) return rangeKeys(args, sub)
  }
  return rangeKeys(args, spec)
}

/** @ioredis/commands' key indexes (its arguments start after the name), out of bounds meaning none. */
function fallbackKeys(args: readonly Arg[], name: string): number[] {
  if (!exists(name)) return []
  const rest = args.slice(1)
  const found = getKeyIndexes(name, rest)
  const keys: number[] = []
  for (const k of found) {
    if (typeof k !== 'number' || k >= rest.length) return []
    keys.push(k + 1)
  }
  return keys
}

/**
 * The positions of a command's keys in `args` (args[0] is the command's name, so GET k gives [1]),
 * in the order Redis finds them; empty for a keyless command. `table`: the key ranges the backend
 * reported (COMMAND INFO, command-table.ts); null before one is learned (@ioredis/commands then).
 * Throws a BadRequestError when an argument that decides where the keys are is invalid (header).
 */
export function commandKeys(args: readonly Arg[], table: LearnedTable | null = null): number[] {
  const name = lowerName(args[0])
  if (name === null) return []
  const movable = MOVABLE.get(name)
  if (movable !== undefined) return movable(args, name)
  const spec = table?.specs.get(name)
  if (spec !== undefined) return learnedKeys(args, spec)
  return fallbackKeys(args, name)
}

/** Whether commandKeys() knows where this command's keys are (false for a movable-keys command it routes by its legacy range). */
export function keysKnown(name: string, table: LearnedTable | null = null): boolean {
  const lower = name.toLowerCase()
  if (MOVABLE.has(lower)) return true
  const spec = table?.specs.get(lower)
  if (spec !== undefined) return !spec.flags.includes('movablekeys')
  return !exists(lower) || !hasFlag(lower, 'movablekeys')
}

// ---------------------------------------------------------------------------------------------
// A command's slot

/** Redis's own text for keys in more than one slot. */
export const CROSSSLOT_MESSAGE = "CROSSSLOT Keys in request don't hash to the same slot"

/** A command (or a transaction, script...) whose keys hash to more than one slot. */
export interface CrossSlot {
  readonly kind: 'crossslot'
  /** Redis's CROSSSLOT text, then which arguments differ and the hash-tag hint. */
  readonly message: string
  /** Positions in args of two keys in different slots (the first key, and the first that differs). */
  readonly keys: readonly [number, number]
  /** Their slots. */
  readonly slots: readonly [number, number]
}

export function crossSlot(keys: readonly [number, number], slots: readonly [number, number]): CrossSlot {
  return {
    kind: 'crossslot',
    message:
      `${CROSSSLOT_MESSAGE} (arguments ${keys[0]} and ${keys[1]} hash to slots ${slots[0]} and ${slots[1]}; ` +
      'on a cluster, keys used together need a common hash tag: only the part in {...} is hashed, so {user:1}:cart and {user:1}:orders share a slot)',
    keys,
    slots,
  }
}

/**
 * The one slot all of a command's keys hash to; null for a keyless command (any node may take it);
 * a CrossSlot when they hash to different slots. Throws what commandKeys() throws.
 */
export function slotOfCommand(args: readonly Arg[], table: LearnedTable | null = null): number | null | CrossSlot {
  const keys = commandKeys(args, table)
  if (keys.length === 0) return null
  const k0 = keys[0] as number
  const slot = keySlot(args[k0] as Arg)
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i] as number
    const s = keySlot(args[k] as Arg)
    if (s !== slot) return crossSlot([k0, k], [slot, s])
  }
  return slot
}

// ---------------------------------------------------------------------------------------------
// Topology: CLUSTER SHARDS / CLUSTER SLOTS -> SlotMap

/** A CLUSTER SHARDS or CLUSTER SLOTS reply that does not describe a usable topology. */
export class ClusterReplyError extends Error {
  override readonly name = 'ClusterReplyError'
}

/** Limits on a topology reply (Redis recommends at most about 1000 nodes per cluster). */
export const CLUSTER_LIMITS = {
  /** Nodes in the whole reply, primaries and replicas. */
  maxNodes: 10_000,
  /** Shards in a CLUSTER SHARDS reply. */
  maxShards: 10_000,
  /** Entries (slot ranges) in a CLUSTER SLOTS reply, and ranges of one CLUSTER SHARDS shard: at most one per slot. */
  maxRanges: SLOT_COUNT,
  /** Field-value pairs of a shard or node in CLUSTER SHARDS, and of a node's metadata in CLUSTER SLOTS. */
  maxFields: 64,
  /** Host names, IPs and node ids. */
  maxTextLength: 255,
} as const

export type NodeHealth = 'online' | 'failed' | 'loading' | 'unknown'

/** One node as the cluster announces it. */
export interface ClusterNode {
  /** The node's id (40 hex characters on Redis and Valkey). */
  readonly id: string
  /**
   * Announced IP; '' when the node does not know it (a node that never met another: connect to the
   * address that was asked).
   */
  readonly ip: string
  /**
   * The endpoint clients should use (cluster-preferred-endpoint-type: the IP, the hostname, or
   * unknown); null when unknown ('', '?' or nil): use the address that was asked.
   */
  readonly endpoint: string | null
  /** cluster-announce-hostname, when set. */
  readonly hostname: string | null
  /**
   * The client port. From CLUSTER SHARDS the plaintext port (null when the node has only a TLS
   * port); from CLUSTER SLOTS whichever port the node announces to clients.
   */
  readonly port: number | null
  /** The TLS port (CLUSTER SHARDS `tls-port`), when announced. */
  readonly tlsPort: number | null
  readonly role: 'primary' | 'replica'
  /** CLUSTER SHARDS `health`; 'unknown' from CLUSTER SLOTS, which does not say (and leaves failed replicas out). */
  readonly health: NodeHealth
  /** CLUSTER SHARDS `replication-offset`; null from CLUSTER SLOTS. */
  readonly replicationOffset: number | null
}

/** An inclusive range of slots, [first, last]. */
export type SlotRange = readonly [number, number]

/** One shard: a primary, its replicas, and the slots it serves. */
export interface ClusterShard {
  /** Its position in SlotMap.shards. */
  readonly index: number
  /** Ascending, disjoint, adjacent ranges merged; empty for a shard that serves no slot. */
  readonly ranges: readonly SlotRange[]
  /** Slots served (the ranges' sizes summed). */
  readonly slotCount: number
  readonly primary: ClusterNode
  readonly replicas: readonly ClusterNode[]
  /**
   * Every node the reply put in this shard, in its order: the primary, the replicas, and on Redis
   * 7.2+ a failed former primary the promotion left in the shard (role primary, health failed).
   */
  readonly nodes: readonly ClusterNode[]
}

/** What a shard is built from (parse results, or a test's hand-made topology). */
export interface ShardInput {
  readonly ranges: readonly SlotRange[]
  readonly primary: ClusterNode
  readonly replicas: readonly ClusterNode[]
  /** Defaults to the primary and the replicas. */
  readonly nodes?: readonly ClusterNode[]
}

export type TopologySource = 'CLUSTER SHARDS' | 'CLUSTER SLOTS'

/** A cluster's topology: its shards, and the shard of each slot in O(1). */
export class SlotMap {
  /**
   * Shards serving slots first, by their lowest slot; then those serving none, by primary id. So
   * equal topologies give equal maps, whatever order the reply listed them in.
   */
  readonly shards: readonly ClusterShard[]
  /** Slots some shard serves: SLOT_COUNT when the cluster covers them all. */
  readonly coveredSlots: number
  /** Per slot: 1 + the index of its shard, 0 when no shard serves it. */
  private readonly index: Uint16Array
  private readonly byId: ReadonlyMap<string, ClusterNode>

  private constructor(
    readonly source: TopologySource,
    shards: ClusterShard[],
    index: Uint16Array,
    covered: number,
    byId: Map<string, ClusterNode>,
  ) {
    this.shards = shards
    this.index = index
    this.coveredSlots = covered
    this.byId = byId
  }

  /**
   * Checks and indexes shards: ranges within 0..16383, first <= last, no slot served twice, no node
   * in two shards or twice in one, at most one online primary per shard. Throws ClusterReplyError.
   */
  static build(source: TopologySource, input: readonly ShardInput[]): SlotMap {
    if (input.length > CLUSTER_LIMITS.maxShards) fail(source, `${input.length} shards, more than ${CLUSTER_LIMITS.maxShards}`)
    const byId = new Map<string, ClusterNode>()
    const prepared = input.map((s, i) => {
      const nodes = s.nodes ?? [s.primary, ...s.replicas]
      if (!nodes.includes(s.primary)) fail(source, `shard ${i}: its primary ${s.primary.id} is not among its nodes`)
      for (const n of nodes) {
        if (byId.has(n.id)) fail(source, `node ${n.id} appears twice`)
        if (byId.size >= CLUSTER_LIMITS.maxNodes) fail(source, `more than ${CLUSTER_LIMITS.maxNodes} nodes`)
        byId.set(n.id, n)
      }
      return { ranges: mergeRanges(source, i, s.ranges), input: s, nodes }
    })
    prepared.sort((a, b) => {
      const fa = a.ranges[0]?.[0] ?? SLOT_COUNT
      const fb = b.ranges[0]?.[0] ?? SLOT_COUNT
      if (fa !== fb) return fa - fb
      return a.input.primary.id < b.input.primary.id ? -1 : a.input.primary.id > b.input.primary.id ? 1 : 0
    })
    const index = new Uint16Array(SLOT_COUNT)
    let covered = 0
    const shards: ClusterShard[] = prepared.map((p, i) => {
      let slotCount = 0
      for (const [first, last] of p.ranges) {
        for (let slot = first; slot <= last; slot++) {
          const owner = index[slot] as number
          if (owner !== 0) {
            const other = prepared[owner - 1]!.input.primary.id
            fail(source, `slot ${slot} is served by two shards (primaries ${other} and ${p.input.primary.id})`)
          }
          index[slot] = i + 1
        }
        slotCount += last - first + 1
      }
      covered += slotCount
      return Object.freeze({
        index: i,
        ranges: Object.freeze(p.ranges),
        slotCount,
        primary: p.input.primary,
        replicas: Object.freeze([...p.input.replicas]),
        nodes: Object.freeze([...p.nodes]),
      })
    })
    return new SlotMap(source, shards, index, covered, byId)
  }

  /** The shard serving a slot; null when none does (or the slot is not one of 0..16383). */
  shardOf(slot: number): ClusterShard | null {
    const i = this.index[slot]
    return i === undefined || i === 0 ? null : (this.shards[i - 1] ?? null)
  }

  /** The shard serving a key's slot. */
  shardOfKey(key: string | Buffer): ClusterShard | null {
    return this.shardOf(keySlot(key))
  }

  /** A node by id (primaries, replicas and the other nodes of shards). */
  node(id: string): ClusterNode | undefined {
    return this.byId.get(id)
  }

  /** Every node, shard by shard. */
  get nodes(): IterableIterator<ClusterNode> {
    return this.byId.values()
  }
}

function fail(source: TopologySource, message: string): never {
  throw new ClusterReplyError(`${source} reply: ${message}`)
}

/** Sorted, checked, adjacent ranges merged. */
function mergeRanges(source: TopologySource, shard: number, ranges: readonly SlotRange[]): SlotRange[] {
  if (ranges.length > CLUSTER_LIMITS.maxRanges) fail(source, `shard ${shard}: ${ranges.length} slot ranges, more than ${CLUSTER_LIMITS.maxRanges}`)
  for (const [first, last] of ranges) {
    if (!isSlot(first) || !isSlot(last)) fail(source, `shard ${shard}: slot range ${first}-${last} is outside 0-${SLOT_COUNT - 1}`)
    if (first > last) fail(source, `shard ${shard}: slot range ${first}-${last} ends before it starts`)
  }
  const sorted = [...ranges].sort((a, b) => a[0] - b[0])
  const out: [number, number][] = []
  for (const [first, last] of sorted) {
    const prev = out[out.length - 1]
    if (prev !== undefined && first === prev[1] + 1) prev[1] = last
    else out.push([first, last])
  }
  return out.map((r) => Object.freeze(r) as SlotRange)
}

function isSlot(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < SLOT_COUNT
}

// Reading reply values: bulk strings arrive as Buffers, integers as decimal strings (the RESP
// parser) or numbers (other clients); tests may hand strings for bulk strings too.

function isText(v: RawReply | undefined): v is Buffer | string {
  return typeof v === 'string' || Buffer.isBuffer(v)
}

function describeValue(v: RawReply | undefined): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'nil'
  if (v instanceof Error) return `an error reply (${v.message.slice(0, 100)})`
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (typeof v === 'number') return `the number ${v}`
  const s = typeof v === 'string' ? v : v.toString('latin1', 0, 40)
  return `the string ${JSON.stringify(s.length > 32 ? `${s.slice(0, 32)}...` : s)}`
}

const DIGITS = /^-?[0-9]{1,16}$/

function intOf(source: TopologySource, where: string, v: RawReply | undefined): number {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v
  if (isText(v) && v.length <= 17) {
    const s = typeof v === 'string' ? v : v.toString('latin1')
    if (DIGITS.test(s)) return Number(s)
  }
  return fail(source, `${where}: expected an integer, got ${describeValue(v)}`)
}

/** Printable ASCII without spaces: host names, IPs, ids, field names and their values. */
const PRINTABLE = /^[\x21-\x7e]*$/

function textOf(source: TopologySource, where: string, v: RawReply | undefined): string {
  if (!isText(v)) return fail(source, `${where}: expected a string, got ${describeValue(v)}`)
  if (v.length > CLUSTER_LIMITS.maxTextLength) fail(source, `${where}: ${v.length} bytes, more than ${CLUSTER_LIMITS.maxTextLength}`)
  const s = typeof v === 'string' ? v : v.toString('latin1')
  if (!PRINTABLE.test(s)) fail(source, `${where}: ${JSON.stringify(s)} has characters other than printable ASCII`)
  return s
}

const NODE_ID = /^[0-9A-Za-z._-]{1,64}$/

function nodeIdOf(source: TopologySource, where: string, v: RawReply | undefined): string {
  const id = textOf(source, where, v)
  if (!NODE_ID.test(id)) fail(source, `${where}: ${JSON.stringify(id)} is not a node id`)
  return id
}

function portOf(source: TopologySource, where: string, v: RawReply | undefined): number {
  const port = intOf(source, where, v)
  if (port < 0 || port > 65_535) fail(source, `${where}: port ${port} is outside 0-65535`)
  return port
}

function arrayOf(source: TopologySource, where: string, v: RawReply | undefined, max: number): RawReply[] {
  if (v instanceof Error) fail(source, `${where}: ${describeValue(v)}`)
  if (!Array.isArray(v)) return fail(source, `${where}: expected an array, got ${describeValue(v)}`)
  if (v.length > max) fail(source, `${where}: ${v.length} elements, more than ${max}`)
  return v
}

/** A RESP2 map (field, value, field, value...) as field -> value; unknown fields are kept too (and ignored by callers). */
function fieldsOf(source: TopologySource, where: string, v: RawReply | undefined): Map<string, RawReply> {
  const flat = arrayOf(source, where, v, 2 * CLUSTER_LIMITS.maxFields)
  if (flat.length % 2 !== 0) fail(source, `${where}: ${flat.length} elements, not field-value pairs`)
  const fields = new Map<string, RawReply>()
  for (let i = 0; i < flat.length; i += 2) {
    const name = textOf(source, `${where}: field name ${i / 2}`, flat[i]).toLowerCase()
    if (fields.has(name)) fail(source, `${where}: field ${JSON.stringify(name)} appears twice`)
    fields.set(name, flat[i + 1] as RawReply)
  }
  return fields
}

/** '', '?' and nil mean an unknown endpoint (CLUSTER SLOTS, cluster-preferred-endpoint-type unknown-endpoint or a hostname not set). */
function endpointOf(source: TopologySource, where: string, v: RawReply | undefined): string | null {
  if (v === null || v === undefined) return null
  const s = textOf(source, where, v)
  return s === '' || s === '?' ? null : s
}

function healthOf(s: string): NodeHealth {
  switch (s.toLowerCase()) {
    case 'online':
      return 'online'
    case 'failed':
    case 'fail':
      return 'failed'
    case 'loading':
      return 'loading'
    default:
      return 'unknown'
  }
}

// CLUSTER SHARDS (Redis 7.0+), in RESP2:
//   1) 1) "slots"  2) 1) "0" 2) "5460" (start, end pairs)
//      3) "nodes"  4) 1) 1) "id" 2) "e10b..." 3) "port" 4) "30001" 5) "ip" 6) "127.0.0.1"
//                        7) "endpoint" 8) "127.0.0.1" 9) "role" 10) "master"
//                        11) "replication-offset" 12) "72156" 13) "health" 14) "online"
//                        (and "hostname", "tls-port" when set)

function shardsNode(where: string, v: RawReply | undefined): ClusterNode {
  const S = 'CLUSTER SHARDS'
  const f = fieldsOf(S, where, v)
  const id = nodeIdOf(S, `${where}: id`, f.get('id'))
  const at = `${where} (${id})`
  const port = f.has('port') ? portOf(S, `${at}: port`, f.get('port')) : null
  const tlsPort = f.has('tls-port') ? portOf(S, `${at}: tls-port`, f.get('tls-port')) : null
  if (port === null && tlsPort === null) fail(S, `${at}: neither port nor tls-port`)
  const roleText = textOf(S, `${at}: role`, f.get('role'))
  const role = roleText === 'master' || roleText === 'primary' ? 'primary' : roleText === 'replica' || roleText === 'slave' ? 'replica' : null
  if (role === null) fail(S, `${at}: role ${JSON.stringify(roleText)} is neither master nor replica`)
  const hostname = f.has('hostname') ? textOf(S, `${at}: hostname`, f.get('hostname')) : ''
  const offset = f.get('replication-offset')
  return Object.freeze({
    id,
    ip: f.has('ip') ? textOf(S, `${at}: ip`, f.get('ip')) : '',
    endpoint: endpointOf(S, `${at}: endpoint`, f.get('endpoint')),
    hostname: hostname === '' ? null : hostname,
    port,
    tlsPort,
    role,
    health: f.has('health') ? healthOf(textOf(S, `${at}: health`, f.get('health'))) : 'unknown',
    replicationOffset: offset === undefined || offset === null ? null : intOf(S, `${at}: replication-offset`, offset),
  })
}

/** The shards of a CLUSTER SHARDS reply (Redis 7.0+). Throws ClusterReplyError. */
export function parseClusterShards(reply: RawReply): SlotMap {
  const S = 'CLUSTER SHARDS'
  const shards = arrayOf(S, 'the reply', reply, CLUSTER_LIMITS.maxShards)
  const input: ShardInput[] = []
  let nodeCount = 0
  for (let i = 0; i < shards.length; i++) {
    const where = `shard ${i}`
    const f = fieldsOf(S, where, shards[i])
    const flat = arrayOf(S, `${where}: slots`, f.get('slots'), 2 * CLUSTER_LIMITS.maxRanges)
    if (flat.length % 2 !== 0) fail(S, `${where}: slots has ${flat.length} elements, not start-end pairs`)
    const ranges: SlotRange[] = []
    for (let j = 0; j < flat.length; j += 2) {
      ranges.push([intOf(S, `${where}: slots[${j}]`, flat[j]), intOf(S, `${where}: slots[${j + 1}]`, flat[j + 1])])
    }
    const list = arrayOf(S, `${where}: nodes`, f.get('nodes'), CLUSTER_LIMITS.maxNodes)
    nodeCount += list.length
    if (nodeCount > CLUSTER_LIMITS.maxNodes) fail(S, `more than ${CLUSTER_LIMITS.maxNodes} nodes`)
    const nodes = list.map((n, j) => shardsNode(`${where}: node ${j}`, n))
    const primaries = nodes.filter((n) => n.role === 'primary')
    const replicas = nodes.filter((n) => n.role === 'replica')
    // Redis 7.2+ groups nodes by shard id: after a failover the failed former primary stays in the
    // shard until it comes back as a replica. The primary is the online one, else the first.
    const online = primaries.filter((n) => n.health === 'online')
    if (online.length > 1) fail(S, `${where}: ${online.length} online primaries (${online.map((n) => n.id).join(', ')})`)
    const primary = online[0] ?? primaries[0]
    if (primary === undefined) {
      // Replicas whose primary the cluster forgot (7.2+), serving nothing: nothing to route to.
      if (ranges.length === 0) continue
      fail(S, `${where}: serves slots but has no primary`)
    }
    input.push({ ranges, primary, replicas, nodes })
  }
  return SlotMap.build(S, input)
}

// CLUSTER SLOTS, in RESP2, one entry per contiguous range:
//   1) 1) "0"  2) "5460"
//      3) 1) "127.0.0.1" 2) "30001" 3) "09dbe9..." 4) (7.0+) 1) "hostname" 2) "host-1"   <- the primary
//      4) 1) "127.0.0.1" 2) "30004" 3) "821d8c..." 4) (empty)                           <- replicas
// The endpoint is cluster-preferred-endpoint-type's (IP by default; "?" or nil when unknown); the
// metadata names the others ("ip", "hostname").

function slotsNode(where: string, v: RawReply | undefined, role: 'primary' | 'replica'): ClusterNode {
  const S = 'CLUSTER SLOTS'
  // Endpoint, port, id, metadata; later Redis versions may add more, which is ignored.
  const a = arrayOf(S, where, v, CLUSTER_LIMITS.maxFields)
  if (a.length < 3) fail(S, `${where}: ${a.length} elements; Redis 4.0+ sends endpoint, port and id`)
  const endpoint = endpointOf(S, `${where}: endpoint`, a[0])
  const port = portOf(S, `${where}: port`, a[1])
  const id = nodeIdOf(S, `${where}: id`, a[2])
  const meta = a.length > 3 ? fieldsOf(S, `${where} (${id}): metadata`, a[3]) : new Map<string, RawReply>()
  const metaIp = meta.has('ip') ? textOf(S, `${where} (${id}): ip`, meta.get('ip')) : null
  let hostname = meta.has('hostname') ? textOf(S, `${where} (${id}): hostname`, meta.get('hostname')) : ''
  // The metadata names what the endpoint is not: with an `ip` and no `hostname`, the endpoint is
  // the hostname (cluster-preferred-endpoint-type hostname); without an `ip`, it is the IP.
  if (hostname === '' && metaIp !== null && endpoint !== null && endpoint !== metaIp) hostname = endpoint
  const ip = metaIp ?? (endpoint !== null && endpoint !== hostname ? endpoint : '')
  return Object.freeze({
    id,
    ip,
    endpoint,
    hostname: hostname === '' ? null : hostname,
    port,
    tlsPort: null,
    role,
    health: 'unknown',
    replicationOffset: null,
  })
}

function sameAddress(a: ClusterNode, b: ClusterNode): boolean {
  return a.ip === b.ip && a.endpoint === b.endpoint && a.hostname === b.hostname && a.port === b.port
}

/** The shards of a CLUSTER SLOTS reply (before Redis 7.0), grouped by primary. Throws ClusterReplyError. */
export function parseClusterSlots(reply: RawReply): SlotMap {
  const S = 'CLUSTER SLOTS'
  const entries = arrayOf(S, 'the reply', reply, CLUSTER_LIMITS.maxRanges)
  const byPrimary = new Map<string, { ranges: SlotRange[]; primary: ClusterNode; replicas: Map<string, ClusterNode> }>()
  const roleOf = new Map<string, ClusterNode>()
  const primaryOfReplica = new Map<string, string>()
  const known = (where: string, n: ClusterNode): ClusterNode => {
    const seen = roleOf.get(n.id)
    if (seen === undefined) {
      if (roleOf.size >= CLUSTER_LIMITS.maxNodes) fail(S, `more than ${CLUSTER_LIMITS.maxNodes} nodes`)
      roleOf.set(n.id, n)
      return n
    }
    if (seen.role !== n.role) fail(S, `${where}: node ${n.id} is listed both as a primary and as a replica`)
    if (!sameAddress(seen, n)) fail(S, `${where}: node ${n.id} is listed with two addresses`)
    return seen
  }
  for (let i = 0; i < entries.length; i++) {
    const where = `entry ${i}`
    const e = arrayOf(S, where, entries[i], 3 + CLUSTER_LIMITS.maxNodes)
    if (e.length < 3) fail(S, `${where}: ${e.length} elements; a range needs start, end and a primary`)
    const range: SlotRange = [intOf(S, `${where}: start`, e[0]), intOf(S, `${where}: end`, e[1])]
    const primary = known(`${where}: primary`, slotsNode(`${where}: primary`, e[2], 'primary'))
    let shard = byPrimary.get(primary.id)
    if (shard === undefined) {
      shard = { ranges: [], primary, replicas: new Map() }
      byPrimary.set(primary.id, shard)
    }
    shard.ranges.push(range)
    for (let j = 3; j < e.length; j++) {
      const r = known(`${where}: replica ${j - 3}`, slotsNode(`${where}: replica ${j - 3}`, e[j], 'replica'))
      const of = primaryOfReplica.get(r.id)
      if (of === undefined) primaryOfReplica.set(r.id, primary.id)
      else if (of !== primary.id) fail(S, `${where}: replica ${r.id} is listed under two primaries (${of} and ${primary.id})`)
      shard.replicas.set(r.id, r)
    }
  }
  return SlotMap.build(
    S,
    [...byPrimary.values()].map((s) => ({ ranges: s.ranges, primary: s.primary, replicas: [...s.replicas.values()] })),
  )
}
