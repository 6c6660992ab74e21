// RESP2 bytes of a reply tree, as a Redis server would send it: for tests that hand a parser of
// raw replies (command-table.ts) what they would otherwise write out by hand; and the reference
// reading of a command table from a reply's values, which that parser must agree with.
// Buffers and strings are bulk strings, numbers and bigints integers, null a nil bulk string, Errors error
// lines, arrays arrays.

import { Buffer } from 'node:buffer'
import { TABLE_LIMITS, tableOf, type CommandSpec, type LearnedTable } from '../../src/routing/command-table.js'

export function respBytes(tree: unknown): Buffer {
  const parts: Buffer[] = []
  const put = (v: unknown): void => {
    if (Array.isArray(v)) {
      parts.push(Buffer.from(`*${v.length}\r\n`))
      for (const x of v) put(x)
    } else if (Buffer.isBuffer(v) || typeof v === 'string') {
      const bytes = Buffer.isBuffer(v) ? v : Buffer.from(v)
      parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'))
    } else if (typeof v === 'number' || typeof v === 'bigint') parts.push(Buffer.from(`:${v}\r\n`))
    else if (v === null) parts.push(Buffer.from('$-1\r\n'))
    else if (v instanceof Error) parts.push(Buffer.from(`-${v.message}\r\n`))
    else throw new Error(`no RESP for ${String(v)}`)
  }
  put(tree)
  return Buffer.concat(parts)
}

/**
 * The table as the gateway read it from the reply's values (RespParser's: Buffers, integers as
 * decimal text) before it read the bytes: the reference the byte reader must agree with.
 */
export function referenceTable(reply: unknown): LearnedTable {
  const text = (v: unknown): string | null => (Buffer.isBuffer(v) ? v.toString('latin1') : typeof v === 'string' ? v : null)
  const int = (v: unknown): number => {
    const n = Number(text(v))
    return Number.isSafeInteger(n) ? n : 0
  }
  const parse = (entry: unknown, depth: number): CommandSpec | null => {
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
    if (depth === 0 && Array.isArray(entry[9])) {
      for (const sub of entry[9].slice(0, TABLE_LIMITS.maxSubcommands)) {
        const x = parse(sub, 1)
        if (x !== null) subcommands.set(x.name, x)
      }
    }
    return { name, arity: int(entry[1]), flags, firstKey: int(entry[3]), lastKey: int(entry[4]), step: int(entry[5]), subcommands }
  }
  if (!Array.isArray(reply)) throw new Error('not a list')
  const specs = new Map<string, CommandSpec>()
  for (const e of reply.slice(0, TABLE_LIMITS.maxCommands)) {
    const x = parse(e, 0)
    if (x !== null) specs.set(x.name, x)
  }
  return tableOf(specs, reply.length)
}
