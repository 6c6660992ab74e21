// The official @upstash/redis SDK, used unchanged, against the gateway against a real
// redis-server: one test per data type, asserting the values the SDK returns and, where it
// matters, what really landed in Redis (through a direct ioredis client).
//
// Note: the gateway runs in this process and makes ioredis's HGETALL reply transformer the
// identity process-wide, so the direct client never uses hgetall here.

import { createHash } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { useSdkEnv } from './sdk-env.js'

const env = useSdkEnv()

describe('SDK strings', () => {
  test('set with ex/px/nx/xx/get options, get, getdel, getex', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const k = `${p}str`

    expect(await sdk.set(k, 'v1')).toBe('OK')
    expect(await env.direct.get(k)).toBe('v1')
    expect(await env.direct.ttl(k)).toBe(-1)

    // NX on an existing key: not set, nil reply.
    expect(await sdk.set(k, 'v-nx', { nx: true })).toBeNull()
    expect(await env.direct.get(k)).toBe('v1')
    // XX on a missing key: not set.
    expect(await sdk.set(`${p}missing`, 'x', { xx: true })).toBeNull()
    expect(await env.direct.exists(`${p}missing`)).toBe(0)
    // NX on a missing key: set.
    expect(await sdk.set(`${p}fresh`, 'f', { nx: true })).toBe('OK')
    expect(await env.direct.get(`${p}fresh`)).toBe('f')

    // GET returns the old value; EX sets a TTL in seconds.
    expect(await sdk.set(k, 'v2', { get: true, ex: 100 })).toBe('v1')
    expect(await env.direct.get(k)).toBe('v2')
    const ttl = await env.direct.ttl(k)
    expect(ttl).toBeGreaterThan(90)
    expect(ttl).toBeLessThanOrEqual(100)

    // XX on an existing key with PX.
    expect(await sdk.set(k, 'v3', { xx: true, px: 50_000 })).toBe('OK')
    const pttl = await env.direct.pttl(k)
    expect(pttl).toBeGreaterThan(40_000)
    expect(pttl).toBeLessThanOrEqual(50_000)

    expect(await sdk.get(k)).toBe('v3')
    expect(await sdk.get(`${p}nope`)).toBeNull()

    // KEEPTTL keeps the TTL across an overwrite; EXAT sets an absolute expiry.
    expect(await sdk.set(k, 'v3', { keepTtl: true })).toBe('OK')
    expect(await env.direct.pttl(k)).toBeGreaterThan(40_000)
    const at = Math.floor(Date.now() / 1000) + 1000
    expect(await sdk.set(`${p}exat`, 'e', { exat: at })).toBe('OK')
    expect(await env.direct.expiretime(`${p}exat`)).toBe(at)

    // GETEX: value back, TTL changed; then PERSIST.
    expect(await sdk.getex(k, { ex: 30 })).toBe('v3')
    const ttl2 = await env.direct.ttl(k)
    expect(ttl2).toBeGreaterThan(20)
    expect(ttl2).toBeLessThanOrEqual(30)
    expect(await sdk.getex(k, { persist: true })).toBe('v3')
    expect(await env.direct.ttl(k)).toBe(-1)

    // GETDEL: value back, key gone.
    expect(await sdk.getdel(k)).toBe('v3')
    expect(await env.direct.exists(k)).toBe(0)
    expect(await sdk.getdel(k)).toBeNull()
  })

  test('mset, mget, incr, incrby, incrbyfloat, decr', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    expect(await sdk.mset({ [`${p}a`]: '1', [`${p}b`]: 'two', [`${p}c`]: 'three' })).toBe('OK')
    expect(await env.direct.mget(`${p}a`, `${p}b`, `${p}c`)).toEqual(['1', 'two', 'three'])
    // The SDK turns numeric strings into numbers.
    expect(await sdk.mget(`${p}a`, `${p}b`, `${p}missing`, `${p}c`)).toEqual([1, 'two', null, 'three'])

    const n = `${p}n`
    expect(await sdk.incr(n)).toBe(1)
    expect(await sdk.incrby(n, 41)).toBe(42)
    expect(await sdk.decr(n)).toBe(41)
    expect(await sdk.decrby(n, 1)).toBe(40)
    expect(await sdk.incrbyfloat(n, 1.5)).toBe(41.5)
    expect(await env.direct.get(n)).toBe('41.5')
    expect(await sdk.incrbyfloat(n, -0.25)).toBe(41.25)
    expect(await sdk.get(n)).toBe(41.25)

    // Negative and big integers survive exactly (within 2^53 for the SDK's JSON numbers).
    expect(await sdk.incrby(`${p}big`, 2 ** 52)).toBe(2 ** 52)
    expect(await sdk.incrby(`${p}neg`, -7)).toBe(-7)
    expect(await env.direct.get(`${p}neg`)).toBe('-7')
  })

  test('append, getrange, setrange, strlen', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}s`
    expect(await sdk.append(k, 'Hello')).toBe(5)
    expect(await sdk.append(k, ' World')).toBe(11)
    expect(await sdk.getrange(k, 0, 4)).toBe('Hello')
    expect(await sdk.getrange(k, -5, -1)).toBe('World')
    expect(await sdk.setrange(k, 6, 'Redis')).toBe(11)
    expect(await sdk.get(k)).toBe('Hello Redis')
    expect(await sdk.strlen(k)).toBe(11)
    // SETRANGE past the end pads with NUL bytes.
    expect(await sdk.setrange(k, 13, '!')).toBe(14)
    expect(await env.direct.getBuffer(k)).toEqual(Buffer.from('Hello Redis\0\0!', 'latin1'))
    expect(await sdk.strlen(`${k}:none`)).toBe(0)
  })
})

describe('SDK keys', () => {
  test('del, exists, expire, ttl, pttl, persist, type, rename', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    await env.direct.mset(`${p}a`, '1', `${p}b`, '2', `${p}c`, '3')
    await env.direct.rpush(`${p}list`, 'x')
    await env.direct.hset(`${p}hash`, 'f', 'v')

    expect(await sdk.exists(`${p}a`, `${p}b`, `${p}none`)).toBe(2)
    expect(await sdk.del(`${p}a`, `${p}b`, `${p}none`)).toBe(2)
    expect(await env.direct.exists(`${p}a`, `${p}b`)).toBe(0)

    expect(await sdk.ttl(`${p}c`)).toBe(-1)
    expect(await sdk.ttl(`${p}none`)).toBe(-2)
    expect(await sdk.expire(`${p}c`, 100)).toBe(1)
    expect(await sdk.expire(`${p}none`, 100)).toBe(0)
    const ttl = await sdk.ttl(`${p}c`)
    expect(ttl).toBeGreaterThan(90)
    expect(ttl).toBeLessThanOrEqual(100)
    const pttl = await sdk.pttl(`${p}c`)
    expect(pttl).toBeGreaterThan(90_000)
    expect(pttl).toBeLessThanOrEqual(100_000)
    expect(await sdk.persist(`${p}c`)).toBe(1)
    expect(await env.direct.ttl(`${p}c`)).toBe(-1)
    expect(await sdk.persist(`${p}c`)).toBe(0)

    expect(await sdk.type(`${p}c`)).toBe('string')
    expect(await sdk.type(`${p}list`)).toBe('list')
    expect(await sdk.type(`${p}hash`)).toBe('hash')
    expect(await sdk.type(`${p}none`)).toBe('none')

    expect(await sdk.ping()).toBe('PONG')
    expect(await sdk.echo('héllo, 世界')).toBe('héllo, 世界')
    expect(await sdk.dbsize()).toBe(await env.dbsize())

    expect(await sdk.rename(`${p}c`, `${p}d`)).toBe('OK')
    expect(await env.direct.exists(`${p}c`)).toBe(0)
    expect(await env.direct.get(`${p}d`)).toBe('3')
    await expect(sdk.rename(`${p}none`, `${p}e`)).rejects.toThrow('ERR no such key')
  })

  test('scan with match and count walks every key exactly once', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const want = Array.from({ length: 37 }, (_, i) => `${p}scan:${i}`)
    await env.direct.mset(...want.flatMap((k) => [k, 'v']))
    await env.direct.rpush(`${p}scan:list`, 'x')

    const seen: string[] = []
    let cursor: string | number = '0'
    let rounds = 0
    do {
      const [next, keys]: [string | number, string[]] = await sdk.scan(cursor, { match: `${p}scan:*`, count: 10 })
      seen.push(...keys)
      cursor = next
      rounds++
    } while (String(cursor) !== '0' && rounds < 1000)
    expect(String(cursor)).toBe('0')
    expect(rounds).toBeGreaterThan(1)
    expect([...new Set(seen)].sort()).toEqual([...want, `${p}scan:list`].sort())

    // TYPE filter.
    const lists: string[] = []
    cursor = '0'
    do {
      const [next, keys]: [string | number, string[]] = await sdk.scan(cursor, { match: `${p}*`, count: 100, type: 'list' })
      lists.push(...keys)
      cursor = next
    } while (String(cursor) !== '0')
    expect(lists).toEqual([`${p}scan:list`])
  })
})

describe('SDK hashes', () => {
  test('hset, hget, hgetall, hmget, hincrby, hdel, hkeys, hvals, hlen, hscan', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}h`
    expect(await sdk.hset(k, { name: 'alice', age: 30, city: 'Zürich' })).toBe(3)
    expect(await env.direct.hget(k, 'name')).toBe('alice')
    expect(await env.direct.hget(k, 'age')).toBe('30')
    expect(await env.direct.hget(k, 'city')).toBe('Zürich')

    expect(await sdk.hget(k, 'name')).toBe('alice')
    expect(await sdk.hget(k, 'nope')).toBeNull()
    expect(await sdk.hgetall(k)).toEqual({ name: 'alice', age: 30, city: 'Zürich' })
    expect(await sdk.hgetall(`${k}:none`)).toBeNull()
    expect(await sdk.hmget(k, 'name', 'nope', 'age')).toEqual({ name: 'alice', nope: null, age: 30 })

    expect(await sdk.hincrby(k, 'age', 5)).toBe(35)
    expect(await sdk.hincrby(k, 'visits', 1)).toBe(1)
    expect(await env.direct.hget(k, 'age')).toBe('35')

    expect(await sdk.hlen(k)).toBe(4)
    expect((await sdk.hkeys(k)).sort()).toEqual(['age', 'city', 'name', 'visits'])
    expect((await sdk.hvals(k)).map(String).sort()).toEqual(['1', '35', 'Zürich', 'alice'].sort())

    expect(await sdk.hdel(k, 'visits', 'nope')).toBe(1)
    expect(await env.direct.hexists(k, 'visits')).toBe(0)
    expect(await sdk.hlen(k)).toBe(3)

    // HSCAN: [cursor, [field, value, ...]].
    const [cursor, flat] = await sdk.hscan(k, 0, { match: 'c*' })
    expect(String(cursor)).toBe('0')
    expect(flat).toEqual(['city', 'Zürich'])
    const [, all] = await sdk.hscan(k, 0, { count: 100 })
    const pairs: Record<string, unknown> = {}
    for (let i = 0; i < all.length; i += 2) pairs[String(all[i])] = all[i + 1]
    expect(pairs).toEqual({ name: 'alice', age: 35, city: 'Zürich' })
  })
})

describe('SDK lists', () => {
  test('push, range, pop with count, len, index, set, insert, rem, trim, move, pos', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const k = `${p}l`
    expect(await sdk.rpush(k, 'a', 'b', 'c')).toBe(3)
    expect(await sdk.lpush(k, 'z', 'y')).toBe(5)
    expect(await sdk.lrange(k, 0, -1)).toEqual(['y', 'z', 'a', 'b', 'c'])
    expect(await env.direct.lrange(k, 0, -1)).toEqual(['y', 'z', 'a', 'b', 'c'])

    expect(await sdk.lpop(k)).toBe('y')
    expect(await sdk.lpop<string[]>(k, 2)).toEqual(['z', 'a'])
    expect(await sdk.rpop(k)).toBe('c')
    expect(await sdk.llen(k)).toBe(1)
    expect(await sdk.lpop(`${p}none`)).toBeNull()
    expect(await sdk.lrange(`${p}none`, 0, -1)).toEqual([])

    expect(await sdk.rpush(k, 'c', 'd', 'c', 'e', 'c')).toBe(6)
    expect(await sdk.lindex(k, 1)).toBe('c')
    expect(await sdk.lindex(k, -1)).toBe('c')
    expect(await sdk.lindex(k, 99)).toBeNull()
    expect(await sdk.lset(k, 0, 'B')).toBe('OK')
    expect(await sdk.linsert(k, 'before', 'd', 'before-d')).toBe(7)
    expect(await sdk.linsert(k, 'after', 'e', 'after-e')).toBe(8)
    expect(await sdk.linsert(k, 'after', 'no-pivot', 'x')).toBe(-1)
    expect(await env.direct.lrange(k, 0, -1)).toEqual(['B', 'c', 'before-d', 'd', 'c', 'e', 'after-e', 'c'])

    expect(await sdk.lpos(k, 'c')).toBe(1)
    expect(await sdk.lpos(k, 'c', { rank: 2 })).toBe(4)
    expect(await sdk.lpos(k, 'c', { count: 0 })).toEqual([1, 4, 7])
    expect(await sdk.lpos(k, 'nope')).toBeNull()

    expect(await sdk.lrem(k, 0, 'c')).toBe(3)
    expect(await sdk.lrange(k, 0, -1)).toEqual(['B', 'before-d', 'd', 'e', 'after-e'])
    expect(await sdk.ltrim(k, 1, 3)).toBe('OK')
    expect(await env.direct.lrange(k, 0, -1)).toEqual(['before-d', 'd', 'e'])

    expect(await sdk.lmove(k, `${p}dst`, 'right', 'left')).toBe('e')
    expect(await sdk.lmove(k, `${p}dst`, 'left', 'left')).toBe('before-d')
    expect(await env.direct.lrange(`${p}dst`, 0, -1)).toEqual(['before-d', 'e'])
    expect(await env.direct.lrange(k, 0, -1)).toEqual(['d'])
  })
})

describe('SDK sets', () => {
  test('sadd, smembers, sismember, smismember, scard, srem, sinter, sunion, sdiff, spop, srandmember, sscan', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const a = `${p}a`
    const b = `${p}b`
    expect(await sdk.sadd(a, 'x', 'y', 'z', 'w')).toBe(4)
    expect(await sdk.sadd(a, 'x')).toBe(0)
    expect(await sdk.sadd(b, 'y', 'z', 'q')).toBe(3)
    expect((await env.direct.smembers(a)).sort()).toEqual(['w', 'x', 'y', 'z'])

    expect((await sdk.smembers(a)).sort()).toEqual(['w', 'x', 'y', 'z'])
    expect(await sdk.sismember(a, 'x')).toBe(1)
    expect(await sdk.sismember(a, 'q')).toBe(0)
    expect(await sdk.smismember(a, ['x', 'q', 'w'])).toEqual([1, 0, 1])
    expect(await sdk.scard(a)).toBe(4)
    expect(await sdk.srem(a, 'w', 'nope')).toBe(1)
    expect(await sdk.scard(a)).toBe(3)

    expect((await sdk.sinter(a, b)).sort()).toEqual(['y', 'z'])
    expect((await sdk.sunion(a, b)).sort()).toEqual(['q', 'x', 'y', 'z'])
    expect(await sdk.sdiff(a, b)).toEqual(['x'])

    const rand = await sdk.srandmember<string>(a)
    expect(['x', 'y', 'z']).toContain(rand)
    const rand2 = await sdk.srandmember<string[]>(a, 2)
    expect(rand2).toHaveLength(2)
    for (const m of rand2 ?? []) expect(['x', 'y', 'z']).toContain(m)
    expect(await sdk.scard(a)).toBe(3)

    const popped = await sdk.spop<string>(a)
    expect(['x', 'y', 'z']).toContain(popped)
    expect(await env.direct.sismember(a, popped!)).toBe(0)
    const popped2 = await sdk.spop<string[]>(a, 5)
    expect([...(popped2 ?? []), popped].sort()).toEqual(['x', 'y', 'z'])
    expect(await env.direct.exists(a)).toBe(0)
    expect(await sdk.spop(a)).toBeNull()

    const [cursor, members] = await sdk.sscan(b, 0, { match: '*', count: 100 })
    expect(String(cursor)).toBe('0')
    expect(members.map(String).sort()).toEqual(['q', 'y', 'z'])
  })
})

describe('SDK sorted sets', () => {
  test('zadd with options, zrange variants, zscore, zincrby, zrank, zrem, zcard, zcount, zrangebyscore, zpopmin', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}z`
    expect(await sdk.zadd(k, { score: 1, member: 'a' }, { score: 2, member: 'b' }, { score: 3, member: 'c' })).toBe(3)
    expect(await env.direct.zrange(k, 0, -1, 'WITHSCORES')).toEqual(['a', '1', 'b', '2', 'c', '3'])

    // NX: existing members untouched, new ones added.
    expect(await sdk.zadd(k, { nx: true }, { score: 10, member: 'a' }, { score: 4, member: 'd' })).toBe(1)
    expect(await env.direct.zscore(k, 'a')).toBe('1')
    // XX + CH: only existing members, count of changed ones.
    expect(await sdk.zadd(k, { xx: true, ch: true }, { score: 5, member: 'b' }, { score: 9, member: 'new' })).toBe(1)
    expect(await env.direct.zscore(k, 'new')).toBeNull()
    // INCR: the new score.
    expect(await sdk.zadd(k, { incr: true }, { score: 0.5, member: 'c' })).toBe(3.5)
    // GT: only raises.
    expect(await sdk.zadd(k, { gt: true, ch: true }, { score: 1, member: 'd' })).toBe(0)
    expect(await env.direct.zscore(k, 'd')).toBe('4')

    // a=1, c=3.5, d=4, b=5
    expect(await sdk.zrange(k, 0, -1)).toEqual(['a', 'c', 'd', 'b'])
    expect(await sdk.zrange(k, 0, -1, { withScores: true })).toEqual(['a', 1, 'c', 3.5, 'd', 4, 'b', 5])
    expect(await sdk.zrange(k, 0, 1, { rev: true })).toEqual(['b', 'd'])
    expect(await sdk.zrange(k, 2, 4, { byScore: true })).toEqual(['c', 'd'])
    expect(await sdk.zrange(k, '-inf' as never, '+inf' as never, { byScore: true, offset: 1, count: 2 })).toEqual(['c', 'd'])
    // ZRANGEBYSCORE itself, through the SDK's generic exec.
    expect(await sdk.exec(['ZRANGEBYSCORE', k, '(1', '4', 'WITHSCORES'])).toEqual(['c', 3.5, 'd', 4])

    expect(await sdk.zscore(k, 'c')).toBe(3.5)
    expect(await sdk.zscore(k, 'nope')).toBeNull()
    expect(await sdk.zincrby(k, 2, 'a')).toBe(3)
    expect(await env.direct.zscore(k, 'a')).toBe('3')
    expect(await sdk.zrank(k, 'a')).toBe(0)
    expect(await sdk.zrank(k, 'b')).toBe(3)
    expect(await sdk.zrank(k, 'nope')).toBeNull()
    expect(await sdk.zcard(k)).toBe(4)
    expect(await sdk.zcount(k, 3.5, 5)).toBe(3)
    expect(await sdk.zcount(k, '-inf', '+inf')).toBe(4)
    expect(await sdk.zrem(k, 'd', 'nope')).toBe(1)
    expect(await sdk.zcard(k)).toBe(3)

    // a=3, c=3.5, b=5
    expect(await sdk.zpopmin(k)).toEqual(['a', 3])
    expect(await sdk.zpopmin(k, 5)).toEqual(['c', 3.5, 'b', 5])
    expect(await env.direct.exists(k)).toBe(0)
  })
})

describe('SDK streams', () => {
  test('xadd, xrange, xrevrange, xlen, xdel, xtrim, xread', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}stream`
    expect(await sdk.xadd(k, '1-1', { name: 'alice', n: 1 })).toBe('1-1')
    expect(await sdk.xadd(k, '2-1', { name: 'bob', n: 2 })).toBe('2-1')
    const auto = await sdk.xadd(k, '*', { name: 'carol', n: 3 })
    expect(auto).toMatch(/^\d+-\d+$/)
    expect(await sdk.xlen(k)).toBe(3)
    expect(await env.direct.xlen(k)).toBe(3)

    expect(await sdk.xrange(k, '-', '+')).toEqual({
      '1-1': { name: 'alice', n: 1 },
      '2-1': { name: 'bob', n: 2 },
      [auto]: { name: 'carol', n: 3 },
    })
    expect(await sdk.xrange(k, '-', '+', 1)).toEqual({ '1-1': { name: 'alice', n: 1 } })
    expect(await sdk.xrevrange(k, '+', '-', 1)).toEqual({ [auto]: { name: 'carol', n: 3 } })

    // XREAD without BLOCK: [[key, [[id, [field, value, ...]], ...]]]
    expect(await sdk.xread(k, '1-1')).toEqual([
      [
        k,
        [
          ['2-1', ['name', 'bob', 'n', 2]],
          [auto, ['name', 'carol', 'n', 3]],
        ],
      ],
    ])
    expect(await sdk.xread(k, auto)).toBeNull()

    expect(await sdk.xdel(k, '2-1')).toBe(1)
    expect(await sdk.xdel(k, '2-1')).toBe(0)
    expect(await sdk.xlen(k)).toBe(2)
    expect(await sdk.xtrim(k, { strategy: 'MAXLEN', threshold: 1, exactness: '=' })).toBe(1)
    expect(await env.direct.xrange(k, '-', '+')).toEqual([[auto, ['name', 'carol', 'n', '3']]])

    // XADD with NOMKSTREAM and a MAXLEN trim.
    expect(await sdk.xadd(`${k}:none`, '*', { a: 1 }, { nomkStream: true })).toBeNull()
    expect(await env.direct.exists(`${k}:none`)).toBe(0)
    const t = `${k}:trimmed`
    for (let i = 1; i <= 4; i++) {
      await sdk.xadd(t, `${i}-0`, { i }, { trim: { type: 'MAXLEN', comparison: '=', threshold: 2 } })
    }
    expect(Object.keys(await sdk.xrange(t, '-', '+'))).toEqual(['3-0', '4-0'])
  })

  test('consumer groups: xgroup create, xreadgroup without block, xack', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}jobs`
    expect(await sdk.xgroup(k, { type: 'CREATE', group: 'workers', id: '$', options: { MKSTREAM: true } })).toBe('OK')
    expect(await env.direct.exists(k)).toBe(1)
    await expect(sdk.xgroup(k, { type: 'CREATE', group: 'workers', id: '$' })).rejects.toThrow(
      'BUSYGROUP Consumer Group name already exists',
    )

    await sdk.xadd(k, '5-1', { job: 'one' })
    await sdk.xadd(k, '5-2', { job: 'two' })
    await sdk.xadd(k, '5-3', { job: 'three' })

    expect(await sdk.xreadgroup('workers', 'w1', k, '>', { count: 2 })).toEqual([
      [
        k,
        [
          ['5-1', ['job', 'one']],
          ['5-2', ['job', 'two']],
        ],
      ],
    ])
    expect(await sdk.xreadgroup('workers', 'w2', k, '>')).toEqual([[k, [['5-3', ['job', 'three']]]]])
    // Nothing new for w1: nil, not a wait (no BLOCK).
    expect(await sdk.xreadgroup('workers', 'w1', k, '>')).toBeNull()

    const pending = (await env.direct.xpending(k, 'workers')) as [number, string, string, [string, string][]]
    expect(pending[0]).toBe(3)

    expect(await sdk.xack(k, 'workers', ['5-1', '5-2'])).toBe(2)
    expect(await sdk.xack(k, 'workers', '5-1')).toBe(0)
    const after = (await env.direct.xpending(k, 'workers')) as [number, string, string, [string, string][]]
    expect(after[0]).toBe(1)
    expect(after[3]).toEqual([['w2', '1']])
    // Re-reading w2's own pending entries (id 0) returns the unacknowledged one.
    expect(await sdk.xreadgroup('workers', 'w2', k, '0')).toEqual([[k, [['5-3', ['job', 'three']]]]])
  })
})

describe('SDK bitmaps and HyperLogLog', () => {
  test('setbit, getbit, bitcount, bitpos, bitop', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const a = `${p}a`
    const b = `${p}b`
    expect(await sdk.setbit(a, 7, 1)).toBe(0)
    expect(await sdk.setbit(a, 7, 1)).toBe(1)
    expect(await sdk.setbit(a, 9, 1)).toBe(0)
    expect(await env.direct.getBuffer(a)).toEqual(Buffer.from([0x01, 0x40]))
    expect(await sdk.getbit(a, 7)).toBe(1)
    expect(await sdk.getbit(a, 8)).toBe(0)
    expect(await sdk.bitcount(a, 0, -1)).toBe(2)
    expect(await sdk.bitcount(a, 1, 1)).toBe(1)
    expect(await sdk.bitpos(a, 1)).toBe(7)
    expect(await sdk.bitpos(a, 0)).toBe(0)
    expect(await sdk.bitpos(a, 1, 1)).toBe(9)

    await env.direct.set(b, Buffer.from([0xff, 0x00]))
    expect(await sdk.bitop('and', `${p}and`, a, b)).toBe(2)
    expect(await env.direct.getBuffer(`${p}and`)).toEqual(Buffer.from([0x01, 0x00]))
    expect(await sdk.bitop('or', `${p}or`, a, b)).toBe(2)
    expect(await env.direct.getBuffer(`${p}or`)).toEqual(Buffer.from([0xff, 0x40]))
    expect(await sdk.bitop('not', `${p}not`, a)).toBe(2)
    expect(await env.direct.getBuffer(`${p}not`)).toEqual(Buffer.from([0xfe, 0xbf]))
  })

  test('pfadd, pfcount, pfmerge', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    expect(await sdk.pfadd(`${p}h1`, 'a', 'b', 'c')).toBe(1)
    expect(await sdk.pfadd(`${p}h1`, 'a')).toBe(0)
    expect(await sdk.pfadd(`${p}h2`, 'c', 'd')).toBe(1)
    expect(await sdk.pfcount(`${p}h1`)).toBe(3)
    expect(await sdk.pfcount(`${p}h1`, `${p}h2`)).toBe(4)
    expect(await sdk.pfmerge(`${p}all`, `${p}h1`, `${p}h2`)).toBe('OK')
    expect(await sdk.pfcount(`${p}all`)).toBe(4)
    expect(await env.direct.pfcount(`${p}all`)).toBe(4)
  })
})

describe('SDK geo', () => {
  test('geoadd, geopos, geodist, geosearch, geohash', async () => {
    const sdk = env.sdk()
    const k = `${env.prefix()}geo`
    expect(
      await sdk.geoadd(
        k,
        { longitude: 13.361389, latitude: 38.115556, member: 'Palermo' },
        { longitude: 15.087269, latitude: 37.502669, member: 'Catania' },
      ),
    ).toBe(2)
    expect(await env.direct.zcard(k)).toBe(2)

    const pos = await sdk.geopos(k, 'Palermo', 'Catania')
    expect(pos).toHaveLength(2)
    expect(pos[0]!.lng).toBeCloseTo(13.361389, 5)
    expect(pos[0]!.lat).toBeCloseTo(38.115556, 5)
    expect(pos[1]!.lng).toBeCloseTo(15.087269, 5)

    const km = await sdk.geodist(k, 'Palermo', 'Catania', 'KM')
    expect(km).toBeCloseTo(166.2742, 3)
    expect(await sdk.geodist(k, 'Palermo', 'Nowhere')).toBeNull()

    const near = await sdk.geosearch(
      k,
      { type: 'FROMLONLAT', coordinate: { lon: 15, lat: 37 } },
      { type: 'BYRADIUS', radius: 200, radiusType: 'KM' },
      'ASC',
      { withDist: true, withCoord: true },
    )
    expect(near.map((r) => r.member)).toEqual(['Catania', 'Palermo'])
    expect(near[0]!.dist).toBeCloseTo(56.4413, 3)
    expect(near[1]!.dist).toBeCloseTo(190.4424, 3)
    expect(near[0]!.coord!.long).toBeCloseTo(15.087269, 5)

    const inBox = await sdk.geosearch(
      k,
      { type: 'FROMMEMBER', member: 'Palermo' },
      { type: 'BYBOX', rect: { width: 100, height: 100 }, rectType: 'KM' },
      'ASC',
    )
    expect(inBox).toEqual([{ member: 'Palermo' }])

    expect(await sdk.geohash(k, 'Palermo', 'Catania')).toEqual(['sqc8b49rny0', 'sqdtr74hyu0'])
  })
})

describe('SDK scripting', () => {
  const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex')

  test('eval, scriptLoad + evalsha, evalRo, evalshaRo', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const k = `${p}k`

    expect(await sdk.eval('return {KEYS[1], ARGV[1], 42, ARGV[2]}', [k], ['v', 'ünï'])).toEqual([k, 'v', 42, 'ünï'])
    expect(await sdk.eval("return redis.call('SET', KEYS[1], ARGV[1])", [k], ['from-lua'])).toBe('OK')
    expect(await env.direct.get(k)).toBe('from-lua')
    expect(await sdk.eval('return nil', [], [])).toBeNull()

    const script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    const sha = await sdk.scriptLoad(script)
    expect(sha).toBe(sha1(script))
    expect(await sdk.evalsha(sha, [`${p}n`], [5])).toBe(5)
    expect(await sdk.evalsha(sha, [`${p}n`], [2])).toBe(7)
    expect(await env.direct.get(`${p}n`)).toBe('7')

    const read = "return redis.call('GET', KEYS[1])"
    expect(await sdk.evalRo(read, [k], [])).toBe('from-lua')
    const readSha = await sdk.scriptLoad(read)
    expect(await sdk.evalshaRo(readSha, [`${p}n`], [])).toBe(7)

    // EVAL_RO really is read-only on the server: a write inside is refused by Redis.
    await expect(sdk.evalRo("return redis.call('SET', KEYS[1], 'x')", [k], [])).rejects.toThrow(
      /Write commands are not allowed from read-only scripts/,
    )
    expect(await env.direct.get(k)).toBe('from-lua')

    await expect(sdk.evalsha('0'.repeat(40), [], [])).rejects.toThrow(/NOSCRIPT No matching script/)
  })

  test("createScript: exec falls back from EVALSHA to EVAL, then uses the cache; readonly evalRo/exec", async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    // A script body unique to this run, so it cannot already be cached on the server.
    const body = `-- ${p}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])`
    const script = sdk.createScript<number>(body)

    const before = await env.commandStats()
    expect(await script.exec([`${p}n`], ['10'])).toBe(10)
    const mid = await env.commandStats()
    // First EVALSHA got NOSCRIPT, so the SDK sent EVAL.
    expect((mid['evalsha'] ?? 0) - (before['evalsha'] ?? 0)).toBe(1)
    expect((mid['eval'] ?? 0) - (before['eval'] ?? 0)).toBe(1)

    expect(await script.exec([`${p}n`], ['5'])).toBe(15)
    const after = await env.commandStats()
    expect((after['evalsha'] ?? 0) - (mid['evalsha'] ?? 0)).toBe(1)
    expect((after['eval'] ?? 0) - (mid['eval'] ?? 0)).toBe(0)
    expect(await env.direct.get(`${p}n`)).toBe('15')

    const ro = sdk.createScript<string, true>(`-- ${p} ro\nreturn redis.call('GET', KEYS[1]) .. ARGV[1]`, { readonly: true })
    expect(await ro.evalRo([`${p}n`], ['!'])).toBe('15!')
    expect(await ro.exec([`${p}n`], ['?'])).toBe('15?')
    const roStats = await env.commandStats()
    expect(roStats['eval_ro'] ?? 0).toBeGreaterThanOrEqual(2)
  })
})
