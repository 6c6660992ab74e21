// How to run one Redis command against a Redis Cluster: which slot's shard takes it, or how it is
// split across slots, fanned out to every primary, or walked shard by shard (SCAN); and how the
// replies of the parts are merged back into the one reply a single Redis would have given.
// Pure: no I/O. The executor (src/upstream) sends the parts and calls the merge functions.
//
// Plans, most specific first:
//   - split: MGET, DEL, UNLINK, EXISTS, TOUCH, MSET with keys in several slots become one
//     sub-command per slot (parts in order of each slot's first key), merged as Redis would answer:
//     MGET's values at their keys' positions, the counts summed, MSET's OK. Keys in one slot stay a
//     'slot' plan. Not MSETNX: its all-or-nothing cannot be split, so it is CROSSSLOT like any other
//     multi-key command whose keys span slots (what Redis Cluster itself answers, with a hash-tag hint).
//   - fanout: the same command to every primary for the keyspace-wide commands (KEYS, DBSIZE,
//     FLUSHDB, FLUSHALL, RANDOMKEY) and the scripts and functions every node must know (SCRIPT
//     LOAD/EXISTS/FLUSH, FUNCTION LOAD/FLUSH/DELETE). Any error reply among the replies wins.
//   - scan: the client's cursor carries the shard: cursor = nodeCursor * 16384 + shardIndex, so
//     SCAN walks shard 0 to its end, then shard 1 from node cursor 0, and so on; '0' when the last
//     shard is done. 16384 is SLOT_COUNT, a bound on the number of shards (each serves a slot).
//   - everything else: slotOfCommand() (cluster-slots.ts): its slot, any node when keyless, or
//     CROSSSLOT.
// Malformed commands are not judged here: the node answers its own arity or syntax error (MSET with
// an odd number of arguments goes to its first key's slot, a cursor that is not a number to any
// node). Only what commandKeys() throws (a bad numkeys) is thrown.
//
// The common case (a command on one key) allocates nothing here beyond what slotOfCommand() does:
// names are matched without lower-casing them, and 'slot' and 'any' plans are shared frozen objects.

import { Buffer } from 'node:buffer'
import type { Arg } from '../core/command.js'
import type { RawReply } from '../core/reply.js'
import { isToken } from './classify.js'
import { keySlot, SLOT_COUNT, slotOfCommand } from './cluster-slots.js'
import type { LearnedTable } from './command-table.js'

/** How the replies of every primary are combined. */
export type FanoutMerge = 'concat' | 'sum' | 'all-ok' | 'random-non-null' | 'first' | 'and'
export type SplitMerge = 'mget' | 'sum' | 'all-ok'

export interface SplitPart {
  readonly slot: number
  /** The sub-command (same command name, the keys of this slot, with their values for MSET). */
  readonly args: readonly Arg[]
  /** For 'mget': where each of this part's replies goes in the merged array (indexes of the original keys). */
  readonly positions: readonly number[]
}

export type ClusterPlan =
  /** Every key in one slot: the shard of that slot. */
  | { readonly kind: 'slot'; readonly slot: number }
  /** Keyless: any one node. */
  | { readonly kind: 'any' }
  /** One sub-command per slot; `keys`: how many keys (MSET: key-value pairs) the command has. */
  | { readonly kind: 'split'; readonly parts: readonly SplitPart[]; readonly merge: SplitMerge; readonly keys: number }
  /** The same args to every primary. */
  | { readonly kind: 'fanout'; readonly merge: FanoutMerge }
  /** SCAN: shard index from the client's cursor, args with that node's cursor. */
  | { readonly kind: 'scan'; readonly shard: number; readonly args: readonly Arg[] }
  /** Keys in several slots of a command that cannot be split. */
  | { readonly kind: 'crossslot'; readonly message: string }

/** A reply the merge cannot make sense of (a node broke the command's reply shape). */
export class ClusterMergeError extends Error {
  override readonly name = 'ClusterMergeError'
}

// ---------------------------------------------------------------------------------------------
// Shared plans

const ANY: ClusterPlan = Object.freeze({ kind: 'any' })

/** 'slot' plans, made on first use: at most SLOT_COUNT small frozen objects. */
const SLOT_PLANS: (ClusterPlan | undefined)[] = new Array<ClusterPlan | undefined>(SLOT_COUNT)

function slotPlan(slot: number): ClusterPlan {
  return (SLOT_PLANS[slot] ??= Object.freeze({ kind: 'slot', slot }))
}

function fanout(merge: FanoutMerge): ClusterPlan {
  return Object.freeze({ kind: 'fanout', merge })
}

const FANOUT = {
  concat: fanout('concat'),
  sum: fanout('sum'),
  allOk: fanout('all-ok'),
  randomNonNull: fanout('random-non-null'),
  first: fanout('first'),
  and: fanout('and'),
} as const

// ---------------------------------------------------------------------------------------------
// Planning

/** The commands planned here rather than by slotOfCommand(). */
type Special =
  | { readonly kind: 'split'; readonly merge: SplitMerge; readonly step: 1 | 2 }
  | { readonly kind: 'fanout'; readonly plan: ClusterPlan }
  | { readonly kind: 'script' | 'function' | 'scan' | 'publish' }

const SPLIT_MGET: Special = { kind: 'split', merge: 'mget', step: 1 }
const SPLIT_SUM: Special = { kind: 'split', merge: 'sum', step: 1 }
const SPLIT_MSET: Special = { kind: 'split', merge: 'all-ok', step: 2 }
const SCRIPT: Special = { kind: 'script' }
const FUNCTION: Special = { kind: 'function' }
const SCAN: Special = { kind: 'scan' }
const FANOUT_CONCAT: Special = { kind: 'fanout', plan: FANOUT.concat }
const FANOUT_SUM: Special = { kind: 'fanout', plan: FANOUT.sum }
const FANOUT_ALL_OK: Special = { kind: 'fanout', plan: FANOUT.allOk }
const FANOUT_RANDOM: Special = { kind: 'fanout', plan: FANOUT.randomNonNull }
const PUBLISH: Special = { kind: 'publish' }

/** The special command `name` is (case-insensitive, string or bytes), by its length first: no allocation. */
function special(name: Arg | undefined): Special | null {
  if (name === undefined) return null
  switch (name.length) {
    case 3:
      return isToken(name, 'DEL') ? SPLIT_SUM : null
    case 4:
      if (isToken(name, 'MGET')) return SPLIT_MGET
      if (isToken(name, 'MSET')) return SPLIT_MSET
      if (isToken(name, 'KEYS')) return FANOUT_CONCAT
      return isToken(name, 'SCAN') ? SCAN : null
    case 5:
      return isToken(name, 'TOUCH') ? SPLIT_SUM : null
    case 6:
      if (isToken(name, 'UNLINK') || isToken(name, 'EXISTS')) return SPLIT_SUM
      if (isToken(name, 'DBSIZE')) return FANOUT_SUM
      return isToken(name, 'SCRIPT') ? SCRIPT : null
    case 7:
      if (isToken(name, 'PUBLISH')) return PUBLISH
      return isToken(name, 'FLUSHDB') ? FANOUT_ALL_OK : null
    case 8:
      if (isToken(name, 'FLUSHALL')) return FANOUT_ALL_OK
      return isToken(name, 'FUNCTION') ? FUNCTION : null
    case 9:
      return isToken(name, 'RANDOMKEY') ? FANOUT_RANDOM : null
    default:
      return null
  }
}

/**
 * How to run `args` (args[0] is the command's name) on a Redis Cluster (see the header).
 * `table`: the key ranges the backend reported (command-table.ts), null before one is learned.
 * Throws the BadRequestError commandKeys() throws for an invalid numkeys and the like.
 */
export function planCommand(args: readonly Arg[], table: LearnedTable | null): ClusterPlan {
  const s = special(args[0])
  if (s !== null) {
    switch (s.kind) {
      case 'split':
        return planSplit(args, s.merge, s.step)
      case 'fanout':
        return s.plan
      case 'scan':
        return planScan(args)
      case 'script': {
        const sub = args[1]
        if (isToken(sub, 'LOAD')) return FANOUT.first
        if (isToken(sub, 'EXISTS')) return FANOUT.and
        if (isToken(sub, 'FLUSH')) return FANOUT.allOk
        break
      }
      case 'function': {
        const sub = args[1]
        if (isToken(sub, 'LOAD')) return FANOUT.first
        if (isToken(sub, 'FLUSH') || isToken(sub, 'DELETE') || isToken(sub, 'RESTORE')) return FANOUT.allOk
        break
      }
      case 'publish':
        // Any node delivers it cluster-wide; the channel's shard is where the gateway's SSE
        // subscriptions to that channel are, so the receiver count PUBLISH answers includes them.
        if (args.length === 3) return slotPlan(keySlot(args[1] as Arg))
        break
    }
  }
  const slot = slotOfCommand(args, table)
  if (slot === null) return ANY
  if (typeof slot === 'number') return slotPlan(slot)
  return { kind: 'crossslot', message: slot.message }
}

interface MutablePart {
  readonly slot: number
  readonly args: Arg[]
  readonly positions: number[]
}

/**
 * MGET/DEL/UNLINK/EXISTS/TOUCH (step 1: every argument a key) and MSET (step 2: key-value pairs):
 * one 'slot' plan when all keys share a slot, else one part per slot, in order of first appearance.
 */
function planSplit(args: readonly Arg[], merge: SplitMerge, step: 1 | 2): ClusterPlan {
  const n = args.length
  if (n < 2) return ANY // no keys: the node answers the arity error
  if (step === 2 && (n - 1) % 2 !== 0) return slotPlan(keySlot(args[1] as Arg)) // likewise
  const first = keySlot(args[1] as Arg)
  let i = 1 + step
  while (i < n && keySlot(args[i] as Arg) === first) i += step
  if (i >= n) return slotPlan(first)

  // Keys in several slots. Up to `i` they are all in `first`'s.
  const name = args[0] as Arg
  const head: MutablePart = { slot: first, args: [name], positions: [] }
  const parts: MutablePart[] = [head]
  const bySlot = new Map<number, MutablePart>([[first, head]])
  for (let k = 1; k < n; k += step) {
    let part = head
    if (k >= i) {
      const slot = keySlot(args[k] as Arg)
      const found = bySlot.get(slot)
      if (found === undefined) {
        part = { slot, args: [name], positions: [] }
        bySlot.set(slot, part)
        parts.push(part)
      } else {
        part = found
      }
    }
    part.args.push(args[k] as Arg)
    if (step === 2) part.args.push(args[k + 1] as Arg)
    part.positions.push((k - 1) / step)
  }
  return { kind: 'split', parts, merge, keys: (n - 1) / step }
}

/** The largest cursor a Redis node takes (an unsigned 64-bit integer). */
const MAX_NODE_CURSOR = (1n << 64n) - 1n
const SLOTS = BigInt(SLOT_COUNT)
/** The largest client cursor: the largest node cursor on the last possible shard. */
const MAX_CLIENT_CURSOR = MAX_NODE_CURSOR * SLOTS + SLOTS - 1n
/** Longer cursors are not parsed (the largest client cursor has 24 digits; leave room for leading zeros). */
const MAX_CURSOR_LENGTH = 64
const UNSIGNED = /^[0-9]+$/

/** An unsigned decimal integer of at most `max` characters, or null. */
function unsigned(arg: RawReply | undefined, max: number): bigint | null {
  let text: string
  if (typeof arg === 'string') text = arg
  else if (Buffer.isBuffer(arg)) {
    if (arg.length > max) return null
    text = arg.toString('latin1')
  } else if (typeof arg === 'number') {
    return Number.isSafeInteger(arg) && arg >= 0 ? BigInt(arg) : null
  } else return null
  if (text.length > max || !UNSIGNED.test(text)) return null
  return BigInt(text)
}

/** SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: the shard and node cursor the client's cursor encodes. */
function planScan(args: readonly Arg[]): ClusterPlan {
  if (args.length < 2) return ANY
  const cursor = unsigned(args[1], MAX_CURSOR_LENGTH)
  if (cursor === null || cursor > MAX_CLIENT_CURSOR) return ANY // the node answers "invalid cursor"
  const nodeArgs: Arg[] = new Array<Arg>(args.length)
  nodeArgs[0] = 'SCAN'
  nodeArgs[1] = String(cursor / SLOTS)
  for (let i = 2; i < args.length; i++) nodeArgs[i] = args[i] as Arg
  return { kind: 'scan', shard: Number(cursor % SLOTS), args: nodeArgs }
}

/**
 * SCAN's reply from shard `shard` (of `shards`) with the cursor rewritten for the client: the node's
 * next cursor on the same shard, or node cursor 0 of the next shard when this one is done, or '0'
 * after the last shard. The cursor keeps the reply's form (a Buffer from the RESP parser). A reply
 * that is not [cursor, keys] is returned as it is when it is an error, else as a ClusterMergeError.
 */
export function scanReply(reply: RawReply, shard: number, shards: number): RawReply {
  if (reply instanceof Error) return reply
  if (!Array.isArray(reply) || reply.length !== 2) return new ClusterMergeError(`SCAN: shard ${shard} replied ${describe(reply)}, not [cursor, keys]`)
  const raw = reply[0]
  const next = unsigned(raw, 20)
  if (next === null || next > MAX_NODE_CURSOR) return new ClusterMergeError(`SCAN: shard ${shard} replied with cursor ${describe(raw)}`)
  const client = next !== 0n ? next * SLOTS + BigInt(shard) : shard + 1 < shards ? BigInt(shard + 1) : 0n
  const text = String(client)
  return [Buffer.isBuffer(raw) ? Buffer.from(text) : text, reply[1] as RawReply]
}

// ---------------------------------------------------------------------------------------------
// Merging

function describe(v: RawReply | undefined): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'nil'
  if (v instanceof Error) return 'an error'
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (typeof v === 'number') return `the integer ${v}`
  const s = typeof v === 'string' ? v : v.toString('latin1', 0, 40)
  return JSON.stringify(s.length > 32 ? `${s.slice(0, 32)}...` : s)
}

function firstError(replies: readonly RawReply[]): Error | null {
  for (const r of replies) if (r instanceof Error) return r
  return null
}

const INTEGER = /^-?[0-9]{1,19}$/

/** An integer reply (decimal text from the RESP parser, or a number) as a number; null if it is not one. */
function integer(v: RawReply | undefined): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : null
  if (typeof v !== 'string' || !INTEGER.test(v)) return null
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : null
}

/** The integer replies summed, as decimal text (how the RESP parser hands integers over). */
function sum(what: string, replies: readonly RawReply[]): RawReply {
  let total = 0
  for (let i = 0; i < replies.length; i++) {
    const n = integer(replies[i])
    if (n === null) return new ClusterMergeError(`${what}: reply ${i} is ${describe(replies[i])}, not an integer`)
    total += n
  }
  if (!Number.isSafeInteger(total)) return new ClusterMergeError(`${what}: the sum of the replies is beyond 2^53`)
  return String(total)
}

/**
 * The reply of a 'split' plan from its parts' replies (replies[i] is parts[i]'s): the first error
 * reply if there is one; MGET's values in the order of the original keys (`keys` of them), the
 * counts summed, or the first OK.
 */
export function mergeSplit(merge: SplitMerge, parts: readonly SplitPart[], replies: readonly RawReply[], keys: number): RawReply {
  const error = firstError(replies)
  if (error !== null) return error
  if (replies.length !== parts.length) return new ClusterMergeError(`${replies.length} replies for ${parts.length} parts`)
  switch (merge) {
    case 'mget': {
      const out: RawReply[] = new Array<RawReply>(keys).fill(null)
      for (let i = 0; i < parts.length; i++) {
        const positions = (parts[i] as SplitPart).positions
        const reply = replies[i]
        if (!Array.isArray(reply) || reply.length !== positions.length) {
          return new ClusterMergeError(`MGET: part ${i} replied ${describe(reply)} for ${positions.length} keys`)
        }
        for (let j = 0; j < positions.length; j++) {
          const at = positions[j] as number
          if (!(at >= 0 && at < keys)) return new ClusterMergeError(`MGET: part ${i} has position ${at}, outside 0-${keys - 1}`)
          out[at] = reply[j] as RawReply
        }
      }
      return out
    }
    case 'sum':
      return sum('split', replies)
    case 'all-ok':
      return replies[0] ?? null
  }
}

/**
 * The reply of a 'fanout' plan from every primary's reply: the first error reply if there is one;
 * else the arrays concatenated, the integers summed, the first reply ('all-ok', 'first'), one of
 * the non-nil replies picked with `random()` (in [0, 1)), or SCRIPT EXISTS's flags and-ed element
 * by element.
 */
export function mergeFanout(merge: FanoutMerge, replies: readonly RawReply[], random: () => number): RawReply {
  const error = firstError(replies)
  if (error !== null) return error
  switch (merge) {
    case 'concat': {
      const out: RawReply[] = []
      for (let i = 0; i < replies.length; i++) {
        const reply = replies[i]
        if (!Array.isArray(reply)) return new ClusterMergeError(`fanout: reply ${i} is ${describe(reply)}, not an array`)
        for (const v of reply) out.push(v)
      }
      return out
    }
    case 'sum':
      return sum('fanout', replies)
    case 'all-ok':
    case 'first':
      return replies[0] ?? null
    case 'random-non-null': {
      let count = 0
      for (const r of replies) if (r !== null) count++
      if (count === 0) return null
      let pick = Math.min(count - 1, Math.max(0, Math.floor(random() * count)))
      for (const r of replies) {
        if (r === null) continue
        if (pick === 0) return r
        pick--
      }
      return null // not reached
    }
    case 'and':
      return and(replies)
  }
}

/** SCRIPT EXISTS: 1 where every node says 1, in the form the first 0 (or else the first node's 1) had. */
function and(replies: readonly RawReply[]): RawReply {
  const first = replies[0]
  if (first === undefined) return []
  if (!Array.isArray(first)) return new ClusterMergeError(`fanout: reply 0 is ${describe(first)}, not an array`)
  const out: RawReply[] = first.slice()
  for (let i = 0; i < replies.length; i++) {
    const reply = replies[i]
    if (!Array.isArray(reply) || reply.length !== out.length) {
      return new ClusterMergeError(`fanout: reply ${i} is ${describe(reply)}, not an array of ${out.length}`)
    }
    for (let j = 0; j < out.length; j++) {
      const flag = integer(reply[j])
      if (flag !== 0 && flag !== 1) return new ClusterMergeError(`fanout: reply ${i} element ${j} is ${describe(reply[j])}, not 0 or 1`)
      if (flag === 0 && integer(out[j]) === 1) out[j] = reply[j] as RawReply
    }
  }
  return out
}
