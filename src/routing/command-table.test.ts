// Learned command tables (command-table.ts) and classification with them (classify.ts): parsing
// COMMAND INFO replies, classes from the server's flags, merging an instance's endpoints (the most
// restrictive class wins), precedence of the explicit tables, and the ACL rules they give. Pure;
// test/integration/module-commands.test.ts runs the same against a real RediSearch.

import { Buffer } from 'node:buffer'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RespParser } from '../upstream/resp-parser.js'
import { commandRules } from './acl-rules.js'
import { classFromFlags, classify, type CommandView } from './classify.js'
import {
  CommandViews,
  learnedEntry,
  mergeTables,
  parseCommandTable,
  replyDigest,
  spec,
  stricter,
  tableOf,
  TABLE_LIMITS,
  type LearnedTable,
} from './command-table.js'
import { referenceTable, respBytes } from '../../test/helpers/resp.js'

const b = (s: string): Buffer => Buffer.from(s)
/** parseCommandTable of a reply tree, through its RESP bytes. */
const parseTree = (tree: unknown): LearnedTable => parseCommandTable(respBytes(tree))

/** One COMMAND INFO entry as the RESP parser hands it over (bulk strings as Buffers, integers as text). */
function entry(name: string, arity: number, flags: string[], keys: [number, number, number] = [1, 1, 1], subs: unknown[] = []): unknown[] {
  return [b(name), String(arity), flags.map(b), ...keys.map(String), [b('@slow')], [], [], subs]
}

function table(...specs: ReturnType<typeof spec>[]): LearnedTable {
  return tableOf(new Map(specs.map((s) => [s.name, s])))
}

function view(...tables: (LearnedTable | null)[]): CommandView {
  const v = mergeTables(tables)
  if (v === null) throw new Error('no view')
  return v
}

const kind = (v: CommandView | null, ...args: (string | Buffer)[]): string => classify(args, v).kind

describe('parseCommandTable', () => {
  it('reads names, arity, flags, key positions and subcommands (Redis 7 shape)', () => {
    const t = parseTree([
      entry('FT.SEARCH', -1, ['readonly', 'module']),
      entry('FT.CREATE', -1, ['write', 'denyoom', 'module']),
      entry('xgroup', -2, [], [0, 0, 0], [entry('xgroup|create', -5, ['write', 'denyoom'], [2, 2, 1]), entry('xgroup|help', 2, ['loading', 'stale'], [0, 0, 0])]),
      null, // COMMAND INFO answers nil for a name the server lacks
    ])
    expect(t.count).toBe(4)
    expect([...t.specs.keys()]).toEqual(['ft.search', 'ft.create', 'xgroup'])
    const s = t.specs.get('ft.search')!
    expect(s).toMatchObject({ name: 'ft.search', arity: -1, flags: ['readonly', 'module'], firstKey: 1, lastKey: 1, step: 1 })
    expect(s.subcommands.size).toBe(0)
    const x = t.specs.get('xgroup')!
    expect([...x.subcommands.keys()]).toEqual(['create', 'help'])
    expect(x.subcommands.get('create')).toMatchObject({ arity: -5, flags: ['write', 'denyoom'], firstKey: 2 })
  })

  it('reads Redis 6 entries (no subcommands element)', () => {
    const t = parseTree([[b('get'), 2, [b('readonly'), b('fast')], 1, 1, 1]])
    expect(t.specs.get('get')).toMatchObject({ arity: 2, flags: ['readonly', 'fast'], firstKey: 1 })
  })

  it('skips what is not a command and bounds what a hostile server could send', () => {
    const long = 'x'.repeat(TABLE_LIMITS.maxNameLength + 1)
    const t = parseTree([
      'junk',
      [b('short')],
      entry(long, 1, ['readonly']),
      entry('', 1, ['readonly']),
      entry('ok', 1, Array.from({ length: 500 }, (_, i) => `f${i}`)),
    ])
    expect([...t.specs.keys()]).toEqual(['ok'])
    expect(t.specs.get('ok')!.flags).toHaveLength(TABLE_LIMITS.maxFlags)
    expect(() => parseTree(b('not a list'))).toThrow(/did not answer a list/)
    const many = parseTree(Array.from({ length: TABLE_LIMITS.maxCommands + 5 }, (_, i) => entry(`c${i}`, 1, [])))
    expect(many.specs.size).toBe(TABLE_LIMITS.maxCommands)
  })

  it('fingerprints names, flags and subcommands, not their order', () => {
    const a = parseTree([entry('a', 1, ['readonly', 'fast']), entry('b', 1, ['write'])])
    const same = parseTree([entry('b', 1, ['write']), entry('a', 1, ['fast', 'readonly'])])
    const flagged = parseTree([entry('a', 1, ['write']), entry('b', 1, ['write'])])
    const more = parseTree([entry('a', 1, ['readonly', 'fast']), entry('b', 1, ['write']), entry('c', 1, [])])
    expect(same.fingerprint).toBe(a.fingerprint)
    expect(flagged.fingerprint).not.toBe(a.fingerprint)
    expect(more.fingerprint).not.toBe(a.fingerprint)
  })
})

/** What RespParser makes of `bytes` (one reply). */
function valuesOf(bytes: Buffer): unknown {
  let v: unknown
  const p = new RespParser({ peek: () => ({}), reply: (x) => (v = x), fatal: (e) => { throw e } }, 1 << 30)
  p.execute(bytes)
  return v
}

/** Any reply value (what a hostile or broken server could put anywhere). */
const junk: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.string({ unit: 'binary' }).map((x) => Buffer.from(x, 'latin1')),
    fc.oneof(fc.integer(), fc.constantFrom(0, -0, 2 ** 53), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
    fc.constant(null),
    fc.string({ unit: 'grapheme-ascii' }).map((m) => new Error(m.replace(/[\r\n]/g, ''))),
    fc.array(tie('v'), { maxLength: 4 }),
  ),
})).v
const name = fc.oneof(
  fc.stringMatching(/^[a-zA-Z.|\u00c0-\u00ff]{0,12}$/).map((x) => Buffer.from(x, 'latin1')),
  fc.constantFrom('x'.repeat(64), 'p|' + 'y'.repeat(64), 'z'.repeat(130)).map((x) => Buffer.from(x)),
  junk,
)
const num = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('7', ' 8', '0x10', '1e3', ''), junk)
const flagList = fc.oneof(fc.array(fc.oneof(fc.constantFrom('readonly', 'WRITE', 'fast', 'f'.repeat(65)).map((x) => Buffer.from(x)), junk), { maxLength: 70 }), junk)
const entryOf = (subs: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof(
    fc
      .tuple(name, num, flagList, num, num, num, fc.array(junk, { maxLength: 3 }), subs, fc.array(junk, { maxLength: 2 }))
      .map(([n, a, f, k1, k2, k3, mid, sub, tail]) => [n, a, f, k1, k2, k3, ...mid.concat([null, null, null]).slice(0, 3), sub, ...tail]),
    fc.tuple(name, num, flagList, num, num, num).map((e) => e as unknown[]),
    junk,
  )
const infoReply = fc.array(entryOf(fc.oneof(fc.array(entryOf(junk), { maxLength: 4 }), junk)), { minLength: 1, maxLength: 6 })

describe('parseCommandTable reads the bytes as the values would read', () => {
  it('any COMMAND INFO-shaped reply, with anything anywhere', () => {
    fc.assert(
      fc.property(infoReply, (reply) => {
        const bytes = respBytes(reply)
        expect(parseCommandTable(bytes)).toEqual(referenceTable(valuesOf(bytes)))
      }),
      { numRuns: 2000 },
    )
  })

  it('not a list: an error, nil, a string', () => {
    for (const reply of [new Error('ERR unknown'), null, b('OK'), 5]) expect(() => parseCommandTable(respBytes(reply))).toThrow(/did not answer a list/)
    expect(parseCommandTable(Buffer.from('*0\r\n')).specs.size).toBe(0)
  })
})

/** The reply with its entries, and each entry's subcommands (element 9), in another order (seeded). */
function shuffled(reply: unknown[], seed: number): unknown[] {
  let x = seed >>> 0 || 1
  const mix = <T,>(list: T[]): T[] => {
    const out = list.slice()
    for (let i = out.length - 1; i > 0; i--) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0
      const j = x % (i + 1)
      ;[out[i], out[j]] = [out[j]!, out[i]!]
    }
    return out
  }
  return mix(reply.map((e) => (Array.isArray(e) && Array.isArray(e[9]) ? [...e.slice(0, 9), mix(e[9] as unknown[]), ...e.slice(10)] : e)))
}

/** A table's content, whatever the order it was read in. */
function content(t: LearnedTable): unknown {
  const sorted = (m: ReadonlyMap<string, ReturnType<typeof spec>>): unknown[] =>
    [...m.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((s) => ({ ...s, subcommands: sorted(s.subcommands) }))
  return { count: t.count, fingerprint: t.fingerprint, moduleCommands: t.moduleCommands, specs: sorted(t.specs) }
}

describe('replyDigest: a reply\'s content whatever its order', () => {
  it('any COMMAND INFO-shaped reply: reordered, the same digest; where there is one, the reordered reply reads to the same table', () => {
    fc.assert(
      fc.property(infoReply, fc.integer(), (reply, seed) => {
        const a = respBytes(reply)
        const b = respBytes(shuffled(reply, seed))
        expect(replyDigest(b)).toBe(replyDigest(a))
        if (replyDigest(a) !== null) expect(content(parseCommandTable(b))).toEqual(content(parseCommandTable(a)))
      }),
      { numRuns: 2000 },
    )
  })

  it('well-formed tables (as Redis sends them) have one, and any change of content changes it', () => {
    const reply = [
      entry('get', 2, ['readonly', 'fast']),
      entry('set', -3, ['write', 'denyoom']),
      entry('xgroup', -2, [], [0, 0, 0], [entry('xgroup|create', -5, ['write', 'denyoom'], [2, 2, 1]), entry('xgroup|help', 2, ['loading', 'stale'], [0, 0, 0])]),
    ]
    const d = replyDigest(respBytes(reply))
    expect(d).toMatch(/^[0-9a-f]{64}$/)
    expect(replyDigest(respBytes(shuffled(reply, 7)))).toBe(d)
    const changed = [
      [entry('get', 3, ['readonly', 'fast']), reply[1], reply[2]], // an arity
      [entry('get', 2, ['fast', 'readonly']), reply[1], reply[2]], // the flags' order (it is content)
      [entry('get', 2, ['readonly', 'fast'], [1, 1, 2]), reply[1], reply[2]], // a key step
      [reply[0], reply[1]], // one command fewer
      [reply[0], reply[1], entry('xgroup', -2, [], [0, 0, 0], [entry('xgroup|create', -5, ['write', 'denyoom'], [2, 2, 1])])], // a subcommand fewer
    ]
    for (const c of changed) expect(replyDigest(respBytes(c))).not.toBe(d)
  })

  it('none where the order could change what is read: the same name twice (in any case), more than the limits, entries without a name', () => {
    expect(replyDigest(respBytes([entry('get', 2, ['readonly']), entry('GET', 2, ['write'])]))).toBeNull()
    expect(replyDigest(respBytes([entry('x', -2, [], [0, 0, 0], [entry('x|a', 2, []), entry('x|A', 2, [])])]))).toBeNull()
    expect(replyDigest(respBytes([entry('x', -2, [], [0, 0, 0], Array.from({ length: TABLE_LIMITS.maxSubcommands + 1 }, (_, i) => entry(`x|s${i}`, 2, [])))]))).toBeNull()
    expect(replyDigest(respBytes(Array.from({ length: TABLE_LIMITS.maxCommands + 1 }, (_, i) => entry(`c${i}`, 1, []))))).toBeNull()
    expect(replyDigest(respBytes([entry('get', 2, []), null]))).toBeNull()
    expect(replyDigest(respBytes([[5, b('get')]]))).toBeNull()
    expect(() => replyDigest(respBytes(b('not a list')))).toThrow(/did not answer a list/)
  })
})

describe('classes from the server flags', () => {
  const cls = (flags: string[]): string => {
    const set = new Set(flags)
    return classFromFlags('x.cmd', (f) => set.has(f)).kind
  }

  it.each([
    [['readonly', 'module'], 'read'],
    [['readonly', 'fast'], 'read'],
    [['write', 'denyoom', 'module'], 'write'],
    [[], 'write'], // no data flag: conservative
    [['pubsub', 'loading', 'stale', 'fast'], 'write'], // like PUBLISH
    [['noscript'], 'write'],
    [['admin', 'noscript', 'loading'], 'admin'],
    [['readonly', 'admin'], 'admin'], // admin wins over readonly
    [['write', 'blocking'], 'refused'],
    [['readonly', 'blocking'], 'refused'],
    [['pubsub', 'noscript', 'loading', 'stale'], 'refused'], // like SUBSCRIBE: push mode
  ])('%j -> %s', (flags, expected) => {
    expect(cls(flags)).toBe(expected)
  })

  it('a refused learned command says the gateway refused it, and why', () => {
    const c = learnedEntry(spec('X.WAITFOR', ['readonly', 'blocking'])).cls
    expect(c).toMatchObject({ kind: 'refused', forbiddenBelow: null })
    expect((c as { reason: string }).reason).toMatch(/X\.WAITFOR is a blocking command and would block a connection that other requests share/)
  })

  it('module overrides: FT.CONFIG, FT.DEBUG and JSON.DEBUG are admin-only whatever their flags, subcommands included', () => {
    const v = view(table(spec('ft.config', ['readonly'], [spec('set', ['readonly'])]), spec('ft.debug', ['readonly']), spec('json.debug', ['readonly'])))
    expect(kind(v, 'FT.CONFIG', 'SET', 'TIMEOUT', '1')).toBe('admin')
    expect(kind(v, 'FT.DEBUG')).toBe('admin')
    expect(kind(v, 'json.debug', 'memory', 'k')).toBe('admin')
  })
})

describe('classify with a learned view', () => {
  const redisearch = table(
    spec('ft.search', ['readonly', 'module']),
    spec('ft.create', ['write', 'denyoom', 'module']),
    spec('ft.info', ['readonly', 'module']),
    spec('x.admin', ['admin', 'module']),
    spec('x.group', [], [spec('read', ['readonly']), spec('write', ['write']), spec('kill', ['admin'])]),
  )
  const v = view(redisearch)

  it('module commands: unknown without a view, classed by their flags with one, in any case', () => {
    expect(kind(null, 'FT.SEARCH', 'idx', '*')).toBe('unknown')
    expect(kind(v, 'FT.SEARCH', 'idx', '*')).toBe('read')
    expect(kind(v, 'ft.search', 'idx', '*')).toBe('read')
    expect(kind(v, 'Ft.Search', 'idx', '*')).toBe('read')
    expect(kind(v, b('FT.SEARCH'), 'idx')).toBe('read')
    expect(kind(v, 'FT.CREATE', 'idx', 'SCHEMA', 't', 'TEXT')).toBe('write')
    expect(kind(v, 'X.ADMIN')).toBe('admin')
    expect(kind(v, 'FT.NOPE')).toBe('unknown')
  })

  it('learned subcommands decide, an unlisted or missing one falls back to the command', () => {
    expect(kind(v, 'X.GROUP', 'READ')).toBe('read')
    expect(kind(v, 'x.group', 'write')).toBe('write')
    expect(kind(v, 'x.group', 'kill')).toBe('admin')
    expect(kind(v, 'x.group', 'other')).toBe('write')
    expect(kind(v, 'x.group')).toBe('write')
  })

  it('the explicit tables stay overrides whatever the server flags', () => {
    const liar = view(
      table(
        spec('flushall', ['readonly']),
        spec('keys', ['readonly']),
        spec('multi', ['readonly']),
        spec('blpop', ['readonly']),
        spec('ping', ['write']),
        spec('script', ['readonly'], [spec('flush', ['readonly']), spec('debug', ['readonly'])]),
        spec('client', [], [spec('reply', ['readonly'])]),
        spec('xread', ['readonly', 'blocking']),
      ),
    )
    expect(kind(liar, 'FLUSHALL')).toBe('admin')
    expect(kind(liar, 'KEYS', '*')).toBe('admin')
    expect(kind(liar, 'MULTI')).toBe('refused')
    expect(kind(liar, 'BLPOP', 'k', '0')).toBe('refused')
    expect(kind(liar, 'PING')).toBe('read')
    expect(kind(liar, 'SCRIPT', 'FLUSH')).toBe('admin')
    expect(kind(liar, 'SCRIPT', 'DEBUG', 'YES')).toBe('refused')
    expect(kind(liar, 'CLIENT', 'REPLY', 'OFF')).toBe('refused')
    expect(kind(liar, 'XREAD', 'STREAMS', 's', '0')).toBe('read')
    expect(kind(liar, 'XREAD', 'BLOCK', '0', 'STREAMS', 's', '0')).toBe('refused')
  })

  it('for other known commands the server flags replace @ioredis/commands; a name the server lacks keeps them', () => {
    const v2 = view(table(spec('get', ['write']), spec('set', ['write'])))
    expect(kind(null, 'GET', 'k')).toBe('read')
    expect(kind(v2, 'GET', 'k')).toBe('write')
    expect(kind(v2, 'HGET', 'h', 'f')).toBe('read') // not in this server's table: as before
  })

  it('returns the same objects for known names (no allocation on the hot path)', () => {
    expect(classify(['FT.SEARCH', 'i'], v)).toBe(classify(['ft.search', 'j'], v))
    expect(classify(['GET', 'k'], v)).toBe(classify(['get', 'x'], null))
  })

  it('Upstash-only SEARCH.* without a backend that has it: refused by the gateway, naming itself', () => {
    const c = classify(['SEARCH.QUERY', 'idx', 'x'], v)
    expect(c.kind).toBe('refused')
    expect((c as { reason: string }).reason).toMatch(/Upstash-only command that this gateway's Redis backends do not have/)
    expect(kind(view(table(spec('search.query', ['readonly']))), 'SEARCH.QUERY', 'idx')).toBe('read')
  })
})

describe('merging the endpoints of an instance', () => {
  it('union of commands; where flags disagree the most restrictive class wins (admin > write > read)', () => {
    const primary = table(spec('ft.search', ['readonly']), spec('ft.create', ['write']), spec('only.here', ['readonly']), spec('m.x', ['write']))
    const replica = table(spec('ft.search', ['write']), spec('ft.create', ['admin']), spec('only.there', ['write']), spec('m.x', ['readonly']))
    for (const v of [view(primary, replica), view(replica, primary), view(primary, null, replica)]) {
      expect(kind(v, 'FT.SEARCH')).toBe('write')
      expect(kind(v, 'FT.CREATE')).toBe('admin')
      expect(kind(v, 'ONLY.HERE')).toBe('read')
      expect(kind(v, 'ONLY.THERE')).toBe('write')
      expect(kind(v, 'M.X')).toBe('write')
    }
    expect(mergeTables([null, null])).toBeNull()
    expect(mergeTables([])).toBeNull()
  })

  it('refused beats everything, subcommand by subcommand', () => {
    const a = table(spec('m.c', ['readonly'], [spec('a', ['readonly']), spec('b', ['readonly'])]))
    const c = table(spec('m.c', ['readonly', 'blocking'], [spec('a', ['write']), spec('c', ['admin'])]))
    const v = view(a, c)
    expect(kind(v, 'M.C')).toBe('refused')
    expect(kind(v, 'M.C', 'A')).toBe('write')
    expect(kind(v, 'M.C', 'B')).toBe('read')
    expect(kind(v, 'M.C', 'C')).toBe('admin')
  })

  it('stricter(): read < write < admin < refused', () => {
    const [r, w, a, x] = ['readonly', 'write', 'admin', 'blocking'].map((f) => learnedEntry(spec('n', [f])).cls)
    expect(stricter(r!, w!)).toBe(w)
    expect(stricter(w!, r!)).toBe(w)
    expect(stricter(a!, w!)).toBe(a)
    expect(stricter(a!, x!)).toBe(x)
  })

  it('instanceView caches per route and rebuilds when an endpoint learned a new table', () => {
    const views = new CommandViews()
    const client = { commands: table(spec('ft.search', ['readonly'])) as LearnedTable | null }
    const endpoints = [{ pooled: { client } }]
    const route = {}
    const v1 = views.instanceView(route, endpoints)
    expect(kind(v1, 'FT.SEARCH')).toBe('read')
    expect(views.instanceView(route, endpoints)).toBe(v1)
    // Another gateway's cache is its own.
    expect(new CommandViews().instanceView(route, endpoints)).not.toBe(v1)
    client.commands = table(spec('ft.search', ['write']))
    const v2 = views.instanceView(route, endpoints)
    expect(v2).not.toBe(v1)
    expect(kind(v2, 'FT.SEARCH')).toBe('write')
    expect(views.instanceView({}, [{ pooled: { client: { commands: null } } }])).toBeNull()
  })

  it('endpoints with equal tables share one view, built once per table', () => {
    const views = new CommandViews()
    const a = table(spec('ft.search', ['readonly']))
    const same = table(spec('ft.search', ['readonly']))
    expect(views.merge([a])).toBe(views.merge([a, same, null]))
    expect(mergeTables([a, same, null])).toEqual(views.merge([a]))
  })
})

describe('ACL rules with learned commands', () => {
  const t = table(
    spec('get', ['readonly', 'fast']),
    spec('set', ['write']),
    spec('ft.search', ['readonly', 'module']),
    spec('ft.create', ['write', 'denyoom', 'module']),
    spec('ft.config', ['readonly']),
    spec('m.block', ['readonly', 'blocking']),
    spec('m.grp', [], [spec('peek', ['readonly']), spec('push', ['write']), spec('kill', ['admin'])]),
  )
  const v = view(t)
  const server = { names: [...t.specs.keys()], subcommands: new Map([['m.grp', ['peek', 'push', 'kill']]]) }

  it('read: readonly module commands, read subcommands only; never FT.CREATE, overrides, blocking', () => {
    expect(commandRules(server, 'read', v)).toEqual(['-@all', '+ft.search', '+get', '+m.grp|peek'])
  })

  it('write: reads and writes, minus admin subcommands', () => {
    expect(commandRules(server, 'write', v)).toEqual(['-@all', '+ft.create', '+ft.search', '+get', '+m.grp', '-m.grp|kill', '+set'])
  })

  it('without a view, names only the server lists and @ioredis/commands knows (as before)', () => {
    expect(commandRules(server, 'write')).toEqual(['-@all', '+get', '+set'])
  })
})
