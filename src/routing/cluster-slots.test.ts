// Cluster slots (cluster-slots.ts): key slots, key positions, a command's slot, and topology from
// CLUSTER SHARDS / CLUSTER SLOTS. Unit tests with hand-made and hostile replies, then the same
// against real redis-server processes in cluster mode: CLUSTER KEYSLOT and COMMAND GETKEYS as the
// reference, and the real CLUSTER SHARDS / CLUSTER SLOTS replies of a single node and of a
// three-node cluster (two shards, one replica) as the RESP connection hands them over.

import { Buffer } from 'node:buffer'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BadRequestError } from '../core/errors.js'
import type { Arg } from '../core/command.js'
import type { RawReply } from '../core/reply.js'
import { RespConnection } from '../upstream/resp-connection.js'
import { freePort } from '../../test/helpers/ports.js'
import { startRedis, type RedisServer } from '../../test/helpers/redis-server.js'
import { waitFor } from '../../test/helpers/wait.js'
import {
  CLUSTER_LIMITS,
  ClusterReplyError,
  commandKeys,
  CROSSSLOT_MESSAGE,
  keySlot,
  keysKnown,
  MOVABLE_KEY_COMMANDS,
  parseClusterShards,
  parseClusterSlots,
  SLOT_COUNT,
  SlotMap,
  slotOfCommand,
  type ClusterNode,
  type CrossSlot,
} from './cluster-slots.js'
import { parseCommandTable, tableOf, type CommandSpec, type LearnedTable } from './command-table.js'
import { respBytes } from '../../test/helpers/resp.js'

const b = (s: string): Buffer => Buffer.from(s)

// ---------------------------------------------------------------------------------------------
// A reference implementation, written from Redis's cluster.c and crc16.c without a table.

function referenceCrc16(bytes: Uint8Array): number {
  let crc = 0
  for (const byte of bytes) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

function referenceSlot(key: Buffer): number {
  let s = -1
  for (let i = 0; i < key.length; i++) {
    if (key[i] === 0x7b) {
      s = i
      break
    }
  }
  if (s === -1) return referenceCrc16(key) & 16383
  let e = -1
  for (let i = s + 1; i < key.length; i++) {
    if (key[i] === 0x7d) {
      e = i
      break
    }
  }
  if (e === -1 || e === s + 1) return referenceCrc16(key) & 16383
  return referenceCrc16(key.subarray(s + 1, e)) & 16383
}

/** Keys with braces anywhere, multi-byte characters and lone surrogates. */
const braceyString = fc
  .array(fc.constantFrom('{', '}', '{}', 'a', 'user:1', 'é', '€', '😀', '\uD800', '\uDC00', '\u0000', ''), { maxLength: 8 })
  .map((parts) => parts.join(''))
const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 16 }), fc.string({ maxLength: 16 }), braceyString)
const anyBuffer = fc
  .array(fc.oneof(fc.constantFrom(0x7b, 0x7d), fc.integer({ min: 0, max: 255 })), { maxLength: 16 })
  .map((bytes) => Buffer.from(bytes))

describe('keySlot', () => {
  it('matches known values', () => {
    // crc16.c's own check value: CRC16("123456789") = 0x31c3.
    expect(keySlot('123456789')).toBe(0x31c3)
    expect(keySlot('foo')).toBe(12182)
    expect(keySlot('bar')).toBe(5061)
    expect(keySlot('')).toBe(0)
    expect(keySlot(Buffer.alloc(0))).toBe(0)
  })

  it('hashes only the hash tag: the first { and the first } after it', () => {
    const tag = keySlot('user1000')
    expect(keySlot('{user1000}.following')).toBe(tag)
    expect(keySlot('{user1000}.followers')).toBe(tag)
    expect(keySlot('x{user1000}y{other}')).toBe(tag)
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'))
    expect(keySlot('foo{bar}{zap}')).toBe(keySlot('bar'))
    expect(keySlot(b('{user1000}.following'))).toBe(tag)
  })

  it('hashes the whole key when the tag is empty or not closed', () => {
    for (const key of ['foo{}{bar}', '{}', '{', '}{', 'a}b{c', 'abc{']) {
      expect(keySlot(key)).toBe(referenceCrc16(b(key)) & 16383)
    }
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar'))
  })

  it('hashes a string as its UTF-8 bytes, lone surrogates as U+FFFD', () => {
    expect(keySlot('é')).toBe(keySlot(Buffer.from([0xc3, 0xa9])))
    expect(keySlot('😀')).toBe(keySlot(Buffer.from([0xf0, 0x9f, 0x98, 0x80])))
    expect(keySlot('\uD800')).toBe(keySlot(Buffer.from([0xef, 0xbf, 0xbd])))
    expect(keySlot('{\uDBFF}x')).toBe(keySlot('\uFFFD'))
    fc.assert(
      fc.property(anyString, (s) => {
        expect(keySlot(s)).toBe(keySlot(Buffer.from(s, 'utf8')))
      }),
      { numRuns: 2_000 },
    )
  })

  it('agrees with the reference implementation on any bytes', () => {
    fc.assert(
      fc.property(anyBuffer, (buf) => {
        expect(keySlot(buf)).toBe(referenceSlot(buf))
      }),
      { numRuns: 2_000 },
    )
  })

  it('stays within 0..16383', () => {
    fc.assert(
      fc.property(anyBuffer, (buf) => {
        const s = keySlot(buf)
        expect(Number.isInteger(s) && s >= 0 && s < SLOT_COUNT).toBe(true)
      }),
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Key positions

function cmdSpec(name: string, firstKey: number, lastKey: number, step: number, flags: string[] = [], subs: CommandSpec[] = []): CommandSpec {
  return { name, arity: -1, flags, firstKey, lastKey, step, subcommands: new Map(subs.map((s) => [s.name, s])) }
}

function learned(...specs: CommandSpec[]): LearnedTable {
  return tableOf(new Map(specs.map((s) => [s.name, s])))
}

function badRequest(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(BadRequestError)
    return (err as Error).message
  }
  throw new Error('did not throw')
}

describe('commandKeys', () => {
  it('finds fixed key ranges from @ioredis/commands when no table is learned', () => {
    expect(commandKeys(['GET', 'k'])).toEqual([1])
    expect(commandKeys(['set', 'k', 'v', 'EX', '10'])).toEqual([1])
    expect(commandKeys(['MGET', 'a', 'b', 'c'])).toEqual([1, 2, 3])
    expect(commandKeys(['MSET', 'a', '1', 'b', '2'])).toEqual([1, 3])
    expect(commandKeys(['RENAME', 'a', 'b'])).toEqual([1, 2])
    expect(commandKeys(['BLPOP', 'a', 'b', '0'])).toEqual([1, 2])
    expect(commandKeys(['OBJECT', 'ENCODING', 'k'])).toEqual([2])
    expect(commandKeys(['XINFO', 'STREAM', 's'])).toEqual([2])
    expect(commandKeys([b('HSET'), b('h'), b('f'), b('v')])).toEqual([1])
  })

  it('has no keys for keyless and unknown commands, and none out of bounds (the node answers the arity error)', () => {
    expect(commandKeys(['PING'])).toEqual([])
    expect(commandKeys(['DBSIZE'])).toEqual([])
    expect(commandKeys(['OBJECT', 'HELP'])).toEqual([])
    expect(commandKeys(['NOSUCHCOMMAND', 'k'])).toEqual([])
    expect(commandKeys([])).toEqual([])
    expect(commandKeys(['GET'])).toEqual([])
    expect(commandKeys(['x'.repeat(100), 'k'])).toEqual([])
  })

  it('uses the learned table (and its subcommands) before @ioredis/commands', () => {
    const t = learned(
      cmdSpec('get', 1, 1, 1),
      cmdSpec('json.mset', 1, -1, 3, ['write', 'module']),
      cmdSpec('object', 0, 0, 0, [], [cmdSpec('encoding', 2, 2, 1), cmdSpec('help', 0, 0, 0)]),
      // Redis 6 style: no subcommands, the container's own range.
      cmdSpec('xinfo', 2, 2, 1),
    )
    expect(commandKeys(['JSON.MSET', 'a', '$', '1', 'b', '$', '2'], t)).toEqual([1, 4])
    expect(commandKeys(['json.mset', 'a', '$', '1'])).toEqual([]) // unknown without the table
    expect(commandKeys(['OBJECT', 'encoding', 'k'], t)).toEqual([2])
    expect(commandKeys(['OBJECT', 'HELP'], t)).toEqual([])
    expect(commandKeys(['OBJECT', 'nosuch', 'k'], t)).toEqual([])
    expect(commandKeys(['XINFO', 'HELP'], t)).toEqual([])
    expect(commandKeys(['XINFO', 'STREAM', 's'], t)).toEqual([2])
    // Not in the table: @ioredis/commands.
    expect(commandKeys(['MGET', 'a', 'b'], t)).toEqual([1, 2])
  })

  it('routes a learned movable-keys command it has no rule for by its legacy range, and says so', () => {
    const t = learned(cmdSpec('mod.multi', 1, 1, 1, ['write', 'module', 'movablekeys']), cmdSpec('mod.none', 0, 0, 0, ['movablekeys']))
    expect(commandKeys(['MOD.MULTI', 'a', 'b'], t)).toEqual([1])
    expect(commandKeys(['MOD.NONE', 'a'], t)).toEqual([])
    expect(keysKnown('mod.multi', t)).toBe(false)
    expect(keysKnown('eval', t)).toBe(true)
    expect(keysKnown('get')).toBe(true)
    expect(keysKnown('sort')).toBe(true)
  })

  it('covers every movable-keys command @ioredis/commands knows', async () => {
    const { list, hasFlag } = await import('@ioredis/commands')
    const movable = list.filter((n) => hasFlag(n, 'movablekeys'))
    expect(movable.filter((n) => !MOVABLE_KEY_COMMANDS.includes(n))).toEqual([])
  })

  it('reads numkeys for scripts, functions and the numkeys families', () => {
    expect(commandKeys(['EVAL', 'return 1', '2', 'a', 'b', 'arg'])).toEqual([3, 4])
    expect(commandKeys(['EVAL', 'return 1', '0', 'arg'])).toEqual([])
    expect(commandKeys(['evalsha_ro', 'abc', b('1'), 'k'])).toEqual([3])
    expect(commandKeys(['FCALL', 'f', '1', 'k', 'arg'])).toEqual([3])
    expect(commandKeys(['ZUNIONSTORE', 'd', '2', 'a', 'b', 'WEIGHTS', '1', '2'])).toEqual([1, 3, 4])
    expect(commandKeys(['ZINTER', '2', 'a', 'b'])).toEqual([2, 3])
    expect(commandKeys(['SINTERCARD', '1', 'a', 'LIMIT', '5'])).toEqual([2])
    expect(commandKeys(['LMPOP', '2', 'a', 'b', 'LEFT'])).toEqual([2, 3])
    expect(commandKeys(['BLMPOP', '0', '1', 'a', 'LEFT'])).toEqual([3])
    expect(commandKeys(['BZMPOP', '1.5', '2', 'a', 'b', 'MIN'])).toEqual([3, 4])
    expect(commandKeys(['MSETEX', '2', 'a', '1', 'b', '2', 'EX', '10'])).toEqual([2, 4])
  })

  it('refuses an invalid numkeys with a BadRequestError that says why', () => {
    expect(badRequest(() => commandKeys(['EVAL', 'return 1']))).toBe('EVAL: numkeys (argument 2) is missing')
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', 'abc']))).toBe('EVAL: numkeys (argument 2) must be an integer, got "abc"')
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '01', 'a']))).toMatch(/must be an integer/)
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '1.0', 'a']))).toMatch(/must be an integer/)
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', ' 1', 'a']))).toMatch(/must be an integer/)
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '-1']))).toBe('EVAL: numkeys (argument 2) must not be negative, got -1')
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '3', 'a', 'b']))).toBe('EVAL: numkeys (argument 2) is 3, more than the 2 arguments after it')
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '1000000000']))).toMatch(/more than the 0 arguments/)
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '99999999999999999999999']))).toMatch(/must be an integer/)
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', Buffer.alloc(10_000, 0x31)]))).toMatch(/must be an integer, got "1{32}\.\.\."/)
    expect(badRequest(() => commandKeys(['ZUNIONSTORE', 'd', '0']))).toBe('ZUNIONSTORE: numkeys (argument 2) must be at least 1, got 0')
    expect(badRequest(() => commandKeys(['ZINTER', 'x', 'a']))).toMatch(/^ZINTER: numkeys \(argument 1\) must be an integer/)
    expect(badRequest(() => commandKeys(['MSETEX', '2', 'a', '1', 'b']))).toBe('MSETEX: numkeys (argument 1) is 2, more than the 1 key-value pairs after it')
    expect(badRequest(() => commandKeys(['EVAL', 'return 1', '"\n\u0000']))).toContain('"\\"\\n\\u0000"')
  })

  it('reads XREAD and XREADGROUP keys after STREAMS', () => {
    expect(commandKeys(['XREAD', 'COUNT', '2', 'STREAMS', 'a', 'b', '0', '0'])).toEqual([4, 5])
    expect(commandKeys(['XREAD', 'STREAMS', 'streams', '0'])).toEqual([2])
    expect(commandKeys(['XREADGROUP', 'GROUP', 'streams', 'streams', 'STREAMS', 's', '>'])).toEqual([5])
    expect(commandKeys(['xreadgroup', 'group', 'g', 'c', 'count', '1', 'noack', 'streams', 'a', 'b', '>', '>'])).toEqual([8, 9])
    expect(badRequest(() => commandKeys(['XREAD', 'COUNT', '1']))).toBe('XREAD: the STREAMS option and its keys and IDs are missing')
    expect(badRequest(() => commandKeys(['XREAD', 'STREAMS']))).toMatch(/STREAMS option .* missing/)
    expect(badRequest(() => commandKeys(['XREAD', 'STREAMS', 'a', 'b', '0']))).toMatch(/^XREAD: unbalanced STREAMS list: 3 arguments/)
    expect(badRequest(() => commandKeys(['XREADGROUP', 'GROUP', 'g', 'STREAMS', 'a', '0']))).toMatch(/^XREADGROUP: the STREAMS option/)
  })

  it('reads SORT, MIGRATE and GEORADIUS options as Redis does', () => {
    expect(commandKeys(['SORT', 'k'])).toEqual([1])
    expect(commandKeys(['SORT', 'k', 'BY', 'w_*', 'GET', '#', 'GET', 'store', 'STORE', 'd'])).toEqual([1, 9])
    expect(commandKeys(['SORT', 'k', 'STORE', 'd1', 'STORE', 'd2'])).toEqual([1, 5])
    expect(commandKeys(['SORT', 'k', 'LIMIT', 'STORE', 'x', 'ASC'])).toEqual([1])
    expect(commandKeys(['SORT', 'k', b('store'), b('d')])).toEqual([1, 3])
    expect(commandKeys(['SORT_RO', 'k', 'BY', 'p', 'GET', 'q'])).toEqual([1])
    expect(commandKeys(['MIGRATE', 'h', '6379', 'k', '0', '5000'])).toEqual([3])
    expect(commandKeys(['MIGRATE', 'h', '6379', '', '0', '5000', 'COPY', 'REPLACE', 'KEYS', 'a', 'b'])).toEqual([9, 10])
    expect(commandKeys(['MIGRATE', 'h', '6379', b(''), '0', '5000', 'AUTH', 'keys', 'AUTH2', 'u', 'KEYS', b('keys'), 'x'])).toEqual([12])
    expect(commandKeys(['MIGRATE', 'h', '6379', '', '0', '5000', 'AUTH', 'KEYS'])).toEqual([3])
    expect(badRequest(() => commandKeys(['MIGRATE', 'h', '6379', 'k', '0', '5000', 'KEYS', 'a']))).toBe(
      'MIGRATE: with KEYS, the key argument (argument 3) must be the empty string',
    )
    expect(commandKeys(['GEORADIUS', 'k', '0', '0', '1', 'km', 'STORE', 'd'])).toEqual([1, 7])
    expect(commandKeys(['GEORADIUS', 'k', '0', '0', '1', 'km', 'STOREDIST', 'd', 'STORE', 'e'])).toEqual([1, 9, 7])
    expect(commandKeys(['GEORADIUSBYMEMBER', 'k', 'STORE', '1', 'km', 'STOREDIST', 'd'])).toEqual([1, 6])
    expect(commandKeys(['MEMORY', 'USAGE', 'k'])).toEqual([2])
    expect(commandKeys(['MEMORY', 'STATS'])).toEqual([])
    expect(commandKeys(['STRALGO', 'LCS', 'KEYS', 'a', 'b'])).toEqual([3, 4])
    expect(commandKeys(['STRALGO', 'LCS', 'STRINGS', 'KEYS', 'b'])).toEqual([])
  })

  it('never throws anything but a BadRequestError, and stays within the arguments', () => {
    const names = [...MOVABLE_KEY_COMMANDS, 'get', 'mset', 'object', 'xinfo', 'nosuch']
    const word = fc.oneof(
      fc.constantFrom('STREAMS', 'STORE', 'STOREDIST', 'KEYS', 'GET', 'BY', 'LIMIT', 'AUTH', 'AUTH2', 'USAGE', '0', '1', '2', '-1', '', 'x'),
      fc.string({ maxLength: 4 }),
      fc.uint8Array({ maxLength: 4 }).map((u) => Buffer.from(u)),
    )
    fc.assert(
      fc.property(fc.constantFrom(...names), fc.array(word, { maxLength: 12 }), (name, rest) => {
        const args: Arg[] = [name, ...rest]
        try {
          const keys = commandKeys(args)
          for (const k of keys) expect(k >= 1 && k < args.length).toBe(true)
        } catch (err) {
          expect(err).toBeInstanceOf(BadRequestError)
        }
      }),
      { numRuns: 3_000 },
    )
  })
})

describe('slotOfCommand', () => {
  it('is null for keyless commands, the slot for one key or keys sharing a tag', () => {
    expect(slotOfCommand(['PING'])).toBeNull()
    expect(slotOfCommand(['EVAL', 'return 1', '0'])).toBeNull()
    expect(slotOfCommand(['GET', 'foo'])).toBe(12182)
    expect(slotOfCommand(['MGET', '{u1}a', '{u1}b', 'u1'])).toBe(keySlot('u1'))
    expect(slotOfCommand(['EVAL', 's', '2', '{t}x', b('{t}y')])).toBe(keySlot('t'))
  })

  it('names keys in different slots with Redis CROSSSLOT text and a hash-tag hint', () => {
    const r = slotOfCommand(['MSET', 'foo', '1', 'bar', '2']) as CrossSlot
    expect(r.kind).toBe('crossslot')
    expect(r.keys).toEqual([1, 3])
    expect(r.slots).toEqual([12182, 5061])
    expect(r.message.startsWith(CROSSSLOT_MESSAGE)).toBe(true)
    expect(CROSSSLOT_MESSAGE).toBe("CROSSSLOT Keys in request don't hash to the same slot")
    expect(r.message).toContain('arguments 1 and 3 hash to slots 12182 and 5061')
    expect(r.message).toContain('{...}')
  })

  it('throws what commandKeys throws', () => {
    expect(() => slotOfCommand(['EVAL', 's', 'x'])).toThrow(BadRequestError)
  })
})

// ---------------------------------------------------------------------------------------------
// Topology replies, as the RESP parser hands them over: bulk strings as Buffers, integers as text.

type Spec = string | number | null | Error | Spec[]
function raw(v: Spec): RawReply {
  if (typeof v === 'string') return b(v)
  if (typeof v === 'number') return String(v)
  if (Array.isArray(v)) return v.map(raw)
  return v
}

const ID = (c: string): string => c.repeat(40)

function shardsNodeSpec(id: string, port: number, role: string, extra: Spec[] = [], health = 'online'): Spec {
  return ['id', id, 'port', port, 'ip', '10.0.0.1', 'endpoint', '10.0.0.1', 'role', role, 'replication-offset', 100, 'health', health, ...extra]
}

function shardsReply(): Spec {
  return [
    ['slots', [10923, 16383], 'nodes', [shardsNodeSpec(ID('c'), 7002, 'master'), shardsNodeSpec(ID('f'), 7005, 'replica', ['hostname', 'f.example'])]],
    ['slots', [0, 100, 101, 5460, 8000, 8000], 'nodes', [shardsNodeSpec(ID('a'), 7000, 'master', ['tls-port', 7100]), shardsNodeSpec(ID('d'), 7003, 'replica')]],
    ['slots', [5461, 7999, 8001, 10922], 'nodes', [shardsNodeSpec(ID('b'), 7001, 'master')]],
    // A primary without slots (just added to the cluster).
    ['slots', [], 'nodes', [shardsNodeSpec(ID('e'), 7004, 'master')]],
  ]
}

function slotsNodeSpec(endpoint: Spec, port: number, id: string, meta: Spec[] = []): Spec {
  return [endpoint, port, id, meta]
}

function slotsReply(): Spec {
  return [
    [10923, 16383, slotsNodeSpec('10.0.0.3', 7002, ID('c')), slotsNodeSpec('10.0.0.6', 7005, ID('f'), ['hostname', 'f.example'])],
    [0, 5460, slotsNodeSpec('10.0.0.1', 7000, ID('a')), slotsNodeSpec('10.0.0.4', 7003, ID('d'))],
    [5461, 7999, slotsNodeSpec('10.0.0.2', 7001, ID('b'))],
    [8000, 8000, slotsNodeSpec('10.0.0.1', 7000, ID('a')), slotsNodeSpec('10.0.0.4', 7003, ID('d'))],
    [8001, 10922, slotsNodeSpec('10.0.0.2', 7001, ID('b'))],
  ]
}

function clusterError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ClusterReplyError)
    return (err as Error).message
  }
  throw new Error('did not throw')
}

describe('parseClusterShards', () => {
  it('builds shards, ordered by their first slot, with replicas, ports and hostnames', () => {
    const map = parseClusterShards(raw(shardsReply()))
    expect(map.source).toBe('CLUSTER SHARDS')
    expect(map.shards.map((s) => s.primary.id)).toEqual([ID('a'), ID('b'), ID('c'), ID('e')])
    expect(map.shards.map((s) => s.ranges)).toEqual([[[0, 5460], [8000, 8000]], [[5461, 7999], [8001, 10922]], [[10923, 16383]], []])
    expect(map.shards.map((s) => s.slotCount)).toEqual([5462, 5461, 5461, 0])
    expect(map.shards.map((s) => s.index)).toEqual([0, 1, 2, 3])
    expect(map.coveredSlots).toBe(SLOT_COUNT)
    const a = map.shards[0]!
    expect(a.primary).toEqual({
      id: ID('a'),
      ip: '10.0.0.1',
      endpoint: '10.0.0.1',
      hostname: null,
      port: 7000,
      tlsPort: 7100,
      role: 'primary',
      health: 'online',
      replicationOffset: 100,
    })
    expect(a.replicas.map((n) => n.id)).toEqual([ID('d')])
    expect(map.shards[2]!.replicas[0]!.hostname).toBe('f.example')
    expect(map.node(ID('f'))?.role).toBe('replica')
    expect([...map.nodes].length).toBe(6)
  })

  it('finds the shard of any slot', () => {
    const map = parseClusterShards(raw(shardsReply()))
    const expected = (slot: number): string => (slot <= 5460 || slot === 8000 ? ID('a') : slot <= 10922 ? ID('b') : ID('c'))
    for (let slot = 0; slot < SLOT_COUNT; slot++) expect(map.shardOf(slot)?.primary.id).toBe(expected(slot))
    expect(map.shardOf(-1)).toBeNull()
    expect(map.shardOf(16384)).toBeNull()
    expect(map.shardOf(1.5)).toBeNull()
    expect(map.shardOfKey('foo')?.primary.id).toBe(expected(12182))
  })

  it('gives equal maps for the same topology in any order', () => {
    const reply = shardsReply() as Spec[]
    const a = parseClusterShards(raw(reply))
    const b2 = parseClusterShards(raw([...reply].reverse()))
    expect(b2.shards).toEqual(a.shards)
  })

  it('leaves slots no shard serves uncovered', () => {
    const map = parseClusterShards(raw([['slots', [0, 99], 'nodes', [shardsNodeSpec(ID('a'), 7000, 'master')]]]))
    expect(map.coveredSlots).toBe(100)
    expect(map.shardOf(99)?.primary.id).toBe(ID('a'))
    expect(map.shardOf(100)).toBeNull()
  })

  it('takes the online primary of a shard that still lists its failed former primary (Redis 7.2+)', () => {
    const map = parseClusterShards(
      raw([
        [
          'slots',
          [0, 16383],
          'nodes',
          [shardsNodeSpec(ID('a'), 7000, 'master', [], 'failed'), shardsNodeSpec(ID('d'), 7003, 'master'), shardsNodeSpec(ID('g'), 7006, 'replica', [], 'loading')],
        ],
      ]),
    )
    const s = map.shards[0]!
    expect(s.primary.id).toBe(ID('d'))
    expect(s.replicas.map((n) => [n.id, n.health])).toEqual([[ID('g'), 'loading']])
    expect(s.nodes.map((n) => [n.id, n.role, n.health])).toEqual([
      [ID('a'), 'primary', 'failed'],
      [ID('d'), 'primary', 'online'],
      [ID('g'), 'replica', 'loading'],
    ])
  })

  it('keeps a failed primary that is the only one (before the promotion)', () => {
    const map = parseClusterShards(
      raw([['slots', [0, 16383], 'nodes', [shardsNodeSpec(ID('a'), 7000, 'master', [], 'failed'), shardsNodeSpec(ID('d'), 7003, 'replica')]]]),
    )
    expect(map.shards[0]!.primary.health).toBe('failed')
  })

  it('leaves out a shard of replicas without a primary that serves no slot', () => {
    const map = parseClusterShards(raw([['slots', [], 'nodes', [shardsNodeSpec(ID('d'), 7003, 'replica')]], ...(shardsReply() as Spec[])]))
    expect(map.shards).toHaveLength(4)
    expect(map.node(ID('d'))?.role).toBe('replica')
  })

  it('accepts integers as numbers and fields in any case and order, and ignores unknown fields', () => {
    const map = parseClusterShards([
      [b('SLOTS'), [0, 16383], b('nodes'), [[b('health'), b('online'), b('future-field'), [b('x')], b('role'), b('master'), b('port'), 6379, b('id'), b(ID('a'))]]],
    ])
    expect(map.shards[0]!.primary).toMatchObject({ id: ID('a'), port: 6379, ip: '', endpoint: null, replicationOffset: null })
  })

  const hostile: [string, Spec | RawReply, RegExp][] = [
    ['an error reply', new Error('ERR This instance has cluster support disabled'), /an error reply \(ERR This instance has cluster support disabled\)/],
    ['not an array', 'OK', /the reply: expected an array, got the string "OK"/],
    ['nil', null, /expected an array, got nil/],
    ['a shard that is not a map', [['slots']], /shard 0: 1 elements, not field-value pairs/],
    ['a shard without slots', [['nodes', []]], /shard 0: slots: expected an array, got nothing/],
    ['slots not in pairs', [['slots', [0, 1, 2], 'nodes', []]], /shard 0: slots has 3 elements, not start-end pairs/],
    ['a slot out of range', [['slots', [0, 16384], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master')]]], /slot range 0-16384 is outside 0-16383/],
    ['a negative slot', [['slots', [-1, 5], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master')]]], /slot range -1-5 is outside/],
    ['a range that ends before it starts', [['slots', [10, 5], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master')]]], /slot range 10-5 ends before it starts/],
    ['a slot that is not an integer', [['slots', ['x', 5], 'nodes', []]], /slots\[0\]: expected an integer, got the string "x"/],
    [
      'overlapping ranges',
      [
        ['slots', [0, 100], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master')]],
        ['slots', [100, 200], 'nodes', [shardsNodeSpec(ID('b'), 2, 'master')]],
      ],
      /slot 100 is served by two shards \(primaries a{40} and b{40}\)/,
    ],
    ['a shard with slots and no primary', [['slots', [0, 5], 'nodes', [shardsNodeSpec(ID('d'), 1, 'replica')]]], /shard 0: serves slots but has no primary/],
    [
      'two online primaries',
      [['slots', [0, 5], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master'), shardsNodeSpec(ID('b'), 2, 'master')]]],
      /shard 0: 2 online primaries/,
    ],
    [
      'a node in two shards',
      [
        ['slots', [0, 5], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master')]],
        ['slots', [6, 7], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master')]],
      ],
      /node a{40} appears twice/,
    ],
    ['a bad role', [['slots', [], 'nodes', [shardsNodeSpec(ID('a'), 1, 'boss')]]], /role "boss" is neither master nor replica/],
    ['a port out of range', [['slots', [], 'nodes', [shardsNodeSpec(ID('a'), 70000, 'master')]]], /port 70000 is outside 0-65535/],
    ['no port', [['slots', [], 'nodes', [['id', ID('a'), 'role', 'master']]]], /neither port nor tls-port/],
    ['a node without an id', [['slots', [], 'nodes', [['port', 1, 'role', 'master']]]], /node 0: id: expected a string, got nothing/],
    ['an id with spaces', [['slots', [], 'nodes', [shardsNodeSpec('a b', 1, 'master')]]], /"a b" has characters other than printable ASCII/],
    ['a long id', [['slots', [], 'nodes', [shardsNodeSpec('a'.repeat(65), 1, 'master')]]], /is not a node id/],
    ['a hostname with control characters', [['slots', [], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master', ['hostname', 'evil\r\nx'])]]], /printable ASCII/],
    ['a huge hostname', [['slots', [], 'nodes', [shardsNodeSpec(ID('a'), 1, 'master', ['hostname', 'h'.repeat(300)])]]], /300 bytes, more than 255/],
    ['a field twice', [['slots', [], 'slots', [], 'nodes', []]], /field "slots" appears twice/],
    ['an error in place of a node', [['slots', [], 'nodes', [new Error('boom')]]], /node 0: an error reply \(boom\)/],
  ]
  it.each(hostile)('refuses %s with a ClusterReplyError', (_, reply, message) => {
    expect(clusterError(() => parseClusterShards(raw(reply as Spec)))).toMatch(message)
  })

  it('refuses huge counts before building anything', () => {
    const many = new Array<RawReply>(CLUSTER_LIMITS.maxShards + 1).fill([])
    expect(clusterError(() => parseClusterShards(many))).toMatch(/10001 elements, more than 10000/)
    const ranges: number[] = []
    for (let i = 0; i < SLOT_COUNT + 1; i++) ranges.push(0, 0)
    expect(clusterError(() => parseClusterShards(raw([['slots', ranges, 'nodes', []]])))).toMatch(/more than 32768/)
    const nodes = Array.from({ length: 6_000 }, (_, i) => shardsNodeSpec(`n${i}`, 1, 'replica'))
    expect(clusterError(() => parseClusterShards(raw([['slots', [], 'nodes', nodes], ['slots', [], 'nodes', nodes]])))).toMatch(/more than 10000 nodes/)
    expect(clusterError(() => parseClusterShards(raw([Array.from({ length: 200 }, () => 'x')])))).toMatch(/200 elements, more than 128/)
  })

  it('throws only ClusterReplyErrors for any reply shape', () => {
    const leaf = fc.oneof(
      fc.constantFrom<RawReply>(b('slots'), b('nodes'), b('id'), b('port'), b('role'), b('master'), b('replica'), b('health'), b('ip'), b(ID('a'))),
      fc.integer({ min: -5, max: 70_000 }).map((n) => String(n)),
      fc.integer({ min: -5, max: 20_000 }),
      fc.constant(null),
      fc.constant(new Error('ERR x')),
      fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u)),
    )
    const { tree } = fc.letrec<{ tree: RawReply }>((tie) => ({
      tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('tree'), { maxLength: 8 })),
    }))
    fc.assert(
      fc.property(tree, (reply) => {
        for (const parse of [parseClusterShards, parseClusterSlots]) {
          try {
            parse(reply)
          } catch (err) {
            expect(err).toBeInstanceOf(ClusterReplyError)
          }
        }
      }),
      { numRuns: 3_000 },
    )
  })

  it('throws only ClusterReplyErrors for a valid reply with one value replaced', () => {
    const valid = raw(shardsReply())
    const paths: number[][] = []
    const walk = (v: RawReply, p: number[]): void => {
      paths.push(p)
      if (Array.isArray(v)) v.forEach((c, i) => walk(c, [...p, i]))
    }
    walk(valid, [])
    const replacement = fc.constantFrom<RawReply>(null, '-1', '16384', b(''), b('?'), [], [b('x')], new Error('e'), 5, b('master'))
    fc.assert(
      fc.property(fc.constantFrom(...paths.filter((p) => p.length > 0)), replacement, (p, value) => {
        const copy = structuredClone(raw(shardsReply()))
        let at = copy as RawReply[]
        for (const i of p.slice(0, -1)) at = at[i] as RawReply[]
        at[p[p.length - 1]!] = value
        try {
          parseClusterShards(copy)
        } catch (err) {
          expect(err).toBeInstanceOf(ClusterReplyError)
        }
      }),
      { numRuns: 2_000 },
    )
  })
})

describe('parseClusterSlots', () => {
  it('groups ranges by primary, with replicas and hostnames', () => {
    const map = parseClusterSlots(raw(slotsReply()))
    expect(map.source).toBe('CLUSTER SLOTS')
    expect(map.shards.map((s) => [s.primary.id, s.ranges, s.replicas.map((r) => r.id)])).toEqual([
      [ID('a'), [[0, 5460], [8000, 8000]], [ID('d')]],
      [ID('b'), [[5461, 7999], [8001, 10922]], []],
      [ID('c'), [[10923, 16383]], [ID('f')]],
    ])
    expect(map.coveredSlots).toBe(SLOT_COUNT)
    expect(map.shards[2]!.replicas[0]).toEqual({
      id: ID('f'),
      ip: '10.0.0.6',
      endpoint: '10.0.0.6',
      hostname: 'f.example',
      port: 7005,
      tlsPort: null,
      role: 'replica',
      health: 'unknown',
      replicationOffset: null,
    })
    // The same topology as CLUSTER SHARDS describes (without the slotless primary, which CLUSTER SLOTS does not list).
    const shards = parseClusterShards(raw(shardsReply()))
    expect(map.shards.map((s) => s.slotCount)).toEqual(shards.shards.slice(0, 3).map((s) => s.slotCount))
    for (let slot = 0; slot < SLOT_COUNT; slot += 97) expect(map.shardOf(slot)?.primary.id).toBe(shards.shardOf(slot)?.primary.id)
  })

  it('reads unknown endpoints and the ip and hostname metadata', () => {
    const map = parseClusterSlots(
      raw([
        [0, 10, slotsNodeSpec('a.example', 7000, ID('a'), ['ip', '10.0.0.1'])],
        [51, 60, slotsNodeSpec('10.0.0.7', 7005, ID('h'), ['hostname', 'h.example'])],
        [11, 20, slotsNodeSpec('?', 7001, ID('b'), ['ip', '10.0.0.2'])],
        [21, 30, slotsNodeSpec(null, 7002, ID('c'))],
        [31, 40, slotsNodeSpec('', 7003, ID('e'))],
        [41, 50, ['10.0.0.5', 7004, ID('g')]], // Redis 6: no metadata
      ]),
    )
    expect(map.shards.map((s) => [s.primary.endpoint, s.primary.ip, s.primary.hostname, s.primary.port])).toEqual([
      ['a.example', '10.0.0.1', 'a.example', 7000],
      [null, '10.0.0.2', null, 7001],
      [null, '', null, 7002],
      [null, '', null, 7003],
      ['10.0.0.5', '10.0.0.5', null, 7004],
      ['10.0.0.7', '10.0.0.7', 'h.example', 7005],
    ])
  })

  const hostile: [string, Spec | RawReply, RegExp][] = [
    ['an error reply', new Error('ERR nope'), /CLUSTER SLOTS reply: the reply: an error reply \(ERR nope\)/],
    ['a short entry', [[0, 5]], /entry 0: 2 elements; a range needs start, end and a primary/],
    ['a node without id (Redis 3)', [[0, 5, ['10.0.0.1', 7000]]], /2 elements; Redis 4\.0\+ sends endpoint, port and id/],
    ['a slot out of range', [[0, 99999, slotsNodeSpec('h', 1, ID('a'))]], /slot range 0-99999 is outside 0-16383/],
    ['overlapping ranges', [[0, 10, slotsNodeSpec('h', 1, ID('a'))], [5, 20, slotsNodeSpec('h', 2, ID('b'))]], /slot 5 is served by two shards/],
    ['the same range twice', [[0, 10, slotsNodeSpec('h', 1, ID('a'))], [0, 10, slotsNodeSpec('h', 1, ID('a'))]], /slot 0 is served by two shards/],
    [
      'a primary that is also a replica',
      [[0, 10, slotsNodeSpec('h', 1, ID('a')), slotsNodeSpec('h', 2, ID('b'))], [11, 20, slotsNodeSpec('h', 2, ID('b'))]],
      /node b{40} is listed both as a primary and as a replica/,
    ],
    [
      'a replica under two primaries',
      [[0, 10, slotsNodeSpec('h', 1, ID('a')), slotsNodeSpec('h', 3, ID('d'))], [11, 20, slotsNodeSpec('h', 2, ID('b')), slotsNodeSpec('h', 3, ID('d'))]],
      /replica d{40} is listed under two primaries/,
    ],
    ['a node with two addresses', [[0, 10, slotsNodeSpec('h', 1, ID('a'))], [11, 20, slotsNodeSpec('h', 2, ID('a'))]], /node a{40} is listed with two addresses/],
    ['a port that is not a number', [[0, 10, slotsNodeSpec('h', 'x' as unknown as number, ID('a'))]], /port: expected an integer, got the string "x"/],
    ['metadata not in pairs', [[0, 10, slotsNodeSpec('h', 1, ID('a'), ['hostname'])]], /metadata: 1 elements, not field-value pairs/],
  ]
  it.each(hostile)('refuses %s with a ClusterReplyError', (_, reply, message) => {
    expect(clusterError(() => parseClusterSlots(raw(reply as Spec)))).toMatch(message)
  })

  it('refuses more entries than slots', () => {
    expect(clusterError(() => parseClusterSlots(new Array<RawReply>(SLOT_COUNT + 1).fill([])))).toMatch(/16385 elements, more than 16384/)
  })
})

describe('SlotMap.build', () => {
  const node = (id: string, role: 'primary' | 'replica' = 'primary'): ClusterNode => ({
    id,
    ip: '127.0.0.1',
    endpoint: '127.0.0.1',
    hostname: null,
    port: 1,
    tlsPort: null,
    role,
    health: 'online',
    replicationOffset: null,
  })

  it('merges adjacent ranges and checks the primary is one of the nodes', () => {
    const map = SlotMap.build('CLUSTER SLOTS', [{ ranges: [[6, 9], [0, 5], [11, 11]], primary: node('a'), replicas: [node('r', 'replica')] }])
    expect(map.shards[0]!.ranges).toEqual([[0, 9], [11, 11]])
    expect(map.shards[0]!.nodes.map((n) => n.id)).toEqual(['a', 'r'])
    expect(clusterError(() => SlotMap.build('CLUSTER SHARDS', [{ ranges: [], primary: node('a'), replicas: [], nodes: [node('b')] }]))).toMatch(
      /its primary a is not among its nodes/,
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Against real redis-server processes in cluster mode.

interface ClusterServer {
  readonly server: RedisServer
  readonly busPort: number
  readonly client: Redis
}

const dirs: string[] = []
const servers: RedisServer[] = []
const conns: RespConnection[] = []

/** A cluster-enabled redis-server: its own dir and nodes.conf, and a bus port of its own (not port + 10000, which may be taken or above 65535). */
async function clusterServer(extra: string[] = []): Promise<ClusterServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-cluster-slots-'))
  dirs.push(dir)
  const busPort = await freePort()
  const server = await startRedis({
    dir,
    args: ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-port', String(busPort), ...extra],
  })
  servers.push(server)
  return { server, busPort, client: server.client() }
}

/** A RESP connection (upstream/resp-connection.ts): its replies are exactly what the gateway's parser hands over. */
async function respConnection(s: RedisServer): Promise<RespConnection> {
  const conn = new RespConnection(
    { host: s.host, port: s.port, username: '', password: '', tls: false, connectTimeoutMs: 2_000, retryDelayMs: () => 50 },
    { onReady: () => {}, onClose: () => {} },
  )
  conns.push(conn)
  conn.start()
  await waitFor(() => conn.ready, { message: `a RESP connection to ${s.port}` })
  return conn
}

function call(conn: RespConnection, ...args: Arg[]): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    if (!conn.command(args, { reply: (v) => resolve(v as RawReply), lost: reject })) reject(new Error('not ready'))
  })
}

afterAll(async () => {
  for (const c of conns) c.stop()
  await Promise.all(servers.map((s) => s.stop()))
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

/** COMMAND GETKEYS's answer: [] when Redis finds no keys (it does not take a command without arguments: those have none). */
async function serverKeys(client: Redis, args: readonly Arg[]): Promise<Buffer[]> {
  if (args.length < 2) return []
  try {
    return (await client.callBuffer('COMMAND', 'GETKEYS', ...args)) as Buffer[]
  } catch (err) {
    if (/no key arguments/.test((err as Error).message)) return []
    throw err
  }
}

const GETKEYS_CASES: Arg[][] = [
  ['SET', 'k', 'v', 'EX', '10'],
  ['GET', 'k'],
  ['MGET', 'a', 'b', 'c'],
  ['MSET', 'a', '1', 'b', '2', 'c', '3'],
  ['DEL', 'a', 'b'],
  ['UNLINK', 'a', 'b'],
  ['EXISTS', 'a', 'b', 'a'],
  ['TOUCH', 'a'],
  ['EVAL', 'return 1', '2', 'a', 'b', 'arg1'],
  ['EVAL', 'return 1', '0', 'arg1'],
  ['EVALSHA', 'e0e1f9fabfc9d4800c877a703b823ac0578ff8db', '1', 'k'],
  ['EVAL_RO', 'return 1', '1', 'k', 'x'],
  ['FCALL', 'f', '2', 'a', 'b'],
  ['FCALL_RO', 'f', '0'],
  ['XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0'],
  ['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'],
  ['XREAD', 'STREAMS', 'STREAMS', '0'],
  ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '1', 'NOACK', 'STREAMS', 's1', 's2', '>', '>'],
  ['XREADGROUP', 'GROUP', 'STREAMS', 'STREAMS', 'STREAMS', 'a', '0'],
  ['ZUNIONSTORE', 'd', '2', 'a', 'b', 'WEIGHTS', '1', '2'],
  ['ZINTERSTORE', 'd', '1', 'a'],
  ['ZDIFFSTORE', 'd', '2', 'a', 'b'],
  ['ZUNION', '2', 'a', 'b', 'WITHSCORES'],
  ['ZINTER', '1', 'a'],
  ['ZDIFF', '2', 'a', 'b'],
  ['ZINTERCARD', '2', 'a', 'b', 'LIMIT', '1'],
  ['SINTERCARD', '2', 'a', 'b'],
  ['LMPOP', '2', 'a', 'b', 'LEFT', 'COUNT', '2'],
  ['BLMPOP', '0', '2', 'a', 'b', 'LEFT'],
  ['ZMPOP', '1', 'a', 'MIN'],
  ['BZMPOP', '0.5', '2', 'a', 'b', 'MAX'],
  ['SORT', 'k', 'BY', 'w_*', 'GET', '#', 'GET', 'o_*', 'STORE', 'dst'],
  ['SORT', 'k', 'LIMIT', '0', '10', 'ALPHA', 'DESC', 'STORE', 'd1', 'STORE', 'd2'],
  ['SORT', 'k', 'GET', 'store', 'BY', 'STORE'],
  ['SORT', 'store', 'STORE', 'store'],
  ['SORT_RO', 'k', 'BY', 'w_*', 'GET', '#'],
  ['OBJECT', 'ENCODING', 'k'],
  ['OBJECT', 'FREQ', 'k'],
  ['MIGRATE', '127.0.0.1', '6380', '', '0', '5000', 'COPY', 'REPLACE', 'KEYS', 'a', 'b'],
  ['MIGRATE', '127.0.0.1', '6380', '', '0', '5000', 'AUTH', 'KEYS', 'KEYS', 'a'],
  ['MIGRATE', '127.0.0.1', '6380', '', '0', '5000', 'AUTH2', 'u', 'KEYS', 'KEYS', 'x', 'y'],
  ['MIGRATE', '127.0.0.1', '6380', 'k', '0', '5000', 'COPY'],
  ['MIGRATE', '127.0.0.1', '6380', '', '0', '5000'],
  ['GEORADIUS', 'k', '0', '0', '1', 'km', 'STORE', 'd'],
  ['GEORADIUS', 'k', '0', '0', '1', 'km', 'STOREDIST', 'd', 'STORE', 'e'],
  ['GEORADIUSBYMEMBER', 'k', 'm', '1', 'km', 'STOREDIST', 'd'],
  ['GEORADIUS_RO', 'k', '0', '0', '1', 'km'],
  ['GEOSEARCHSTORE', 'd', 's', 'FROMLONLAT', '0', '0', 'BYRADIUS', '1', 'km'],
  ['RENAME', 'a', 'b'],
  ['COPY', 'a', 'b', 'REPLACE'],
  ['BLPOP', 'a', 'b', '0'],
  ['LMOVE', 'a', 'b', 'LEFT', 'RIGHT'],
  ['BITOP', 'AND', 'd', 'a', 'b'],
  ['PFMERGE', 'd', 'a', 'b'],
  ['PFCOUNT', 'a', 'b'],
  ['XINFO', 'STREAM', 's', 'FULL'],
  ['XGROUP', 'CREATE', 's', 'g', '$', 'MKSTREAM'],
  ['MEMORY', 'USAGE', 'k', 'SAMPLES', '5'],
  ['LCS', 'a', 'b'],
  ['SMOVE', 'a', 'b', 'm'],
  ['BITFIELD_RO', 'k', 'GET', 'u8', '0'],
  ['WATCH', 'a', 'b'],
  ['HSET', 'h', 'f', 'v', 'g', 'w'],
  ['PING'],
  ['DBSIZE'],
  ['KEYS', '*'],
  ['SCAN', '0', 'MATCH', '*'],
  ['SCRIPT', 'FLUSH'],
  ['PUBLISH', 'ch', 'm'],
  ['OBJECT', 'HELP'],
  [b('mget'), b('bin\u0000ary'), Buffer.from([0xff, 0x7b, 0x7d])],
]

describe('against a cluster-enabled redis-server', () => {
  let node: ClusterServer
  let table: LearnedTable

  beforeAll(async () => {
    node = await clusterServer()
    table = parseCommandTable(respBytes(await node.client.call('COMMAND')))
  })

  it('computes the same slot as CLUSTER KEYSLOT, for strings and for bytes', async () => {
    const key = fc.oneof(anyString, anyBuffer)
    await fc.assert(
      fc.asyncProperty(fc.array(key, { minLength: 1, maxLength: 50 }), async (keys) => {
        const replies = (await node.client.pipeline(keys.map((k) => ['cluster', 'KEYSLOT', k])).exec()) ?? []
        const expected = replies.map(([err, v]) => {
          if (err) throw err
          return v
        })
        expect(keys.map((k) => keySlot(k))).toEqual(expected)
      }),
      { numRuns: 100 },
    )
  })

  it('finds the keys COMMAND GETKEYS finds, with and without the learned table', async () => {
    for (const args of GETKEYS_CASES) {
      const expected = await serverKeys(node.client, args).catch((err: Error) => {
        throw new Error(`COMMAND GETKEYS ${args.map(String).join(' ')}: ${err.message}`)
      })
      for (const t of [table, null]) {
        const got = commandKeys(args, t).map((i) => Buffer.from(args[i] as Arg))
        expect({ args, keys: got }).toEqual({ args, keys: expected })
      }
    }
  })

  it('finds the keys COMMAND GETKEYS finds for random option lists', async () => {
    const word = fc.constantFrom<Arg>('STREAMS', 'STORE', 'STOREDIST', 'KEYS', 'GET', 'BY', 'LIMIT', 'AUTH', 'AUTH2', 'COPY', 'COUNT', 'a', '{t}b', '1', '0', b('store'))
    const command = fc.oneof(
      fc.array(word, { maxLength: 8 }).map((rest): Arg[] => ['SORT', 'k', ...rest]),
      fc.array(word, { maxLength: 8 }).map((rest): Arg[] => ['SORT_RO', 'k', ...rest]),
      fc.tuple(fc.constantFrom<Arg>('', 'k'), fc.array(word, { maxLength: 8 })).map(([key, rest]): Arg[] => ['MIGRATE', 'h', '1', key, '0', '5000', ...rest]),
      fc.array(word, { maxLength: 8 }).map((rest): Arg[] => ['GEORADIUS', 'k', '0', '0', '1', 'km', ...rest]),
      fc.array(word, { maxLength: 8 }).map((rest): Arg[] => ['GEORADIUSBYMEMBER', 'k', 'm', '1', 'km', ...rest]),
      fc.array(word, { minLength: 1, maxLength: 8 }).map((rest): Arg[] => ['XREAD', ...rest]),
      fc.array(word, { minLength: 1, maxLength: 8 }).map((rest): Arg[] => ['XREADGROUP', 'GROUP', 'g', 'c', ...rest]),
      fc.array(word, { maxLength: 6 }).map((rest): Arg[] => ['EVAL', 's', ...rest]),
      fc.array(word, { maxLength: 6 }).map((rest): Arg[] => ['ZUNIONSTORE', 'd', ...rest]),
    )
    let compared = 0
    await fc.assert(
      fc.asyncProperty(command, async (args) => {
        let ours: number[]
        try {
          ours = commandKeys(args, table)
        } catch (err) {
          // Invalid numkeys or STREAMS: the command itself fails on Redis too.
          expect(err).toBeInstanceOf(BadRequestError)
          return
        }
        let expected: Buffer[]
        try {
          expected = await serverKeys(node.client, args)
        } catch (err) {
          // Arity: Redis refuses to look; ours found none or the node answers the error.
          expect((err as Error).message).toMatch(/Invalid number of arguments|wrong number of arguments/)
          return
        }
        compared++
        expect(ours.map((i) => Buffer.from(args[i] as Arg))).toEqual(expected)
      }),
      { numRuns: 400 },
    )
    expect(compared).toBeGreaterThan(200)
  })

  it('has a rule for every movable-keys command the server lists', () => {
    const movable = [...table.specs.values()].filter((s) => s.flags.includes('movablekeys')).map((s) => s.name)
    expect(movable.length).toBeGreaterThan(10)
    expect(movable.filter((n) => !keysKnown(n, table))).toEqual([])
  })

  it('routes SPUBLISH by its channel, which COMMAND GETKEYS does not list as a key', async () => {
    expect(await serverKeys(node.client, ['SPUBLISH', 'ch', 'm'])).toEqual([])
    expect(commandKeys(['SPUBLISH', 'ch', 'm'], table)).toEqual([1])
    expect(commandKeys(['SPUBLISH', 'ch', 'm'])).toEqual([1])
  })

  it('parses the CLUSTER SHARDS and CLUSTER SLOTS replies of a single node serving all slots', async () => {
    expect(await node.client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')).toBe('OK')
    const myId = (await node.client.call('CLUSTER', 'MYID')) as string
    const conn = await respConnection(node.server)
    const shards = parseClusterShards(await call(conn, 'CLUSTER', 'SHARDS'))
    const slots = parseClusterSlots(await call(conn, 'CLUSTER', 'SLOTS'))
    for (const map of [shards, slots]) {
      expect(map.shards).toHaveLength(1)
      const s = map.shards[0]!
      expect(s.ranges).toEqual([[0, 16383]])
      expect(s.slotCount).toBe(SLOT_COUNT)
      expect(s.primary).toMatchObject({ id: myId, port: node.server.port, role: 'primary', tlsPort: null })
      // A node that never met another does not know its own IP: '' (use the address asked).
      expect(s.primary.ip).toBe('')
      expect(s.primary.endpoint).toBeNull()
      expect(s.replicas).toEqual([])
      expect(map.coveredSlots).toBe(SLOT_COUNT)
      for (const key of ['foo', '{user1}x', b('\u00ff')]) expect(map.shardOfKey(key)).toBe(s)
    }
    expect(shards.shards[0]!.primary.health).toBe('online')
    expect(shards.shards[0]!.primary.replicationOffset).toBe(0)
    expect(slots.shards[0]!.primary.health).toBe('unknown')
  })
})

describe('against a three-node cluster: two shards, one replica', () => {
  let a: ClusterServer
  let bNode: ClusterServer
  let c: ClusterServer
  const ids = new Map<ClusterServer, string>()

  const infoField = async (n: ClusterServer, field: string): Promise<string | undefined> => {
    const text = (await n.client.call('CLUSTER', 'INFO')) as string
    return text
      .split(/\r?\n/)
      .find((l) => l.startsWith(`${field}:`))
      ?.slice(field.length + 1)
      .trim()
  }

  beforeAll(async () => {
    // A short node timeout: nodes ping each other at least every half of it, so news spreads fast.
    const timeout = ['--cluster-node-timeout', '2000']
    ;[a, bNode, c] = await Promise.all([clusterServer([...timeout, '--cluster-announce-hostname', 'a.cluster.test']), clusterServer(timeout), clusterServer(timeout)])
    for (const n of [a, bNode, c]) ids.set(n, (await n.client.call('CLUSTER', 'MYID')) as string)
    for (const n of [bNode, c]) await a.client.call('CLUSTER', 'MEET', '127.0.0.1', String(n.server.port), String(n.busPort))
    await waitFor(async () => (await Promise.all([a, bNode, c].map((n) => infoField(n, 'cluster_known_nodes')))).every((v) => v === '3'), {
      message: 'all three nodes to know each other',
      timeoutMs: 20_000,
    })
    await a.client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '5000', '10001', '16383')
    await bNode.client.call('CLUSTER', 'ADDSLOTSRANGE', '5001', '10000')
    await waitFor(async () => (await infoField(c, 'cluster_state')) === 'ok' && (await infoField(a, 'cluster_state')) === 'ok', {
      message: 'the cluster to cover all slots',
      timeoutMs: 20_000,
    })
    await c.client.call('CLUSTER', 'REPLICATE', ids.get(a)!)
    // Every node learns of the replica by gossip, each in its own time.
    const viewers = await Promise.all([a, bNode, c].map((n) => respConnection(n.server)))
    await waitFor(
      async () => {
        // A replica is `loading` in CLUSTER SHARDS until its replication offset moves: write to its primary.
        await a.client.call('SET', 'foo', String(Date.now())) // slot 12182: A's
        for (const conn of viewers) {
          const map = parseClusterShards(await call(conn, 'CLUSTER', 'SHARDS'))
          const replica = map.node(ids.get(c)!)
          const slots = parseClusterSlots(await call(conn, 'CLUSTER', 'SLOTS'))
          const listed = slots.shards.find((s) => s.primary.id === ids.get(a))?.replicas.some((r) => r.id === ids.get(c))
          const hostname = map.node(ids.get(a)!)?.hostname
          if (replica?.role !== 'replica' || replica.health !== 'online' || listed !== true || map.coveredSlots !== SLOT_COUNT || hostname !== 'a.cluster.test') {
            return false
          }
        }
        return true
      },
      { message: 'every node to see the replica online in CLUSTER SHARDS and listed in CLUSTER SLOTS', timeoutMs: 20_000 },
    )
  }, 60_000)

  it('parses CLUSTER SHARDS and CLUSTER SLOTS into the same topology', async () => {
    const conn = await respConnection(bNode.server)
    const shards = parseClusterShards(await call(conn, 'CLUSTER', 'SHARDS'))
    const slots = parseClusterSlots(await call(conn, 'CLUSTER', 'SLOTS'))
    for (const map of [shards, slots]) {
      expect(map.shards.map((s) => [s.primary.id, s.ranges, s.replicas.map((r) => r.id)])).toEqual([
        [ids.get(a), [[0, 5000], [10001, 16383]], [ids.get(c)]],
        [ids.get(bNode), [[5001, 10000]], []],
      ])
      expect(map.coveredSlots).toBe(SLOT_COUNT)
      const pa = map.shards[0]!.primary
      expect(pa).toMatchObject({ ip: '127.0.0.1', endpoint: '127.0.0.1', hostname: 'a.cluster.test', port: a.server.port })
      expect(map.shards[1]!.primary).toMatchObject({ ip: '127.0.0.1', hostname: null, port: bNode.server.port })
      expect(map.shards[0]!.replicas[0]).toMatchObject({ ip: '127.0.0.1', port: c.server.port, role: 'replica' })
      for (let slot = 0; slot < SLOT_COUNT; slot++) {
        expect(map.shardOf(slot)!.primary.id).toBe(slot >= 5001 && slot <= 10000 ? ids.get(bNode) : ids.get(a))
      }
    }
    expect(shards.shards[0]!.replicas[0]!.health).toBe('online')
    expect(typeof shards.shards[0]!.replicas[0]!.replicationOffset).toBe('number')
  })

  it('routes keys where the cluster does: no MOVED for a key sent to its shard', async () => {
    const conn = await respConnection(a.server)
    const map = parseClusterShards(await call(conn, 'CLUSTER', 'SHARDS'))
    const byPort = new Map([a, bNode].map((n) => [n.server.port, n]))
    for (const key of ['foo', 'bar', '{user1}:cart', 'x'.repeat(50), b('\u0000\u00ff{}')]) {
      const owner = byPort.get(map.shardOfKey(key)!.primary.port!)!
      expect(await owner.client.call('SET', key, '1')).toBe('OK')
      const other = owner === a ? bNode : a
      await expect(other.client.call('SET', key, '1')).rejects.toThrow(new RegExp(`^MOVED ${keySlot(key)} `))
    }
  })

  it('reads hostnames as endpoints when the cluster prefers them', async () => {
    await bNode.client.call('CONFIG', 'SET', 'cluster-preferred-endpoint-type', 'hostname')
    try {
      const conn = await respConnection(bNode.server)
      const map = parseClusterSlots(await call(conn, 'CLUSTER', 'SLOTS'))
      expect(map.shards[0]!.primary).toMatchObject({ endpoint: 'a.cluster.test', ip: '127.0.0.1', hostname: 'a.cluster.test' })
      // No hostname announced: '?' on the wire, an unknown endpoint.
      expect(map.shards[1]!.primary).toMatchObject({ endpoint: null, ip: '127.0.0.1' })
    } finally {
      await bNode.client.call('CONFIG', 'SET', 'cluster-preferred-endpoint-type', 'ip')
    }
  })
})
