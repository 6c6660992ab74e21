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

function text(v: unknown): string | null {
  if (Buffer.isBuffer(v)) return v.toString('latin1')
  if (typeof v === 'string') return v
  return null
}

function int(v: unknown): number {
  const n = typeof v === 'number' ? v : Number(text(v))
  return Number.isSafeInteger(n) ? n : 0
}

function parseSpec(entry: unknown, depth: number): CommandSpec | null {
  if (!Array.isArray(entry) || entry.length < 6) return null
  const full = text(entry[0])
  if (full === null || full.length === 0 || full.length > 2 * TABLE_LIMITS.maxNameLength + 1) return null
  const lower = full.toLowerCase()
  const bar = depth > 0 ? lower.indexOf('|') : -1
  const name = bar < 0 ? lower : lower.slice(bar + 1)
  if (name.length === 0 || name.length > TABLE_LIMITS.maxNameLength) return null
  const flags: string[] = []
  if (Array.isArray(entry[2])) {
    for (const f of entry[2].slice(0, TABLE_LIMITS.maxFlags)) {
      const t = text(f)
      if (t !== null && t.length <= 64) flags.push(t.toLowerCase())
    }
  }
  const subcommands = new Map<string, CommandSpec>()
  // Subcommands are element 9 on Redis 7 and later; they have no subcommands of their own.
  if (depth === 0 && Array.isArray(entry[9])) {
    for (const sub of entry[9].slice(0, TABLE_LIMITS.maxSubcommands)) {
      const s = parseSpec(sub, 1)
      if (s !== null) subcommands.set(s.name, s)
    }
  }
  return {
    name,
    arity: int(entry[1]),
    flags,
    firstKey: int(entry[3]),
    lastKey: int(entry[4]),
    step: int(entry[5]),
    subcommands,
  }
}

/** Parses a COMMAND or COMMAND INFO reply; entries that are not commands (nil for a name the server lacks) are skipped. */
export function parseCommandTable(reply: unknown): LearnedTable {
  if (!Array.isArray(reply)) throw new Error('COMMAND INFO did not answer a list')
  const specs = new Map<string, CommandSpec>()
  for (const entry of reply.slice(0, TABLE_LIMITS.maxCommands)) {
    const spec = parseSpec(entry, 0)
    if (spec !== null) specs.set(spec.name, spec)
  }
  return tableOf(specs, reply.length)
}

/** A table from specs (tests build them by hand); `count` defaults to their number. */
export function tableOf(specs: ReadonlyMap<string, CommandSpec>, count = specs.size): LearnedTable {
  const h = createHash('sha256')
  let moduleCommands = 0
  for (const name of [...specs.keys()].sort()) {
    const s = specs.get(name)!
    if (s.flags.includes('module')) moduleCommands++
    h.update(`${name}:${s.flags.slice().sort().join(',')};`)
    for (const sub of [...s.subcommands.keys()].sort()) h.update(`${name}|${sub}:${s.subcommands.get(sub)!.flags.slice().sort().join(',')};`)
  }
  return { specs, count, fingerprint: h.digest('hex').slice(0, 16), moduleCommands }
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
