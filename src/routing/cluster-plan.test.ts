// Cluster plans (cluster-plan.ts): how each command runs on a Redis Cluster and how the parts'
// replies merge. Table-driven unit tests of every rule, a property test of splits, then the plans
// run against a real three-shard Redis Cluster, each merged reply compared with what one plain
// redis-server answers to the same command sequence.

import { Buffer } from 'node:buffer'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BadRequestError } from '../core/errors.js'
import type { Arg } from '../core/command.js'
import type { RawReply } from '../core/reply.js'
import { RespConnection } from '../upstream/resp-connection.js'
import { startCluster, type RedisCluster } from '../../test/helpers/redis-cluster.js'
import { startRedis, type RedisServer } from '../../test/helpers/redis-server.js'
import { waitFor } from '../../test/helpers/wait.js'
import { CROSSSLOT_MESSAGE, keySlot, SLOT_COUNT } from './cluster-slots.js'
import {
  ClusterMergeError,
  mergeFanout,
  mergeSplit,
  planCommand,
  scanReply,
  type ClusterPlan,
  type FanoutMerge,
  type SplitPart,
} from './cluster-plan.js'

const b = (s: string): Buffer => Buffer.from(s)

// Slots of the keys used below (checked in the first test): a and {a}x share one, the rest differ.
const A = 15495
const B = 3300
const C = 7365
const D = 11298

// ---------------------------------------------------------------------------------------------
// planCommand: one slot, any node, CROSSSLOT

describe('planCommand: commands that are not split', () => {
  it('uses the slots the tests assume', () => {
    expect([keySlot('a'), keySlot('{a}x'), keySlot('b'), keySlot('{b}y'), keySlot('c'), keySlot('d')]).toEqual([A, A, B, B, C, D])
  })

  const cases: [string, Arg[], ClusterPlan][] = [
    ['a single key', ['GET', 'a'], { kind: 'slot', slot: A }],
    ['a lower-case name', ['get', 'b'], { kind: 'slot', slot: B }],
    ['a Buffer name and key', [b('GeT'), b('c')], { kind: 'slot', slot: C }],
    ['a hash tag', ['SET', '{a}x', 'v'], { kind: 'slot', slot: A }],
    ['keys with a common hash tag', ['SUNIONSTORE', '{a}dst', '{a}1', 'a'], { kind: 'slot', slot: A }],
    ['RENAME within a slot', ['RENAME', '{b}1', '{b}2'], { kind: 'slot', slot: B }],
    ['EVAL with keys in one slot', ['EVAL', 'return 1', '2', 'a', '{a}x', 'arg'], { kind: 'slot', slot: A }],
    ['a keyless command', ['PING'], { kind: 'any' }],
    ['EVAL with numkeys 0', ['EVAL', 'return 1', '0'], { kind: 'any' }],
    ['an unknown command', ['NOSUCHCOMMAND', 'a', 'b'], { kind: 'any' }],
    ['no name at all', [], { kind: 'any' }],
    ['SCRIPT KILL (not fanned out)', ['SCRIPT', 'KILL'], { kind: 'any' }],
    ['FUNCTION LIST (not fanned out)', ['FUNCTION', 'LIST'], { kind: 'any' }],
    ['SCRIPT without a subcommand', ['SCRIPT'], { kind: 'any' }],
  ]
  it.each(cases)('%s', (_, args, plan) => {
    expect(planCommand(args, null)).toEqual(plan)
  })

  const crossslot: [string, Arg[]][] = [
    ['MSETNX', ['MSETNX', 'a', '1', 'b', '2']],
    ['SUNIONSTORE', ['SUNIONSTORE', 'dst', 'a', 'b']],
    ['RENAME', ['RENAME', 'a', 'b']],
    ['EVAL with several keys', ['EVAL', 'return 1', '2', 'a', 'b']],
    ['LMOVE', ['LMOVE', 'a', 'b', 'LEFT', 'RIGHT']],
    ['Buffers', [b('msetnx'), b('c'), b('1'), b('d'), b('2')]],
  ]
  it.each(crossslot)('%s across slots is CROSSSLOT, with the hash-tag hint', (_, args) => {
    const plan = planCommand(args, null)
    expect(plan.kind).toBe('crossslot')
    if (plan.kind !== 'crossslot') return
    expect(plan.message.startsWith(CROSSSLOT_MESSAGE)).toBe(true)
    expect(plan.message).toContain('hash tag')
  })

  it('lets a bad numkeys throw', () => {
    expect(() => planCommand(['EVAL', 'return 1', 'x', 'a'], null)).toThrow(BadRequestError)
    expect(() => planCommand(['EVAL', 'return 1', '5', 'a'], null)).toThrow(BadRequestError)
  })

  it('shares frozen plans for one slot and for any node (no allocation beyond them)', () => {
    const any = planCommand(['PING'], null)
    expect(Object.isFrozen(any)).toBe(true)
    expect(planCommand(['TIME'], null)).toBe(any)
    const slot = planCommand(['GET', 'a'], null)
    expect(Object.isFrozen(slot)).toBe(true)
    expect(planCommand([b('incr'), '{a}x'], null)).toBe(slot)
    expect(planCommand(['MGET', 'a', '{a}x'], null)).toBe(slot)
  })
})

// ---------------------------------------------------------------------------------------------
// planCommand: splits

function split(args: Arg[]): Extract<ClusterPlan, { kind: 'split' }> {
  const plan = planCommand(args, null)
  if (plan.kind !== 'split') throw new Error(`expected a split plan, got ${JSON.stringify(plan)}`)
  return plan
}

describe('planCommand: splits', () => {
  it('MGET: one part per slot in order of first appearance, with the keys positions', () => {
    expect(split(['MGET', 'a', 'b', '{a}x', 'c', 'b', '{b}y', 'a'])).toEqual({
      kind: 'split',
      merge: 'mget',
      keys: 7,
      parts: [
        { slot: A, args: ['MGET', 'a', '{a}x', 'a'], positions: [0, 2, 6] },
        { slot: B, args: ['MGET', 'b', 'b', '{b}y'], positions: [1, 4, 5] },
        { slot: C, args: ['MGET', 'c'], positions: [3] },
      ],
    })
  })

  it('keeps the name and keys as they came (Buffers, any case)', () => {
    expect(split([b('mGeT'), b('{a}x'), 'a', b('d')]).parts).toEqual([
      { slot: A, args: [b('mGeT'), b('{a}x'), 'a'], positions: [0, 1] },
      { slot: D, args: [b('mGeT'), b('d')], positions: [2] },
    ])
  })

  it.each(['DEL', 'UNLINK', 'EXISTS', 'TOUCH', 'del', 'exists'])('%s sums', (name) => {
    expect(split([name, 'a', 'b', 'a'])).toEqual({
      kind: 'split',
      merge: 'sum',
      keys: 3,
      parts: [
        { slot: A, args: [name, 'a', 'a'], positions: [0, 2] },
        { slot: B, args: [name, 'b'], positions: [1] },
      ],
    })
  })

  it('MSET: key-value pairs per slot, all-ok', () => {
    expect(split(['MSET', 'a', '1', 'b', '2', '{a}x', '3', 'c', b('4')])).toEqual({
      kind: 'split',
      merge: 'all-ok',
      keys: 4,
      parts: [
        { slot: A, args: ['MSET', 'a', '1', '{a}x', '3'], positions: [0, 2] },
        { slot: B, args: ['MSET', 'b', '2'], positions: [1] },
        { slot: C, args: ['MSET', 'c', b('4')], positions: [3] },
      ],
    })
  })

  const unsplit: [string, Arg[], ClusterPlan][] = [
    ['MGET in one slot', ['MGET', 'a', '{a}x', 'a'], { kind: 'slot', slot: A }],
    ['DEL of one key', ['DEL', 'b'], { kind: 'slot', slot: B }],
    ['MSET in one slot', ['MSET', 'a', '1', '{a}x', '2'], { kind: 'slot', slot: A }],
    // Malformed: the node answers its own arity error.
    ['MGET without keys', ['MGET'], { kind: 'any' }],
    ['DEL without keys', [b('DEL')], { kind: 'any' }],
    ['MSET without pairs', ['MSET'], { kind: 'any' }],
    ['MSET with a key and no value', ['MSET', 'b'], { kind: 'slot', slot: B }],
    ['MSET with an odd number of arguments', ['MSET', 'c', '1', 'a'], { kind: 'slot', slot: C }],
  ]
  it.each(unsplit)('%s is not split', (_, args, plan) => {
    expect(planCommand(args, null)).toEqual(plan)
  })

  it('property: every key lands once, in its slot, and MGET merges back in order', () => {
    const key = fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.constantFrom('a', 'b', 'c', '{a}1', '{b}2'),
      fc.uint8Array({ maxLength: 6 }).map((u) => Buffer.from(u)),
    )
    fc.assert(
      fc.property(fc.array(key, { minLength: 1, maxLength: 30 }), (keys) => {
        const plan = planCommand(['MGET', ...keys], null)
        const slots = new Set(keys.map((k) => keySlot(k)))
        if (slots.size === 1) {
          expect(plan).toEqual({ kind: 'slot', slot: keySlot(keys[0]!) })
          return
        }
        if (plan.kind !== 'split') throw new Error(`expected a split, got ${plan.kind}`)
        expect(plan.keys).toBe(keys.length)
        expect(plan.parts.map((p) => p.slot)).toEqual([...slots])
        const seen: number[] = []
        for (const part of plan.parts) {
          expect(part.args.length).toBe(part.positions.length + 1)
          part.positions.forEach((at, j) => {
            expect(part.args[j + 1]).toBe(keys[at])
            expect(keySlot(part.args[j + 1]!)).toBe(part.slot)
          })
          seen.push(...part.positions)
        }
        expect(seen.sort((x, y) => x - y)).toEqual(keys.map((_, i) => i))
        // Each node answers with its keys' own positions as values: merged, they come back in order.
        const replies = plan.parts.map((p) => p.positions.map((at) => b(String(at))))
        expect(mergeSplit('mget', plan.parts, replies, plan.keys)).toEqual(keys.map((_, i) => b(String(i))))
      }),
      { numRuns: 300 },
    )
  })
})

// ---------------------------------------------------------------------------------------------
// planCommand: fan-out

describe('planCommand: fan-out to every primary', () => {
  const cases: [Arg[], FanoutMerge][] = [
    [['KEYS', '*'], 'concat'],
    [[b('keys'), b('user:*')], 'concat'],
    [['DBSIZE'], 'sum'],
    [['dbsize'], 'sum'],
    [['FLUSHDB'], 'all-ok'],
    [['FLUSHALL', 'ASYNC'], 'all-ok'],
    [[b('FlushAll')], 'all-ok'],
    [['RANDOMKEY'], 'random-non-null'],
    [['SCRIPT', 'LOAD', 'return 1'], 'first'],
    [[b('script'), b('load'), b('return 1')], 'first'],
    [['SCRIPT', 'EXISTS', 'abc', 'def'], 'and'],
    [['script', 'Exists', 'abc'], 'and'],
    [['SCRIPT', 'FLUSH'], 'all-ok'],
    [['SCRIPT', 'FLUSH', 'SYNC'], 'all-ok'],
    [['FUNCTION', 'LOAD', '#!lua name=lib\nredis.register_function("f", function() return 1 end)'], 'first'],
    [['function', 'load', 'REPLACE', 'code'], 'first'],
    [['FUNCTION', 'FLUSH'], 'all-ok'],
    [['FUNCTION', 'DELETE', 'lib'], 'all-ok'],
    [[b('FUNCTION'), b('delete'), b('lib')], 'all-ok'],
    [['FUNCTION', 'RESTORE', b('dump'), 'REPLACE'], 'all-ok'],
  ]
  it.each(cases)('%j -> %s', (args, merge) => {
    const plan = planCommand(args, null)
    expect(plan).toEqual({ kind: 'fanout', merge })
    expect(Object.isFrozen(plan)).toBe(true)
  })
})

describe('planCommand: PUBLISH', () => {
  it("goes to the channel's slot (where the gateway's subscriptions to it are), hash tags included", () => {
    expect(planCommand(['PUBLISH', 'news', 'hi'], null)).toEqual({ kind: 'slot', slot: keySlot('news') })
    expect(planCommand([b('publish'), b('{u1}:ch'), b('x')], null)).toEqual({ kind: 'slot', slot: keySlot('u1') })
  })
  it('with the wrong number of arguments: any node, which gives its arity error', () => {
    expect(planCommand(['PUBLISH', 'news'], null)).toEqual({ kind: 'any' })
  })
})

// ---------------------------------------------------------------------------------------------
// SCAN

const MAX_U64 = '18446744073709551615'

describe('SCAN', () => {
  const plans: [string, Arg[], ClusterPlan][] = [
    ['the first call', ['SCAN', '0'], { kind: 'scan', shard: 0, args: ['SCAN', '0'] }],
    ['shard 2, node cursor 5', ['scan', String(5 * SLOT_COUNT + 2), 'MATCH', 'a*', 'COUNT', '10'], { kind: 'scan', shard: 2, args: ['SCAN', '5', 'MATCH', 'a*', 'COUNT', '10'] }],
    ['the start of shard 1', ['SCAN', '1'], { kind: 'scan', shard: 1, args: ['SCAN', '0'] }],
    ['a Buffer cursor and options', [b('SCAN'), b('16385'), b('TYPE'), b('string')], { kind: 'scan', shard: 1, args: ['SCAN', '1', b('TYPE'), b('string')] }],
    [
      'the largest node cursor',
      ['SCAN', (BigInt(MAX_U64) * 16384n + 1n).toString()],
      { kind: 'scan', shard: 1, args: ['SCAN', MAX_U64] },
    ],
    [
      'the largest client cursor',
      ['SCAN', (BigInt(MAX_U64) * 16384n + 16383n).toString()],
      { kind: 'scan', shard: 16383, args: ['SCAN', MAX_U64] },
    ],
    ['leading zeros', ['SCAN', '00016386'], { kind: 'scan', shard: 2, args: ['SCAN', '1'] }],
    // Not a non-negative decimal integer within range: any node answers "invalid cursor".
    ['a negative cursor', ['SCAN', '-1'], { kind: 'any' }],
    ['a word', ['SCAN', 'abc'], { kind: 'any' }],
    ['a fraction', ['SCAN', '1.5'], { kind: 'any' }],
    ['an empty cursor', ['SCAN', ''], { kind: 'any' }],
    ['a space', ['SCAN', ' 1'], { kind: 'any' }],
    ['a plus sign', ['SCAN', '+1'], { kind: 'any' }],
    ['a node cursor beyond 64 bits', ['SCAN', (BigInt(MAX_U64) * 16384n + 16384n).toString()], { kind: 'any' }],
    ['a very long cursor', ['SCAN', '1'.repeat(10_000)], { kind: 'any' }],
    ['a very long Buffer cursor', ['SCAN', b('1'.repeat(10_000))], { kind: 'any' }],
    ['no cursor', ['SCAN'], { kind: 'any' }],
  ]
  it.each(plans)('planCommand: %s', (_, args, plan) => {
    expect(planCommand(args, null)).toEqual(plan)
  })

  const replies: [string, RawReply, number, number, RawReply][] = [
    ['first shard, more to come', [b('17'), [b('k')]], 0, 3, [b(String(17 * SLOT_COUNT)), [b('k')]]],
    ['middle shard, more to come', [b('17'), []], 1, 3, [b(String(17 * SLOT_COUNT + 1)), []]],
    ['first shard done: the next shard', [b('0'), [b('k')]], 0, 3, [b('1'), [b('k')]]],
    ['middle shard done: the next shard', [b('0'), []], 1, 3, [b('2'), []]],
    ['last shard done: done', [b('0'), [b('z')]], 2, 3, [b('0'), [b('z')]]],
    ['a single shard done', [b('0'), []], 0, 1, [b('0'), []]],
    ['the largest node cursor', [b(MAX_U64), []], 2, 3, [b((BigInt(MAX_U64) * 16384n + 2n).toString()), []]],
    ['a string cursor stays a string', ['5', []], 1, 3, [String(5 * SLOT_COUNT + 1), []]],
  ]
  it.each(replies)('scanReply: %s', (_, reply, shard, shards, expected) => {
    expect(scanReply(reply, shard, shards)).toEqual(expected)
  })

  it('round trips: the rewritten cursor plans the next call on the right shard and node cursor', () => {
    const shards = 5
    const cases: [string, number][] = [
      ['0', 0],
      ['1', 0],
      ['123456789', 2],
      ['987654321987654321', 4],
      [MAX_U64, 3],
      ['1', shards - 1],
    ]
    for (const [nodeCursor, shard] of cases) {
      const reply = scanReply([b(nodeCursor), []], shard, shards) as RawReply[]
      const plan = planCommand(['SCAN', reply[0] as Buffer, 'COUNT', '5'], null)
      if (nodeCursor !== '0') expect(plan).toEqual({ kind: 'scan', shard, args: ['SCAN', nodeCursor, 'COUNT', '5'] })
      else if (shard + 1 < shards) expect(plan).toEqual({ kind: 'scan', shard: shard + 1, args: ['SCAN', '0', 'COUNT', '5'] })
      else expect((reply[0] as Buffer).toString()).toBe('0')
    }
  })

  it('scanReply: an error passes through; a malformed reply is a ClusterMergeError', () => {
    const error = new Error('ERR invalid cursor')
    expect(scanReply(error, 0, 3)).toBe(error)
    for (const bad of [null, b('x'), [b('1')], [b('abc'), []], [b('-1'), []], [b('18446744073709551616'), []], [null, []]] as RawReply[]) {
      expect(scanReply(bad, 0, 3)).toBeInstanceOf(ClusterMergeError)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Merges

const parts = (...positions: number[][]): SplitPart[] => positions.map((p, i) => ({ slot: i, args: [], positions: p }))

describe('mergeSplit', () => {
  it('mget: each value at its key position', () => {
    expect(mergeSplit('mget', parts([0, 2, 6], [1, 4, 5], [3]), [[b('a0'), null, b('a6')], [b('b1'), b('b4'), null], [b('c3')]], 7)).toEqual([
      b('a0'),
      b('b1'),
      null,
      b('c3'),
      b('b4'),
      null,
      b('a6'),
    ])
  })

  it('sum: integer replies (decimal text or numbers) summed as decimal text', () => {
    expect(mergeSplit('sum', parts([0], [1], [2]), ['2', '0', '1'], 3)).toBe('3')
    expect(mergeSplit('sum', parts([0], [1]), [4, '5'], 2)).toBe('9')
  })

  it('all-ok: the first reply, as Redis sent it', () => {
    const ok = b('OK')
    expect(mergeSplit('all-ok', parts([0], [1]), [ok, b('OK')], 2)).toBe(ok)
  })

  it('the first error reply wins', () => {
    const e1 = new Error('WRONGTYPE Operation against a key holding the wrong kind of value')
    const e2 = new Error('ERR second')
    expect(mergeSplit('mget', parts([0], [1], [2]), [[b('x')], e1, e2], 3)).toBe(e1)
    expect(mergeSplit('sum', parts([0], [1]), ['1', e2], 2)).toBe(e2)
    expect(mergeSplit('all-ok', parts([0], [1]), [e1, b('OK')], 2)).toBe(e1)
  })

  it('malformed replies are a ClusterMergeError', () => {
    expect(mergeSplit('mget', parts([0, 1], [2]), [[b('x')], [b('y')]], 3)).toBeInstanceOf(ClusterMergeError)
    expect(mergeSplit('mget', parts([0], [1]), [b('x'), [b('y')]], 2)).toBeInstanceOf(ClusterMergeError)
    expect(mergeSplit('mget', parts([0], [5]), [[b('x')], [b('y')]], 2)).toBeInstanceOf(ClusterMergeError)
    expect(mergeSplit('sum', parts([0], [1]), ['1', b('x')], 2)).toBeInstanceOf(ClusterMergeError)
    expect(mergeSplit('sum', parts([0], [1]), ['1', '1.5'], 2)).toBeInstanceOf(ClusterMergeError)
    expect(mergeSplit('sum', parts([0], [1]), ['1'], 2)).toBeInstanceOf(ClusterMergeError)
  })
})

describe('mergeFanout', () => {
  const never = (): number => {
    throw new Error('random() should not be called')
  }

  it('concat flattens the arrays', () => {
    expect(mergeFanout('concat', [[b('a'), b('b')], [], [b('c')]], never)).toEqual([b('a'), b('b'), b('c')])
    expect(mergeFanout('concat', [[b('a')], b('x')], never)).toBeInstanceOf(ClusterMergeError)
  })

  it('sum adds integers as decimal text', () => {
    expect(mergeFanout('sum', ['10', '0', '32'], never)).toBe('42')
    expect(mergeFanout('sum', [null], never)).toBeInstanceOf(ClusterMergeError)
  })

  it('all-ok and first give the first reply', () => {
    const ok = b('OK')
    expect(mergeFanout('all-ok', [ok, b('OK'), b('OK')], never)).toBe(ok)
    const sha = b('e0e1f9fabfc9d4800c877a703b823ac0578ff8db')
    expect(mergeFanout('first', [sha, b('e0e1f9fabfc9d4800c877a703b823ac0578ff8db')], never)).toBe(sha)
  })

  it('random-non-null picks uniformly among the non-nil replies', () => {
    const replies = [null, b('x'), null, b('y'), b('z')]
    expect(mergeFanout('random-non-null', replies, () => 0)).toEqual(b('x'))
    expect(mergeFanout('random-non-null', replies, () => 0.34)).toEqual(b('y'))
    expect(mergeFanout('random-non-null', replies, () => 0.67)).toEqual(b('z'))
    expect(mergeFanout('random-non-null', replies, () => 0.999999)).toEqual(b('z'))
    expect(mergeFanout('random-non-null', replies, () => 1)).toEqual(b('z')) // a random() out of range stays in bounds
    expect(mergeFanout('random-non-null', [null, null], () => 0.5)).toBeNull()
  })

  it('and: 1 only where every node says 1, in the replies form', () => {
    expect(mergeFanout('and', [['1', '1', '0'], ['1', '0', '0'], ['1', '1', '1']], never)).toEqual(['1', '0', '0'])
    expect(mergeFanout('and', [[1, 1], [0, 1]], never)).toEqual([0, 1])
    expect(mergeFanout('and', [['1'], ['1', '1']], never)).toBeInstanceOf(ClusterMergeError)
    expect(mergeFanout('and', [['1'], [b('1')]], never)).toBeInstanceOf(ClusterMergeError)
  })

  it.each<FanoutMerge>(['concat', 'sum', 'all-ok', 'random-non-null', 'first', 'and'])('%s: the first error reply wins', (merge) => {
    const e1 = new Error('ERR first')
    const e2 = new Error('ERR second')
    expect(mergeFanout(merge, [merge === 'sum' ? '1' : [b('1')], e1, e2], () => 0)).toBe(e1)
  })
})

// ---------------------------------------------------------------------------------------------
// Against a real Redis Cluster: each plan's parts sent to the node owning their slot, the merged
// reply compared with what a single redis-server answers to the same commands.

describe('against a real Redis Cluster', () => {
  let cluster: RedisCluster
  let single: RedisServer
  const conns: RespConnection[] = []

  async function connect(host: string, port: number): Promise<RespConnection> {
    const conn = new RespConnection(
      { host, port, username: '', password: '', tls: false, connectTimeoutMs: 2_000, retryDelayMs: () => 50 },
      { onReady: () => {}, onClose: () => {} },
    )
    conns.push(conn)
    conn.start()
    await waitFor(() => conn.ready, { message: `a RESP connection to ${port}` })
    return conn
  }

  function call(conn: RespConnection, args: readonly Arg[]): Promise<RawReply> {
    return new Promise((resolve, reject) => {
      if (!conn.command([...args], { reply: (v) => resolve(v as RawReply), lost: reject })) reject(new Error('not ready'))
    })
  }

  let singleConn: RespConnection
  /** RESP connections to the primaries, by port. */
  const byPort = new Map<number, RespConnection>()

  beforeAll(async () => {
    const [c, s] = await Promise.all([startCluster({ shards: 3, replicasPerShard: 0 }), startRedis()])
    cluster = c
    single = s
    singleConn = await connect(single.host, single.port)
    for (const node of cluster.primaries()) byPort.set(node.port, await connect(node.host, node.port))
  }, 30_000)

  afterAll(async () => {
    for (const c of conns) c.stop()
    await Promise.all([cluster?.stop(), single?.stop()])
  })

  const owner = (slot: number): RespConnection => byPort.get(cluster.slotOwner(slot).port)!

  /** A minimal executor: what src/upstream does with a plan, without retries or MOVED handling. */
  async function runOnCluster(args: readonly Arg[]): Promise<RawReply> {
    const plan = planCommand(args, null)
    switch (plan.kind) {
      case 'slot':
        return call(owner(plan.slot), args)
      case 'any':
        return call(byPort.values().next().value!, args)
      case 'split': {
        const replies = await Promise.all(plan.parts.map((p) => call(owner(p.slot), p.args)))
        return mergeSplit(plan.merge, plan.parts, replies, plan.keys)
      }
      case 'fanout': {
        const replies = await Promise.all([...byPort.values()].map((conn) => call(conn, args)))
        return mergeFanout(plan.merge, replies, Math.random)
      }
      case 'scan': {
        const shards = cluster.shards()
        const shard = shards[plan.shard]
        if (shard === undefined) return new Error('ERR invalid cursor')
        const reply = await call(byPort.get(shard.primary.port)!, plan.args)
        return scanReply(reply, plan.shard, shards.length)
      }
      case 'crossslot':
        return new Error(plan.message)
    }
  }

  async function both(args: Arg[]): Promise<{ cluster: RawReply; single: RawReply; plan: ClusterPlan }> {
    const plan = planCommand(args, null)
    const [c, s] = await Promise.all([runOnCluster(args), call(singleConn, args)])
    return { cluster: c, single: s, plan }
  }

  const KEYS = ['a', 'b', 'c', 'd', '{a}x', '{b}y', 'user:1', 'user:2', b('bin\u00ff'), 'k']

  it('MSET, MGET, EXISTS, TOUCH, DEL, UNLINK, DBSIZE, KEYS: the merged replies equal one Redis replies', async () => {
    // The keys span all three shards.
    expect(new Set(KEYS.map((k) => cluster.slotOwner(keySlot(k)).id)).size).toBe(3)

    const mset: Arg[] = ['MSET']
    KEYS.forEach((k, i) => mset.push(k, `v${i}`))
    const steps: Arg[][] = [
      mset,
      ['MGET', 'a', 'missing', 'b', '{a}x', 'c', 'user:1', 'a', b('bin\u00ff'), 'd', 'nope', 'user:2'],
      ['mget', b('{b}y'), 'k', 'b'],
      ['EXISTS', 'a', 'b', 'a', 'nope', 'c', 'user:2'],
      ['TOUCH', 'c', 'd', 'nope'],
      ['DBSIZE'],
      ['DEL', 'a', 'missing', 'b', '{a}x'],
      ['UNLINK', 'c', 'd', 'c'],
      ['MGET', 'a', 'b', 'c', 'd', '{a}x', '{b}y', 'k'],
      ['MSET', 'a', '1', 'b', '2', 'c', '3'],
      ['MGET', 'c', 'b', 'a'],
      ['DBSIZE'],
      // Malformed MSET goes to its first key's slot, whose node answers the arity error.
      ['MSET', 'a', '1', '{a}x'],
      ['MSET', 'b'],
      ['MGET', 'a', '{a}x'], // one slot
    ]
    const kinds: string[] = []
    for (const args of steps) {
      const r = await both(args)
      kinds.push(r.plan.kind)
      if (r.single instanceof Error) {
        expect(r.cluster).toBeInstanceOf(Error)
        expect((r.cluster as Error).message).toBe(r.single.message)
      } else {
        expect(r.cluster, JSON.stringify(args)).toEqual(r.single)
      }
    }
    expect(kinds).toEqual(['split', 'split', 'split', 'split', 'split', 'fanout', 'split', 'split', 'split', 'split', 'split', 'fanout', 'slot', 'slot', 'slot'])

    const keys = await both(['KEYS', '*'])
    const sorted = (v: RawReply): string[] => (v as Buffer[]).map((k) => k.toString('latin1')).sort()
    expect(sorted(keys.cluster)).toEqual(sorted(keys.single))
  })

  it('SCAN walks every shard to the end; RANDOMKEY, SCRIPT LOAD/EXISTS, MSETNX, FLUSHALL', async () => {
    const all = await runOnCluster(['KEYS', '*'])
    const seen: string[] = []
    let cursor: Arg = '0'
    let calls = 0
    do {
      const reply = (await runOnCluster(['SCAN', cursor, 'COUNT', '2'])) as [Buffer, Buffer[]]
      expect(Buffer.isBuffer(reply[0])).toBe(true)
      cursor = reply[0]
      seen.push(...reply[1].map((k) => k.toString('latin1')))
      expect(++calls).toBeLessThan(100)
    } while (cursor.toString() !== '0')
    expect(new Set(seen)).toEqual(new Set((all as Buffer[]).map((k) => k.toString('latin1'))))
    expect(calls).toBeGreaterThanOrEqual(3)

    const random = await runOnCluster(['RANDOMKEY'])
    expect((all as Buffer[]).some((k) => k.equals(random as Buffer))).toBe(true)

    const load = await both(['SCRIPT', 'LOAD', 'return 1'])
    expect(load.cluster).toEqual(load.single)
    const sha = load.single as Buffer
    const exists = await both(['SCRIPT', 'EXISTS', sha, 'ffffffffffffffffffffffffffffffffffffffff'])
    expect(exists.cluster).toEqual(['1', '0'])
    expect(exists.cluster).toEqual(exists.single)
    // Loaded on one node only: not everywhere, so 0.
    await call(owner(keySlot('a')), ['SCRIPT', 'LOAD', 'return 2'])
    const one = (await call(singleConn, ['SCRIPT', 'LOAD', 'return 2'])) as Buffer
    expect(await runOnCluster(['SCRIPT', 'EXISTS', one, sha])).toEqual(['0', '1'])

    // What the node itself answers to MSETNX across slots, with the hint after it.
    const plan = planCommand(['MSETNX', 'a', '1', 'b', '2'], null)
    const nodeReply = await call(owner(keySlot('a')), ['MSETNX', 'a', '1', '{a}z', '2', 'b', '3'])
    expect(nodeReply).toBeInstanceOf(Error)
    expect(plan.kind === 'crossslot' && plan.message.startsWith((nodeReply as Error).message)).toBe(true)

    const flush = await both(['FLUSHALL'])
    expect(flush.cluster).toEqual(flush.single)
    expect(await runOnCluster(['DBSIZE'])).toBe('0')
    expect(await runOnCluster(['RANDOMKEY'])).toBeNull()
    expect(await runOnCluster(['SCAN', '0'])).toEqual([b('1'), []])
  })
})
