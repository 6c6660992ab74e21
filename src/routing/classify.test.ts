// Tests for command classification: the explicit tables, row by row, plus properties over the whole
// @ioredis/commands table so a new Redis release cannot silently change what is a read.

import { createRequire } from 'node:module'
import { hasFlag, list } from '@ioredis/commands'
import { describe, expect, it } from 'vitest'
import { ADMIN, EXPLICIT_READ, REFUSED, admission, allows, classify, commandName, isWriteClass, requiredAccess, unknownCommandMessage, type CommandClass } from './classify.js'
import type { Access } from '../core/identity.js'

type Kind = CommandClass['kind']
const kind = (...args: (string | Buffer)[]): Kind => classify(args).kind

// Subcommand flags exist only in the package's JSON, not in its public API; the production code
// does not depend on that file, the tests use it to catch drift of the explicit container tables.
interface Meta {
  readonly flags: readonly string[]
  readonly subcommands?: Readonly<Record<string, Meta>>
}
const META = createRequire(import.meta.url)('@ioredis/commands/built/commands.json') as Readonly<
  Record<string, Meta>
>

const BASE_ADMIN = [
  'FLUSHALL', 'FLUSHDB', 'CONFIG', 'DEBUG', 'SHUTDOWN', 'REPLICAOF', 'SLAVEOF', 'FAILOVER', 'ACL',
  'MODULE', 'SAVE', 'BGSAVE', 'BGREWRITEAOF', 'CLIENT', 'CLUSTER', 'MIGRATE', 'KEYS',
]
const EXTRA_ADMIN = ['SWAPDB', 'LATENCY', 'SLOWLOG', 'HOTKEYS', 'BACKUP', 'PFDEBUG', 'PFSELFTEST']
const PRIVATE_CONNECTION = ['MONITOR', 'SYNC', 'PSYNC', 'REPLCONF']
const TRANSACTION = ['WATCH', 'UNWATCH', 'MULTI', 'EXEC', 'DISCARD']
const CONNECTION_STATE = ['SELECT', 'AUTH', 'HELLO', 'QUIT', 'RESET', 'READONLY', 'READWRITE', 'ASKING']
const SUBSCRIBE = ['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE', 'UNSUBSCRIBE', 'PUNSUBSCRIBE', 'SUNSUBSCRIBE']
const BLOCKING = ['BLPOP', 'BRPOP', 'BLMOVE', 'BZPOPMIN', 'BZPOPMAX', 'BLMPOP', 'BZMPOP', 'BRPOPLPUSH', 'WAIT', 'WAITAOF']

function expectRefused(args: (string | Buffer)[], pattern: RegExp, forbiddenBelow: Access | null = null): void {
  const c = classify(args)
  expect(c.kind, String(args[0])).toBe('refused')
  if (c.kind !== 'refused') return
  expect(c.reason).toMatch(pattern)
  expect(c.forbiddenBelow).toBe(forbiddenBelow)
}

describe('classify: the explicit tables (admin, refused, blocking, subcommands)', () => {
  it.each(BASE_ADMIN.concat(EXTRA_ADMIN))('%s is admin', (name) => {
    expect(kind(name)).toBe('admin')
    expect(kind(name.toLowerCase(), 'x')).toBe('admin')
  })

  it.each([
    ['SCRIPT', 'FLUSH'], ['SCRIPT', 'KILL'],
    ['FUNCTION', 'FLUSH'], ['FUNCTION', 'DELETE'], ['FUNCTION', 'RESTORE'], ['FUNCTION', 'KILL'],
    ['CLIENT', 'LIST'], ['CLIENT', 'KILL'], ['CLIENT', 'PAUSE'], ['CLIENT', 'ID'], ['CLIENT', 'NOPE'],
    ['CONFIG', 'GET'], ['CONFIG', 'SET'], ['ACL', 'WHOAMI'], ['CLUSTER', 'INFO'], ['SLOWLOG', 'GET'],
  ])('%s %s is admin', (cmd, sub) => {
    expect(kind(cmd, sub)).toBe('admin')
    expect(kind(cmd.toLowerCase(), sub.toLowerCase())).toBe('admin')
  })

  it.each(PRIVATE_CONNECTION)('%s: 403 below admin, 400 (private connection) for admins', (name) => {
    expectRefused([name], /take over a connection.*connect to Redis directly/, 'admin')
    const c = classify([name])
    expect(admission(c, 'read')).toBe('forbidden')
    expect(admission(c, 'write')).toBe('forbidden')
    expect(admission(c, 'admin')).toBe('refused')
  })

  it.each(['REPLY', 'TRACKING', 'CACHING', 'NO-EVICT', 'NO-TOUCH', 'SETNAME', 'SETINFO'])(
    'CLIENT %s breaks the shared connection: refused, 403 below admin',
    (sub) => {
      expectRefused(['CLIENT', sub, 'OFF'], new RegExp(`^CLIENT ${sub} would .* connection that other requests share`), 'admin')
      expectRefused(['client', sub.toLowerCase()], /CLIENT/, 'admin')
    },
  )

  it.each(TRANSACTION)('%s is refused, pointing at /multi-exec', (name) => {
    expectRefused([name], /\/multi-exec/)
  })

  it.each(CONNECTION_STATE)('%s is refused (connection state)', (name) => {
    expectRefused([name, 'x'], new RegExp(`^${name}`))
  })

  it.each([
    ['SUBSCRIBE', /\/subscribe\/\{channel\}.*text\/event-stream/],
    ['PSUBSCRIBE', /\/psubscribe\/\{pattern\}.*text\/event-stream/],
    ['SSUBSCRIBE', /do not receive SPUBLISH/],
    ['UNSUBSCRIBE', /ends when the client disconnects/],
    ['PUNSUBSCRIBE', /ends when the client disconnects/],
    ['SUNSUBSCRIBE', /ends when the client disconnects/],
  ] as const)('%s is refused, pointing at SSE', (name, pattern) => {
    expect(SUBSCRIBE).toContain(name)
    expectRefused([name, 'ch'], pattern)
  })

  it.each(BLOCKING)('%s is refused as blocking', (name) => {
    expectRefused([name, 'k', '0'], new RegExp(`^${name} would block a connection`))
  })

  it('uses the blocking flag as a safety net for blocking commands not in the explicit list', () => {
    const extra = list.filter(
      (n) => hasFlag(n, 'blocking') && !BLOCKING.includes(n.toUpperCase()) && n !== 'xread' && n !== 'xreadgroup',
    )
    expect(extra).toContain('blmovem') // present in @ioredis/commands 2.1; keeps the net tested
    for (const n of extra) expectRefused([n, 'k'], /is a blocking command/)
  })

  it.each([
    [['XREAD', 'STREAMS', 's', '0'], 'read'],
    [['XREAD', 'COUNT', '10', 'STREAMS', 's', '0'], 'read'],
    [['XREAD', 'STREAMS', 'block', 'BLOCK', '0', '0'], 'read'], // keys named like keywords
    [['XREAD', 'COUNT', '1', 'BLOCK', '0', 'STREAMS', 's', '$'], 'refused'],
    [['xread', 'block', '100', 'streams', 's', '$'], 'refused'],
    [['XrEaD', 'BlOcK', '0', 'STREAMS', 's', '$'], 'refused'],
    [[Buffer.from('XREAD'), Buffer.from('block'), Buffer.from('0'), Buffer.from('STREAMS'), Buffer.from('s'), Buffer.from('$')], 'refused'],
    [['XREAD', 'BLOCK'], 'refused'],
    [['XREAD', 'UNKNOWNOPT', 'STREAMS', 'BLOCK', 'x', '0'], 'refused'], // unknown option: conservative
    [['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '>'], 'write'],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '5', 'NOACK', 'STREAMS', 's', '>'], 'write'],
    [['XREADGROUP', 'GROUP', 'block', 'block', 'STREAMS', 's', '>'], 'write'],
    [['XREADGROUP', 'GROUP', 'streams', 'c', 'BLOCK', '0', 'STREAMS', 's', '>'], 'refused'],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'NOACK', 'BLOCK', '10', 'STREAMS', 's', '>'], 'refused'],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'CLAIM', '100', 'BLOCK', '10', 'STREAMS', 's', '>'], 'refused'],
    [['XREADGROUP', 'GROUP', 'g', 'c', 'CLAIM', '100', 'STREAMS', 's', '>'], 'write'],
  ] as const)('%j -> %s', (args, expected) => {
    expect(kind(...args)).toBe(expected)
  })

  it.each([
    [['SCAN', '0'], 'read'],
    [['SCAN', '0', 'MATCH', 'k*', 'COUNT', '10', 'TYPE', 'string'], 'read'],
    [['SCAN', '0', 'MATCH', 'withtype'], 'read'], // a pattern spelled like the option
    [['SCAN', '0', 'TYPE', 'WITHTYPE'], 'read'],
    [['SCAN', '0', 'WITHTYPE'], 'refused'],
    [['scan', '0', 'match', 'k*', 'withType'], 'refused'],
    [['SCAN', Buffer.from('0'), Buffer.from('WITHTYPE')], 'refused'],
  ] as const)('%j -> %s (WITHTYPE is Upstash-only)', (args, expected) => {
    expect(kind(...(args as unknown as string[]))).toBe(expected)
  })

  it('says WITHTYPE and VECTOR.* are Upstash-only, naming the gateway', () => {
    expectRefused(['SCAN', '0', 'WITHTYPE'], /WITHTYPE option is an Upstash-only extension/)
    expectRefused(['VECTOR.QUERY', 'idx'], /VECTOR\.QUERY is an Upstash-only command/)
  })

  it('names the alternative for XREAD with BLOCK', () => {
    expectRefused(['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'], /XREAD with BLOCK.*XREAD without BLOCK/)
    expectRefused(['XREADGROUP', 'GROUP', 'g', 'c', 'BLOCK', '0', 'STREAMS', 's', '>'], /XREADGROUP without BLOCK/)
  })

  it.each([
    [['EVAL', 'return 1', '0'], 'write'],
    [['EVALSHA', 'abc', '0'], 'write'],
    [['FCALL', 'f', '0'], 'write'],
    [['EVAL_RO', 'return 1', '0'], 'read'],
    [['EVALSHA_RO', 'abc', '0'], 'read'],
    [['FCALL_RO', 'f', '0'], 'read'],
  ] as const)('eval family: %j -> %s', (args, expected) => {
    expect(kind(...args)).toBe(expected)
  })

  it('the _RO script commands carry readonly in @ioredis/commands, the others do not', () => {
    for (const n of ['eval_ro', 'evalsha_ro', 'fcall_ro']) expect(hasFlag(n, 'readonly')).toBe(true)
    for (const n of ['eval', 'evalsha', 'fcall']) expect(hasFlag(n, 'readonly')).toBe(false)
  })

  it.each([
    [['OBJECT', 'ENCODING', 'k'], 'read'],
    [['OBJECT', 'FREQ', 'k'], 'read'],
    [['object', 'whatever'], 'read'],
    [['OBJECT'], 'write'],
    [['MEMORY', 'USAGE', 'k'], 'read'],
    [['MEMORY', 'STATS'], 'write'],
    [['MEMORY', 'PURGE'], 'write'],
    [['MEMORY'], 'write'],
    [['XINFO', 'STREAM', 's'], 'read'],
    [['XINFO', 'GROUPS', 's'], 'read'],
    [['PUBSUB', 'CHANNELS'], 'read'],
    [['PUBSUB', 'NUMSUB', 'c'], 'read'],
    [['COMMAND'], 'read'],
    [['COMMAND', 'COUNT'], 'read'],
    [['COMMAND', 'DOCS', 'get'], 'read'],
    [['COMMAND', 'INFO', 'get'], 'read'],
    [['COMMAND', 'LIST'], 'read'],
    [['COMMAND', 'GETKEYS', 'get', 'k'], 'read'],
    [['COMMAND', 'NEWTHING'], 'write'],
    [['SCRIPT', 'EXISTS', 'abc'], 'read'],
    [['SCRIPT', 'LOAD', 'return 1'], 'write'],
    [['SCRIPT', 'FLUSH'], 'admin'],
    [['SCRIPT', 'KILL'], 'admin'],
    [['SCRIPT', 'HELP'], 'write'],
    [['SCRIPT'], 'write'],
    [['SCRIPT', 'DEBUG', 'YES'], 'refused'],
    [['FUNCTION', 'LIST'], 'read'],
    [['FUNCTION', 'DUMP'], 'read'],
    [['FUNCTION', 'STATS'], 'read'],
    [['FUNCTION', 'LOAD', 'code'], 'write'],
    [['FUNCTION', 'FLUSH'], 'admin'],
    [['FUNCTION', 'DELETE', 'lib'], 'admin'],
    [['FUNCTION', 'RESTORE', 'x'], 'admin'],
    [['FUNCTION', 'KILL'], 'admin'],
    [['FUNCTION'], 'write'],
    [['XGROUP', 'CREATE', 's', 'g', '$'], 'write'],
    [['CLIENT'], 'admin'],
  ] as const)('container %j -> %s', (args, expected) => {
    expect(kind(...args)).toBe(expected)
  })

  it('SCRIPT DEBUG is refused for everyone', () => {
    const c = classify(['SCRIPT', 'DEBUG', 'YES'])
    expectRefused(['SCRIPT', 'DEBUG', 'YES'], /Lua debugger/)
    expect(admission(c, 'read')).toBe('refused')
    expect(admission(c, 'admin')).toBe('refused')
  })

  it.each([
    'GET', 'MGET', 'HGETALL', 'ZRANGE', 'XRANGE', 'XREVRANGE', 'GEOSEARCH', 'SORT_RO', 'BITFIELD_RO',
    'GEORADIUS_RO', 'SCAN', 'EXISTS', 'TTL', 'DBSIZE', 'STRLEN', 'LRANGE', 'SMEMBERS', 'PFCOUNT',
    'PING', 'ECHO', 'TIME',
  ])('%s is read', (name) => {
    expect(kind(name, 'k')).toBe('read')
  })

  it.each([
    'SET', 'DEL', 'XADD', 'PUBLISH', 'SPUBLISH', 'GEOADD', 'SORT', 'BITFIELD', 'GEORADIUS',
    'GEORADIUSBYMEMBER', 'INCR', 'EXPIRE', 'LPOP', 'ZPOPMIN', 'LMOVE', 'XACK', 'XREADGROUP',
    'INFO', 'ROLE', 'LASTSAVE',
  ])('%s is write', (name) => {
    expect(kind(name, 'k', 'v')).toBe('write')
  })

  it('SORT has the write flag, SORT_RO readonly', () => {
    expect(hasFlag('sort', 'write')).toBe(true)
    expect(hasFlag('sort_ro', 'readonly')).toBe(true)
  })
})

describe('classify: names', () => {
  it('is case-insensitive for commands and subcommands', () => {
    for (const n of ['get', 'GET', 'Get', 'gEt']) expect(kind(n, 'k')).toBe('read')
    for (const n of ['flushall', 'FLUSHALL', 'FlushAll']) expect(kind(n)).toBe('admin')
    expect(kind('Script', 'Exists', 'x')).toBe('read')
    expect(kind('sCrIpT', 'fLuSh')).toBe('admin')
  })

  it('accepts Buffer names and subcommands', () => {
    expect(kind(Buffer.from('get'), Buffer.from('k'))).toBe('read')
    expect(kind(Buffer.from('SeT'), 'k', 'v')).toBe('write')
    expect(kind(Buffer.from('FUNCTION'), Buffer.from('delete'), 'lib')).toBe('admin')
    expect(kind(Buffer.from('multi'))).toBe('refused')
    expect(kind(Buffer.from('nope'))).toBe('unknown')
  })

  it.each([
    ['not a command', 'FOO'],
    ['empty', ''],
    ['trailing space', 'GET '],
    ['Kelvin sign, lower-cases to "k" in JS; Redis compares ASCII only', '\u212AEYS'],
    ['dotted capital I', 'g\u0130t'],
    ['10k characters', 'x'.repeat(10_000)],
  ])('unknown: %s', (_label, name) => {
    expect(kind(name)).toBe('unknown')
  })

  it('is robust to odd input: empty args, non-string names, huge or non-ASCII Buffers', () => {
    expect(classify([]).kind).toBe('unknown')
    expect(classify([42 as unknown as string]).kind).toBe('unknown')
    expect(classify([null as unknown as string]).kind).toBe('unknown')
    expect(classify([Buffer.alloc(1 << 20, 0x61)]).kind).toBe('unknown')
    expect(classify([Buffer.from([0xc4, 0xb0, 0x47])]).kind).toBe('unknown')
    expect(kind('SCRIPT', 42 as unknown as string)).toBe('write')
  })

  it('returns shared frozen objects', () => {
    expect(classify(['get', 'a'])).toBe(classify(['GET', 'b']))
    expect(classify(['set', 'a'])).toBe(classify(['Set', 'b']))
    expect(classify(['flushall'])).toBe(classify(['keys', '*']))
    expect(classify(['nope'])).toBe(classify(['other']))
    expect(classify(['blpop', 'k', '0'])).toBe(classify(['BLPOP', 'j', '1']))
    for (const args of [['get'], ['set'], ['flushall'], ['nope'], ['multi']]) {
      expect(Object.isFrozen(classify(args))).toBe(true)
    }
  })

  it('commandName: lower-case, the table string for known names', () => {
    expect(commandName(['GET', 'k'])).toBe('get')
    expect(commandName([Buffer.from('HgetAll')])).toBe('hgetall')
    expect(commandName(['Script', 'flush'])).toBe('script')
    expect(commandName(['NoSuchCmd'])).toBe('nosuchcmd')
    expect(commandName(['\u212AEYS'])).toBe('\u212Aeys')
    expect(commandName(['X'.repeat(1000)])).toHaveLength(128)
    expect(commandName([])).toBe('')
  })

  it('unknownCommandMessage uses Redis wording and the name as sent', () => {
    expect(unknownCommandMessage(['FooBar', 'x'])).toBe("ERR unknown command 'FooBar'")
    expect(unknownCommandMessage([Buffer.from('nope')])).toBe("ERR unknown command 'nope'")
    expect(unknownCommandMessage(['y'.repeat(500)])).toBe(`ERR unknown command '${'y'.repeat(128)}'`)
  })
})

describe('access helpers', () => {
  const levels: Access[] = ['read', 'write', 'admin']

  it('allows: read < write < admin', () => {
    const got = levels.map((t) => levels.map((n) => allows(t, n)))
    expect(got).toEqual([
      [true, false, false],
      [true, true, false],
      [true, true, true],
    ])
  })

  it('requiredAccess and isWriteClass', () => {
    expect(requiredAccess(classify(['get']))).toBe('read')
    expect(requiredAccess(classify(['set']))).toBe('write')
    expect(requiredAccess(classify(['flushdb']))).toBe('admin')
    expect(requiredAccess(classify(['multi']))).toBeNull()
    expect(requiredAccess(classify(['monitor']))).toBeNull()
    expect(requiredAccess(classify(['nope']))).toBeNull()
    expect(isWriteClass(classify(['get']))).toBe(false)
    expect(isWriteClass(classify(['set']))).toBe(true)
    expect(isWriteClass(classify(['keys', '*']))).toBe(true) // admin goes to the primary
    expect(isWriteClass(classify(['multi']))).toBe(false)
    expect(isWriteClass(classify(['nope']))).toBe(false)
  })

  it.each([
    [['GET', 'k'], ['allow', 'allow', 'allow']],
    [['SET', 'k', 'v'], ['forbidden', 'allow', 'allow']],
    [['FLUSHALL'], ['forbidden', 'forbidden', 'allow']],
    [['MULTI'], ['refused', 'refused', 'refused']],
    [['BLPOP', 'k', '0'], ['refused', 'refused', 'refused']],
    [['MONITOR'], ['forbidden', 'forbidden', 'refused']],
    [['CLIENT', 'REPLY', 'OFF'], ['forbidden', 'forbidden', 'refused']],
    [['NOPE'], ['unknown', 'unknown', 'unknown']],
  ] as const)('admission %j for read/write/admin tokens', (args, expected) => {
    const c = classify(args)
    expect(levels.map((t) => admission(c, t))).toEqual(expected)
  })
})

describe('properties over the whole @ioredis/commands table', () => {
  // Names whose class an explicit table decides, independent of the readonly flag.
  const explicitReads = new Set(['ping', 'echo', 'time', 'command'])
  const readonlyButAdmin = new Set(['keys'])

  it('every explicitly named command is known to @ioredis/commands', () => {
    const named = [...BASE_ADMIN, ...EXTRA_ADMIN, ...PRIVATE_CONNECTION, ...TRANSACTION, ...CONNECTION_STATE,
      ...SUBSCRIBE, ...BLOCKING, 'PING', 'ECHO', 'TIME', 'OBJECT', 'MEMORY', 'XINFO', 'PUBSUB', 'COMMAND',
      'SCRIPT', 'FUNCTION', 'XREAD', 'XREADGROUP']
    for (const n of named) expect(list, n).toContain(n.toLowerCase())
  })

  it('every command classifies without throwing, with and without arguments', () => {
    for (const name of list) {
      for (const args of [[name], [name, 'x'], [name, 'x', 'y', 'z'], [name.toUpperCase(), Buffer.from('a')]]) {
        expect(() => classify(args)).not.toThrow()
        expect(['read', 'write', 'admin', 'refused']).toContain(classify(args).kind)
      }
      expect(commandName([name.toUpperCase()])).toBe(name)
    }
  })

  it('read <=> readonly flag, modulo the explicit tables', () => {
    for (const name of list) {
      const c = classify([name])
      if (hasFlag(name, 'readonly')) {
        expect(c.kind, name).toBe(readonlyButAdmin.has(name) ? 'admin' : 'read')
      } else if (explicitReads.has(name)) {
        expect(c.kind, name).toBe('read')
      } else {
        expect(c.kind, name).not.toBe('read')
      }
    }
  })

  it('a command without readonly, admin, blocking or an explicit entry is a write', () => {
    const explicit = new Set(
      [...BASE_ADMIN, ...EXTRA_ADMIN, ...PRIVATE_CONNECTION, ...TRANSACTION, ...CONNECTION_STATE, ...SUBSCRIBE,
        ...BLOCKING, 'PING', 'ECHO', 'TIME', 'COMMAND', 'OBJECT', 'MEMORY', 'XINFO', 'PUBSUB', 'SCRIPT',
        'FUNCTION'].map((n) => n.toLowerCase()),
    )
    const plain = list.filter(
      (n) => !explicit.has(n) && !hasFlag(n, 'readonly') && !hasFlag(n, 'admin') && !hasFlag(n, 'blocking'),
    )
    expect(plain.length).toBeGreaterThan(100)
    for (const n of plain) expect(kind(n, 'k'), n).toBe('write')
  })

  it('commands Redis flags admin are admin-only (or refused, 403 below admin)', () => {
    for (const name of list.filter((n) => hasFlag(n, 'admin'))) {
      const c = classify([name])
      expect(admission(c, 'write'), name).toBe('forbidden')
    }
  })

  it('subcommands agree with Redis subcommand flags (drift check of the explicit container tables)', () => {
    for (const [name, meta] of Object.entries(META)) {
      for (const [sub, subMeta] of Object.entries(meta.subcommands ?? {})) {
        const c = classify([name, sub, 'x'])
        const label = `${name} ${sub}`
        if (subMeta.flags.includes('readonly')) expect(c.kind, label).toBe('read')
        if (subMeta.flags.includes('write')) expect(c.kind, label).not.toBe('read')
        if (subMeta.flags.includes('admin')) expect(admission(c, 'write'), label).toBe('forbidden')
        if (subMeta.flags.includes('blocking')) expect(c.kind, label).toBe('refused')
      }
    }
  })
})

describe('exported lists (README)', () => {
  it('ADMIN lists the usual admin commands and the extensions', () => {
    for (const n of [...BASE_ADMIN.filter((n) => n !== 'CLIENT'), ...EXTRA_ADMIN]) expect(ADMIN).toContain(n)
    for (const n of ['CLIENT', 'CLIENT *', 'SCRIPT FLUSH', 'SCRIPT KILL', 'FUNCTION FLUSH', 'FUNCTION DELETE',
      'FUNCTION RESTORE', 'FUNCTION KILL']) {
      expect(ADMIN).toContain(n)
    }
    expect(ADMIN).not.toContain('MONITOR')
  })

  it('REFUSED lists every refused command with a reason', () => {
    const names = REFUSED.map((r) => r.command)
    for (const n of [...PRIVATE_CONNECTION, ...TRANSACTION, ...CONNECTION_STATE, ...SUBSCRIBE, ...BLOCKING,
      'XREAD with BLOCK', 'XREADGROUP with BLOCK', 'SCAN with WITHTYPE', 'CLIENT REPLY', 'SCRIPT DEBUG', 'BLMOVEM']) {
      expect(names).toContain(n)
    }
    for (const r of REFUSED) expect(r.reason.length).toBeGreaterThan(20)
    expect(REFUSED.find((r) => r.command === 'MONITOR')?.forbiddenBelow).toBe('admin')
    expect(REFUSED.find((r) => r.command === 'MULTI')?.forbiddenBelow).toBeNull()
  })

  it('EXPLICIT_READ lists the reads not flagged readonly', () => {
    for (const n of ['PING', 'ECHO', 'TIME', 'COMMAND', 'OBJECT *', 'MEMORY USAGE', 'XINFO *', 'PUBSUB *',
      'SCRIPT EXISTS', 'FUNCTION LIST', 'FUNCTION DUMP', 'FUNCTION STATS']) {
      expect(EXPLICIT_READ).toContain(n)
    }
    expect(EXPLICIT_READ).not.toContain('GET')
  })
})
