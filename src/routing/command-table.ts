// Command tables learned from the backends: what each endpoint's server reports with
// COMMAND INFO (module commands such as FT.SEARCH or JSON.GET included), parsed into
// name -> {flags, arity, keys, subcommands}, and merged per instance into the CommandView that
// classify() consults (classify.ts header: precedence of explicit tables, learned flags and
// @ioredis/commands).
//
// Merging (README "How commands are classified"): an instance's view is the union of its
// endpoints' tables, so a command any of them has is known; where endpoints disagree on a
// command's class, the most restrictive class wins (refused > admin > write > read), per
// subcommand too. Every endpoint of an instance is therefore judged by the same view, whichever
// endpoint a request then goes to; one that lacks the command answers Redis's own
// `ERR unknown command`.
//
// Replies from Redis are hostile input like any other request a client could shape: names longer
// than classify() ever looks up are skipped, and counts are capped.
// No I/O of its own: the endpoints' clients read the tables (endpoint-client.ts); the helpers at
// the bottom only ask them to (learnUnknown, noteAdminCommand). Views are cached per route, in a
// CommandViews that each gateway owns.

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { classFromFlags, learnedOverride, type CommandClass, type CommandView, type LearnedEntry } from './classify.js'
import { withTimer } from '../core/timeout.js'
import { integerText } from '../core/reply.js'

/** One command or subcommand as COMMAND INFO describes it. */
export interface CommandSpec {
  /** Lower case; a subcommand's without the `parent|` prefix. */
  readonly name: string
  readonly arity: number
  /** Lower case, as Redis spells them (`readonly`, `write`, `admin`, `blocking`, `noscript`...). */
  readonly flags: readonly string[]
  readonly firstKey: number
  readonly lastKey: number
  readonly step: number
  /** By lower-case name; empty for commands without subcommands (and on Redis before 7). */
  readonly subcommands: ReadonlyMap<string, CommandSpec>
}

/** One endpoint's table. */
export interface LearnedTable {
  /** Top-level commands by lower-case name. */
  readonly specs: ReadonlyMap<string, CommandSpec>
  /** What COMMAND COUNT answers for this table (top-level commands, skipped ones included). */
  readonly count: number
  /** A hash of names, flags and subcommands: equal tables have equal fingerprints. */
  readonly fingerprint: string
  /** Of the commands, those a module registered (flag `module`). */
  readonly moduleCommands: number
}

/** Limits on a COMMAND INFO reply (Redis 7.2 has about 240 commands, the largest 30 subcommands). */
export const TABLE_LIMITS = {
  maxCommands: 10_000,
  maxSubcommands: 1_000,
  maxFlags: 64,
  /** classify() never looks up longer names (MAX_NAME_LENGTH there). */
  maxNameLength: 64,
} as const

/**
 * Parses a COMMAND or COMMAND INFO reply from its RESP bytes (a list of entries, as RespParser
 * captured them for a sink with `raw`: checked as RESP already). Read in one pass that builds only
 * what a spec keeps and steps over the rest (ACL categories, tips, key specs: most of the ~10,000
 * elements of Redis 7's reply), about twice as fast as building the reply's values first
 * (bench/README.md, start-up). Entries that are not commands (nil for a name the server lacks) are
 * skipped. Throws on bytes that are not one RESP array.
 */
export function parseCommandTable(resp: Buffer): LearnedTable {
  const r = new RespReader(resp)
  if (r.type() !== ARRAY) throw new Error('COMMAND INFO did not answer a list')
  const count = Math.max(0, r.header())
  const specs = new Map<string, CommandSpec>()
  for (let i = 0; i < Math.min(count, TABLE_LIMITS.maxCommands); i++) {
    const spec = r.spec(0)
    if (spec !== null) specs.set(spec.name, spec)
  }
  return tableOf(specs, count)
}

/**
 * A digest of a COMMAND INFO reply's content whatever its order, or null when it cannot be one:
 * the SHA-256 of the reply with its entries, and each entry's subcommands, put in name order
 * (Redis lists its command dict in hash order, random per process, so equal servers send equal
 * entries in different orders). Equal digests therefore mean the same entries, byte for byte,
 * which parseCommandTable reads to equal tables: an endpoint whose table is already known is not
 * read again (reading ~200 KiB of specs per endpoint, to drop them for the known table, set the
 * start-up's garbage collection; bench/README.md). Null, so that the reply is read, where order
 * could change what is read: two entries (or two subcommands of one) with the same name, more
 * entries or subcommands than the limits take, or an entry that is not an array with a name. A
 * pass over the bytes that keeps only names and positions; throws as parseCommandTable does.
 */
export function replyDigest(resp: Buffer): string | null {
  const r = new RespReader(resp)
  if (r.type() !== ARRAY) throw new Error('COMMAND INFO did not answer a list')
  const count = r.header()
  if (count > TABLE_LIMITS.maxCommands) return null
  const head = r.position
  const entries: EntryBytes[] = []
  for (let i = 0; i < count; i++) {
    const e = r.entryBytes()
    if (e === null) return null
    entries.push(e)
  }
  if (!byNameOnce(entries)) return null
  // The canonical reply: the same bytes, reordered, so as long as the reply.
  const out = Buffer.allocUnsafe(resp.length)
  let at = resp.copy(out, 0, 0, head)
  for (const e of entries) {
    if (e.subs === null) {
      at += resp.copy(out, at, e.start, e.end)
      continue
    }
    if (!byNameOnce(e.subs)) return null
    at += resp.copy(out, at, e.start, e.subsStart)
    for (const sub of e.subs) at += resp.copy(out, at, sub.start, sub.end)
    at += resp.copy(out, at, e.subsEnd, e.end)
  }
  at += resp.copy(out, at, r.position, resp.length)
  return createHash('sha256').update(out.subarray(0, at)).digest('hex')
}

/** Where one entry (or subcommand) lies in the reply, by the name parseCommandTable keys it under. */
interface EntryBytes {
  readonly name: string
  readonly start: number
  readonly end: number
  /** The subcommands (element 9) and where their list's elements begin and end; null when it has none. */
  readonly subs: EntryBytes[] | null
  readonly subsStart: number
  readonly subsEnd: number
}

/** Sorts by name; false when two have the same name. */
function byNameOnce(list: EntryBytes[]): boolean {
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (let i = 1; i < list.length; i++) if (list[i]!.name === list[i - 1]!.name) return false
  return true
}

const ARRAY = 0x2a
const BULK = 0x24
const STATUS = 0x2b
const INTEGER = 0x3a

/** A cursor over well-formed RESP bytes (RespParser checked them); a read past the end throws. */
class RespReader {
  private pos = 0
  /** Where the line of the last header read began. */
  private lineStart = 0

  constructor(private readonly buf: Buffer) {}

  get position(): number {
    return this.pos
  }

  /** The type byte of the element at the cursor. */
  type(): number {
    if (this.pos >= this.buf.length) throw new Error('COMMAND INFO reply ends early')
    return this.buf[this.pos]!
  }

  /** Reads the element's header line: its length or integer value (0 for a simple string or error), the cursor after it. */
  header(): number {
    const buf = this.buf
    const end = buf.length
    this.lineStart = this.pos
    const t = buf[this.pos]!
    let i = this.pos + 1
    let n = 0
    if (t === ARRAY || t === BULK || t === INTEGER) {
      const neg = buf[i] === 0x2d
      if (neg) i++
      for (let c = buf[i]; c !== 0x0d && i < end; c = buf[++i]) n = n * 10 + (c! - 0x30)
      if (neg) n = -n
    } else {
      // A JavaScript loop beats indexOf's native call on lines this short (as in RespParser).
      while (i < end && buf[i] !== 0x0d) i++
    }
    if (i >= end) throw new Error('COMMAND INFO reply ends early')
    this.pos = i + 2
    return n
  }

  /** The element's text as a spec field reads it (a string's latin1, an integer's decimal text), or null; the cursor after it. */
  text(): string | null {
    const t = this.type()
    const n = this.header()
    switch (t) {
      case BULK: {
        if (n < 0) return null
        const s = this.buf.toString('latin1', this.pos, this.pos + n)
        this.pos += n + 2
        return s
      }
      case STATUS:
        return this.buf.toString('latin1', this.lineStart + 1, this.pos - 2)
      case INTEGER:
        return integerText(this.buf, this.lineStart, this.pos - 1, n)
      case ARRAY:
        this.skipElements(n)
        return null
      default:
        return null
    }
  }

  /** Steps over the element at the cursor, nested ones included (counted, not recursed). */
  skip(): void {
    this.skipElements(1)
  }

  private skipElements(count: number): void {
    for (let left = count; left > 0; left--) {
      const t = this.type()
      const n = this.header()
      if (t === ARRAY && n > 0) left += n
      else if (t === BULK && n >= 0) this.pos += n + 2
    }
  }

  /**
   * Where the entry at the cursor lies (replyDigest), its subcommands' too at depth 0; null when it
   * is not an array whose first element is a name, or has more subcommands than a table takes.
   */
  entryBytes(depth = 0): EntryBytes | null {
    const start = this.pos
    if (this.type() !== ARRAY) return null
    const n = this.header()
    if (n < 1 || this.type() !== BULK) return null
    const full = this.text()
    if (full === null) return null
    const name = keyOf(full.toLowerCase(), depth)
    let subs: EntryBytes[] | null = null
    let subsStart = 0
    let subsEnd = 0
    for (let i = 1; i < n; i++) {
      if (i !== 9 || depth > 0 || this.type() !== ARRAY) {
        this.skip()
        continue
      }
      const k = this.header()
      if (k > TABLE_LIMITS.maxSubcommands) return null
      subsStart = this.pos
      subs = []
      for (let j = 0; j < k; j++) {
        const sub = this.entryBytes(1)
        if (sub === null) return null
        subs.push(sub)
      }
      subsEnd = this.pos
    }
    return { name, start, end: this.pos, subs, subsStart, subsEnd }
  }

  /** A command or subcommand entry; null (stepped over) when it is not one. */
  spec(depth: number): CommandSpec | null {
    if (this.type() !== ARRAY) return this.skip(), null
    const n = this.header()
    if (n < 6) return this.skipElements(n), null
    const full = this.text()
    const arity = int(this.text())
    const flags: string[] = []
    if (this.type() === ARRAY) {
      const k = this.header()
      for (let i = 0; i < k; i++) {
        if (i >= TABLE_LIMITS.maxFlags) this.skip()
        else addFlag(flags, this.text())
      }
    } else this.skip()
    const firstKey = int(this.text())
    const lastKey = int(this.text())
    const step = int(this.text())
    const subcommands = new Map<string, CommandSpec>()
    for (let i = 6; i < n; i++) {
      // Subcommands are element 9 on Redis 7 and later; they have no subcommands of their own.
      if (i !== 9 || depth > 0 || this.type() !== ARRAY) {
        this.skip()
        continue
      }
      const k = this.header()
      for (let j = 0; j < k; j++) {
        const sub = j < TABLE_LIMITS.maxSubcommands ? this.spec(1) : (this.skip(), null)
        if (sub !== null) subcommands.set(sub.name, sub)
      }
    }
    return specOf(full, depth, { arity, flags, firstKey, lastKey, step, subcommands })
  }
}

function int(text: string | null): number {
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : 0
}

function addFlag(flags: string[], f: string | null): void {
  if (f !== null && f.length <= 64) flags.push(f.toLowerCase())
}

/** The name a table keys an entry under: a subcommand's (depth 1) without its `parent|` prefix. */
function keyOf(lower: string, depth: number): string {
  return depth > 0 ? lower.slice(lower.indexOf('|') + 1) : lower
}

/** The spec named `full` (a subcommand's `parent|name` at depth 1), or null when the name is not one to keep. */
function specOf(full: string | null, depth: number, fields: Omit<CommandSpec, 'name'>): CommandSpec | null {
  if (full === null || full.length === 0 || full.length > 2 * TABLE_LIMITS.maxNameLength + 1) return null
  const name = keyOf(full.toLowerCase(), depth)
  if (name.length === 0 || name.length > TABLE_LIMITS.maxNameLength) return null
  return { name, ...fields }
}

/** A table from specs (tests build them by hand); `count` defaults to their number. */
export function tableOf(specs: ReadonlyMap<string, CommandSpec>, count = specs.size): LearnedTable {
  let moduleCommands = 0
  // One text hashed once (a hash update per command and subcommand cost as much as the parse).
  let text = ''
  for (const name of [...specs.keys()].sort()) {
    const s = specs.get(name)!
    if (s.flags.includes('module')) moduleCommands++
    text += `${name}:${s.flags.slice().sort().join(',')};`
    if (s.subcommands.size === 0) continue
    for (const sub of [...s.subcommands.keys()].sort()) text += `${name}|${sub}:${s.subcommands.get(sub)!.flags.slice().sort().join(',')};`
  }
  return { specs, count, fingerprint: createHash('sha256').update(text).digest('hex').slice(0, 16), moduleCommands }
}

/** A spec from flags alone (tests, and the pure classification helpers). */
export function spec(name: string, flags: readonly string[], subcommands: readonly CommandSpec[] = []): CommandSpec {
  return {
    name: name.toLowerCase(),
    arity: -1,
    flags,
    firstKey: 0,
    lastKey: 0,
    step: 0,
    subcommands: new Map(subcommands.map((s) => [s.name, s])),
  }
}

// ---------------------------------------------------------------------------------------------
// Classification and merging

/** refused > admin > write > read (unknown never appears in a learned entry). */
function strictness(c: CommandClass): number {
  switch (c.kind) {
    case 'read':
      return 0
    case 'write':
      return 1
    case 'admin':
      return 2
    case 'refused':
      return 3
    case 'unknown':
      return -1
  }
}

/** The more restrictive of two classes; on a tie the first. */
export function stricter(a: CommandClass, b: CommandClass): CommandClass {
  return strictness(b) > strictness(a) ? b : a
}

function classOfSpec(s: CommandSpec, displayName: string): CommandClass {
  const flags = new Set(s.flags)
  return classFromFlags(displayName, (f) => flags.has(f))
}

/** One endpoint's entry for a command, classified from its flags. */
export function learnedEntry(s: CommandSpec): LearnedEntry {
  // An override decides the whole command, whatever its subcommands' flags say.
  const override = learnedOverride(s.name)
  if (override !== undefined) return { name: s.name, cls: override, subs: null }
  const cls = classOfSpec(s, s.name)
  if (s.subcommands.size === 0) return { name: s.name, cls, subs: null }
  const subs = new Map<string, CommandClass>()
  for (const sub of s.subcommands.values()) subs.set(sub.name, classOfSpec(sub, `${s.name} ${sub.name}`))
  return { name: s.name, cls, subs }
}

/** Two endpoints' entries for the same command: the most restrictive class, subcommand by subcommand. */
export function mergeEntries(a: LearnedEntry, b: LearnedEntry): LearnedEntry {
  let subs: Map<string, CommandClass> | null = null
  if (a.subs !== null || b.subs !== null) {
    subs = new Map(a.subs ?? [])
    for (const [k, v] of b.subs ?? []) {
      const mine = subs.get(k)
      subs.set(k, mine === undefined ? v : stricter(mine, v))
    }
  }
  return { name: a.name, cls: stricter(a.cls, b.cls), subs }
}

function withUpperKeys<T>(m: ReadonlyMap<string, T>): Map<string, T> {
  const out = new Map<string, T>()
  for (const [k, v] of m) {
    out.set(k, v)
    out.set(k.toUpperCase(), v)
  }
  return out
}

function build(tables: readonly LearnedTable[]): CommandView {
  const merged = new Map<string, LearnedEntry>()
  for (const t of tables) {
    for (const s of t.specs.values()) {
      const e = learnedEntry(s)
      const have = merged.get(s.name)
      merged.set(s.name, have === undefined ? e : mergeEntries(have, e))
    }
  }
  const entries = new Map<string, LearnedEntry>()
  for (const [name, e] of merged) {
    entries.set(name, e.subs === null ? e : { name: e.name, cls: e.cls, subs: withUpperKeys(e.subs) })
  }
  return { entries: withUpperKeys(entries) }
}

/** The tables that make a view: each once (tables with equal fingerprints are equal), nulls left out. */
function distinctTables(tables: Iterable<LearnedTable | null>): LearnedTable[] {
  const distinct: LearnedTable[] = []
  for (const t of tables) {
    if (t !== null && !distinct.some((d) => d === t || d.fingerprint === t.fingerprint)) distinct.push(t)
  }
  return distinct
}

/**
 * The view of an instance whose endpoints reported `tables` (null for one not learned yet): the
 * union of commands, the most restrictive class where they disagree. Null when none is learned.
 */
export function mergeTables(tables: Iterable<LearnedTable | null>): CommandView | null {
  const distinct = distinctTables(tables)
  return distinct.length === 0 ? null : build(distinct)
}

// ---------------------------------------------------------------------------------------------
// Views per instance, cached by route: a request costs one WeakMap lookup and an identity check of
// its endpoints' tables; a view is rebuilt only when one of them was learned again and changed.

/** What the view of an instance is built from: its endpoints (router.endpointsOf()). */
export interface TableSource {
  readonly pooled: { readonly client: { readonly commands: LearnedTable | null } }
}

interface CachedView {
  readonly tables: readonly (LearnedTable | null)[]
  readonly view: CommandView | null
}

function current(hit: CachedView, endpoints: readonly TableSource[]): boolean {
  if (hit.tables.length !== endpoints.length) return false
  for (let i = 0; i < endpoints.length; i++) if (hit.tables[i] !== endpoints[i]!.pooled.client.commands) return false
  return true
}

/**
 * The views a gateway's requests classify with, cached per route and per table. Each gateway has
 * its own (two in one process do not share views or their memory).
 */
export class CommandViews {
  private readonly byRoute = new WeakMap<object, CachedView>()
  /** Each table's own view, built once (most instances have one endpoint, or endpoints that agree). */
  private readonly byTable = new WeakMap<LearnedTable, CommandView>()

  /** The instance's view (`key`: its route object, which a routing-table change replaces). */
  instanceView(key: object, endpoints: readonly TableSource[]): CommandView | null {
    const hit = this.byRoute.get(key)
    if (hit !== undefined && current(hit, endpoints)) return hit.view
    const tables = endpoints.map((e) => e.pooled.client.commands)
    const view = this.merge(tables)
    this.byRoute.set(key, { tables, view })
    return view
  }

  /** mergeTables(), with a table that stands alone built once. */
  merge(tables: Iterable<LearnedTable | null>): CommandView | null {
    const distinct = distinctTables(tables)
    if (distinct.length !== 1) return distinct.length === 0 ? null : build(distinct)
    const t = distinct[0]!
    let v = this.byTable.get(t)
    if (v === undefined) {
      v = build([t])
      this.byTable.set(t, v)
    }
    return v
  }
}

/** An endpoint that can be asked whether its table changed (EndpointClient.checkCommands). */
export interface CheckableSource {
  readonly pooled: { readonly client: { readonly commands: LearnedTable | null; checkCommands(): Promise<void> } }
}

/**
 * A command the instance's view does not know arrived: asks each endpoint whether its table changed
 * (at most once a second per endpoint: EndpointClient.checkCommands) and waits at most `timeoutMs`
 * for the answers. The caller then classifies again with instanceView(); a name still unknown is
 * answered with Redis's own error. Never rejects.
 */
export async function learnUnknown(endpoints: readonly CheckableSource[], timeoutMs: number): Promise<void> {
  if (endpoints.length === 0) return
  try {
    await withTimer(Promise.all(endpoints.map((e) => e.pooled.client.checkCommands())), timeoutMs, () => new Error('command table check timed out'))
  } catch {
    // Answer with what is known.
  }
}

/** An endpoint whose table check can be made due at once (EndpointClient.commandsMayHaveChanged). */
export interface StaleableSource {
  readonly pooled: { readonly client: { commandsMayHaveChanged(): void } }
}

/**
 * An admitted command that may change the server's command table (MODULE LOAD/LOADEX/UNLOAD) is
 * about to run: the next unknown command on the instance checks the tables at once, without
 * waiting out the interval (a client loading a module and then using it is not turned away).
 */
export function noteAdminCommand(args: readonly unknown[], endpoints: readonly StaleableSource[]): void {
  const a = args[0]
  const name = typeof a === 'string' ? a : Buffer.isBuffer(a) && a.length === 6 ? a.toString('latin1') : ''
  if (name.length !== 6 || name.toLowerCase() !== 'module') return
  for (const e of endpoints) e.pooled.client.commandsMayHaveChanged()
}
