// The last @upstash/redis suite cases that failed on Redis 7.0:
// XREADGROUP with NOACK, and a large mixed auto-pipelined batch, with the official SDK, unchanged,
// against the gateway against a real redis-server.
//
// What they showed (README "Compatibility", "XREADGROUP NOACK and large auto-pipelined batches"):
// - XREADGROUP ... NOACK passes through: the gateway admits it (no BLOCK) and Redis runs it. The
//   SDK's own test expects XINFO CONSUMERS to be empty afterwards, which is Upstash's server, not
//   Redis: every Redis version registers the consumer on its first XREADGROUP, NOACK or not (with an
//   empty PEL). The gateway answers exactly what Redis answers; this file checks both against a
//   direct client.
// - The SDK's auto-pipeline case (121 commands of every kind in one tick) fails on plain Redis only
//   for JSON.SET/JSON.ARRAPPEND (no RedisJSON module: Redis's own unknown-command error, for those two
//   items only); everything else in the batch succeeds.

import { describe, expect, test } from 'vitest'
import { ADMIN_TOKEN } from '../helpers/gateway.js'
import { useSdkEnv } from './sdk-env.js'

const env = useSdkEnv()

describe('SDK XREADGROUP NOACK', () => {
  test('entries are delivered and not pending; the consumer exists, as Redis itself reports', async () => {
    const sdk = env.sdk()
    const p = env.prefix()
    const key = `${p}stream`
    for (let i = 0; i < 3; i++) await sdk.xadd(key, `1-${i + 1}`, { n: i })
    expect(await sdk.xgroup(key, { type: 'CREATE', group: 'g', id: '0' })).toBe('OK')

    // As the SDK builds it: XREADGROUP GROUP g c COUNT 2 NOACK STREAMS key >
    expect(await sdk.xreadgroup('g', 'c', key, '>', { count: 2, NOACK: true })).toEqual([
      [key, [['1-1', ['n', 0]], ['1-2', ['n', 1]]]],
    ])
    expect(await sdk.xreadgroup('g', 'c', key, '>', { NOACK: true })).toEqual([[key, [['1-3', ['n', 2]]]]])
    expect(await sdk.xreadgroup('g', 'c', key, '>', { NOACK: true })).toBeNull()

    // NOACK: nothing went into the pending entries list.
    const pending = (await sdk.xpending(key, 'g', '-', '+', 10)) as unknown[]
    expect(pending).toEqual([])
    expect(await env.direct.xpending(key, 'g')).toEqual([0, null, null, null])

    // Redis registers the consumer (pending 0); Upstash's server does not, which is what the SDK's
    // own test ("should return 0 items in PEL") expects. Through the gateway: what Redis says.
    const viaGateway = (await sdk.xinfo(key, { type: 'CONSUMERS', group: 'g' })) as unknown[][]
    const direct = (await env.direct.xinfo('CONSUMERS', key, 'g')) as unknown[][]
    expect(viaGateway).toHaveLength(1)
    expect(direct).toHaveLength(1)
    expect(viaGateway[0]!.slice(0, 4)).toEqual(['name', 'c', 'pending', 0])
    expect(direct[0]!.slice(0, 4)).toEqual(['name', 'c', 'pending', 0])
  })
})

describe('SDK large mixed auto-pipelined batches', () => {
  test('the SDK suite batch: every command in one tick, only the module commands fail, each on its own', async () => {
    // The SDK's own test uses a token that may run everything (Upstash's default token): admin here.
    const redis = env.sdk({ enableAutoPipelining: true, token: ADMIN_TOKEN })
    const p = env.prefix()
    let n = 0
    const newKey = (): string => `${p}${n++}`
    const persistentKey = newKey()
    const persistentKey2 = newKey()
    const persistentKey3 = newKey()
    const scriptHash = await redis.scriptLoad('return 1')
    const calls: Array<Promise<unknown>> = [
      redis.append(newKey(), 'hello'),
      redis.bitcount(newKey(), 0, 1),
      redis.bitop('and', newKey(), newKey()),
      redis.bitpos(newKey(), 1, 0),
      redis.dbsize(),
      redis.decr(newKey()),
      redis.decrby(newKey(), 1),
      redis.del(newKey()),
      redis.echo('hello'),
      redis.eval('return ARGV[1]', [], ['Hello']),
      redis.evalsha(scriptHash, [], ['Hello']),
      redis.exists(newKey()),
      redis.expire(newKey(), 5),
      redis.expireat(newKey(), Math.floor(Date.now() / 1000) + 60),
      redis.get(newKey()),
      redis.getbit(newKey(), 0),
      redis.getdel(newKey()),
      redis.getex(newKey()),
      redis.getset(newKey(), 'hello'),
      redis.hdel(newKey(), 'field'),
      redis.hexists(newKey(), 'field'),
      redis.hget(newKey(), 'field'),
      redis.hgetall(newKey()),
      redis.hincrby(newKey(), 'field', 1),
      redis.hincrbyfloat(newKey(), 'field', 1.5),
      redis.hkeys(newKey()),
      redis.hlen(newKey()),
      redis.hmget(newKey(), newKey()),
      redis.hmset(newKey(), { field: 'field', value: 'value' }),
      redis.hscan(newKey(), 0),
      redis.hset(newKey(), { field: 'value' }),
      redis.hsetnx(newKey(), 'field', 'value'),
      redis.hstrlen(newKey(), 'field'),
      redis.hvals(newKey()),
      redis.incr(newKey()),
      redis.incrby(newKey(), 1),
      redis.incrbyfloat(newKey(), 1.5),
      redis.lindex(newKey(), 0),
      redis.linsert(newKey(), 'before', 'pivot', 'value'),
      redis.llen(newKey()),
      redis.lmove(newKey(), newKey(), 'left', 'right'),
      redis.lpop(newKey()),
      redis.lpos(newKey(), 'value'),
      redis.lpush(persistentKey, 'element'),
      redis.lpushx(newKey(), 'element1', 'element2'),
      redis.lrange(newKey(), 0, 1),
      redis.lrem(newKey(), 1, 'value'),
      redis.lset(persistentKey, 0, 'value'),
      redis.ltrim(newKey(), 0, 1),
      redis.hrandfield(newKey()),
      redis.hrandfield(newKey(), 2),
      redis.hrandfield(newKey(), 3, true),
      redis.mget(newKey(), newKey()),
      redis.mset({ [newKey()]: 'value', [newKey()]: 'value' }),
      redis.msetnx({ [newKey()]: 'value', [newKey()]: 'value' }),
      redis.persist(newKey()),
      redis.pexpire(newKey(), 1000),
      redis.pexpireat(newKey(), Date.now() + 1000),
      redis.ping(),
      redis.psetex(newKey(), 1, 'value'),
      redis.pttl(newKey()),
      redis.publish(`${p}test`, 'hello'),
      redis.randomkey(),
      redis.rename(persistentKey, persistentKey2),
      redis.renamenx(persistentKey2, newKey()),
      redis.rpop(newKey()),
      redis.rpush(newKey(), 'element1', 'element2'),
      redis.rpushx(newKey(), 'element1', 'element2'),
      redis.sadd(newKey(), 'member1', 'member2'),
      redis.scard(newKey()),
      redis.sdiff(newKey()),
      redis.sdiffstore(newKey(), newKey()),
      redis.set(newKey(), 'value'),
      redis.setbit(newKey(), 1, 1),
      redis.setex(newKey(), 1, 'value'),
      redis.setnx(newKey(), 'value'),
      redis.setrange(newKey(), 1, 'value'),
      redis.sinter(newKey(), newKey()),
      redis.sinterstore(newKey(), newKey()),
      redis.sismember(newKey(), 'member'),
      redis.smembers(newKey()),
      redis.smove(newKey(), newKey(), 'member'),
      redis.spop(newKey()),
      redis.srandmember(newKey()),
      redis.srem(newKey(), 'member'),
      redis.sscan(newKey(), 0),
      redis.strlen(newKey()),
      redis.sunion(newKey()),
      redis.sunionstore(newKey(), newKey()),
      redis.time(),
      redis.touch(newKey()),
      redis.ttl(newKey()),
      redis.type(newKey()),
      redis.unlink(newKey()),
      redis.zadd(newKey(), { score: 0, member: 'member' }),
      redis.zcard(newKey()),
      redis.scriptExists(scriptHash),
      redis.scriptLoad('return 1'),
      redis.zcount(newKey(), 0, 1),
      redis.zincrby(newKey(), 1, 'member'),
      redis.zinterstore(newKey(), 1, [newKey()]),
      redis.zlexcount(newKey(), '-', '+'),
      redis.zpopmax(newKey()),
      redis.zpopmin(newKey()),
      redis.zrange(newKey(), 0, 1),
      redis.zrank(newKey(), 'member'),
      redis.zrem(newKey(), 'member'),
      redis.zremrangebylex(newKey(), '-', '+'),
      redis.zremrangebyrank(newKey(), 0, 1),
      redis.zremrangebyscore(newKey(), 0, 1),
      redis.zrevrank(newKey(), 'member'),
      redis.zscan(newKey(), 0),
      redis.zscore(newKey(), 'member'),
      redis.zunionstore(newKey(), 1, [newKey()]),
      redis.zunion(1, [newKey()]),
      redis.json.set(persistentKey3, '$', { log: ['one', 'two'] }),
      redis.json.arrappend(persistentKey3, '$.log', '"three"'),
    ]
    const settled = await Promise.allSettled(calls)
    const failed = settled.flatMap((r, i) => (r.status === 'rejected' ? [[i, String((r.reason as Error).message)] as const] : []))
    expect(failed).toEqual([
      [calls.length - 2, "Command failed: ERR unknown command 'JSON.SET'"],
      [calls.length - 1, "Command failed: ERR unknown command 'JSON.ARRAPPEND'"],
    ])
    expect(settled[8]).toEqual({ status: 'fulfilled', value: 'hello' }) // echo
    expect(settled[9]).toEqual({ status: 'fulfilled', value: 'Hello' }) // eval
  })

  test('1200 mixed reads and writes with 32 KiB values in one tick all succeed', async () => {
    const sdk = env.sdk({ enableAutoPipelining: true })
    const p = env.prefix()
    const big = (i: number): string => `${i}:`.padEnd(32 * 1024, 'v')
    await env.direct.set(`${p}seed`, big(-1))
    const n = 1200
    const calls: Array<Promise<unknown>> = []
    const want: unknown[] = []
    let incr = 0
    for (let i = 0; i < n; i++) {
      switch (i % 6) {
        case 0:
          calls.push(sdk.set(`${p}k${i}`, big(i)))
          want.push('OK')
          break
        case 1:
          calls.push(sdk.get(`${p}seed`))
          want.push(big(-1))
          break
        case 2:
          calls.push(sdk.hset(`${p}h${i}`, { a: big(i), b: 'x' }))
          want.push(2)
          break
        case 3:
          calls.push(sdk.strlen(`${p}seed`))
          want.push(32 * 1024)
          break
        case 4:
          calls.push(sdk.incr(`${p}c`))
          want.push(++incr)
          break
        case 5:
          calls.push(sdk.exists(`${p}seed`, `${p}none`))
          want.push(1)
          break
      }
    }
    const got = await Promise.all(calls)
    expect(got.length).toBe(n)
    for (let i = 0; i < n; i++) if (got[i] !== want[i]) expect({ i, got: got[i] }).toEqual({ i, got: want[i] })
    expect(await env.direct.strlen(`${p}k1194`)).toBe(32 * 1024)
    expect(await env.direct.get(`${p}c`)).toBe(String(incr))
  }, 60_000)
})
