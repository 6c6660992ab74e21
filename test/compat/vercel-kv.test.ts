// @vercel/kv, unchanged, through the gateway against a real redis-server. It is @upstash/redis
// with its own defaults (`cache: 'default'`, auto-pipelining on) and async scan iterators; the
// `kv` export reads KV_REST_API_URL and KV_REST_API_TOKEN. Here: values (JSON-like objects round
// trip), hashes, pipelines and transactions, the four scan iterators, concurrency through the
// auto-pipeline, a read-only token, and the env-configured `kv`.

import { randomUUID } from 'node:crypto'
import { createClient, kv, type VercelKV } from '@vercel/kv'
import { describe, expect, test } from 'vitest'
import { READ_TOKEN, WRITE_TOKEN } from '../helpers/gateway.js'
import { redisBehindGateway } from './setup.js'

const env = redisBehindGateway()

function client(token = WRITE_TOKEN): VercelKV {
  return createClient({ url: env.gw.base('main'), token, retry: false })
}

const prefix = (): string => `kv:${randomUUID().slice(0, 8)}:`

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

describe('@vercel/kv', () => {
  test('get/set: strings, numbers and JSON-like objects round trip; ex and nx options', async () => {
    const db = client()
    const p = prefix()
    const user = { id: 7, name: 'Zoë', tags: ['a', 'b'], nested: { ok: true, none: null }, emoji: '🚀' }
    expect(await db.set(`${p}user`, user)).toBe('OK')
    expect(await env.direct.get(`${p}user`)).toBe(JSON.stringify(user))
    expect(await db.get(`${p}user`)).toEqual(user)

    await db.set(`${p}n`, 42)
    expect(await db.get(`${p}n`)).toBe(42)
    expect(await db.incr(`${p}n`)).toBe(43)
    await db.set(`${p}s`, 'plain text')
    expect(await db.get(`${p}s`)).toBe('plain text')
    expect(await db.get(`${p}missing`)).toBeNull()

    expect(await db.set(`${p}s`, 'other', { nx: true })).toBeNull()
    expect(await db.set(`${p}ttl`, 'v', { ex: 100 })).toBe('OK')
    expect(await env.direct.ttl(`${p}ttl`)).toBeGreaterThan(90)
    expect(await db.mget<[typeof user, number, null]>(`${p}user`, `${p}n`, `${p}missing`)).toEqual([user, 43, null])
    expect(await db.del(`${p}user`, `${p}n`)).toBe(2)
  })

  test('hset/hget/hgetall with object values', async () => {
    const db = client()
    const k = `${prefix()}h`
    expect(await db.hset(k, { name: 'ada', age: 36, profile: { langs: ['en'], admin: false } })).toBe(3)
    expect(await db.hget(k, 'name')).toBe('ada')
    expect(await db.hgetall(k)).toEqual({ name: 'ada', age: 36, profile: { langs: ['en'], admin: false } })
    expect(await env.direct.hget(k, 'profile')).toBe('{"langs":["en"],"admin":false}')
    expect(await db.hincrby(k, 'age', 1)).toBe(37)
    expect(await db.hgetall(`${k}:missing`)).toBeNull()
  })

  test('pipeline and multi: results in order, objects parsed', async () => {
    const db = client()
    const p = prefix()
    const results = await db
      .pipeline()
      .set(`${p}a`, { x: 1 })
      .get(`${p}a`)
      .hset(`${p}h`, { f: [1, 2] })
      .hgetall(`${p}h`)
      .lpush(`${p}l`, 'one', 'two')
      .lrange(`${p}l`, 0, -1)
      .exec()
    expect(results).toEqual(['OK', { x: 1 }, 1, { f: [1, 2] }, 2, ['two', 'one']])

    const tx = await db.multi().incr(`${p}c`).incr(`${p}c`).get(`${p}c`).exec()
    expect(tx).toEqual([1, 2, 2])
  })

  test('scanIterator, hscanIterator, sscanIterator, zscanIterator walk everything once', async () => {
    const db = client()
    const p = prefix()
    const keys = Array.from({ length: 120 }, (_, i) => `${p}key:${i}`)
    await env.direct.mset(...keys.flatMap((k) => [k, 'v']))
    const seen = await collect(db.scanIterator({ match: `${p}key:*`, count: 25 }))
    expect(new Set(seen)).toEqual(new Set(keys))

    const fields = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}`, `v${i}`]))
    await db.hset(`${p}hash`, fields)
    const h = await collect(db.hscanIterator(`${p}hash`, { count: 50 }))
    expect(h).toHaveLength(600) // field, value, field, value...
    const pairs = new Map<string, string>()
    for (let i = 0; i < h.length; i += 2) pairs.set(String(h[i]), String(h[i + 1]))
    expect(Object.fromEntries(pairs)).toEqual(fields)

    const members = Array.from({ length: 300 }, (_, i) => `m${i}`)
    await db.sadd(`${p}set`, members[0]!, ...members.slice(1))
    expect(new Set(await collect(db.sscanIterator(`${p}set`, { count: 50 })))).toEqual(new Set(members))

    await db.zadd(`${p}z`, ...members.map((member, i) => ({ score: i, member })) as [{ score: number; member: string }])
    const z = await collect(db.zscanIterator(`${p}z`, { match: 'm1*', count: 50 }))
    const zMembers = z.filter((_, i) => i % 2 === 0)
    expect(new Set(zMembers)).toEqual(new Set(members.filter((m) => m.startsWith('m1'))))
  })

  test('200 concurrent commands through the auto-pipeline (on by default) all succeed, in order', async () => {
    const db = client()
    const p = prefix()
    await Promise.all(Array.from({ length: 200 }, (_, i) => db.set(`${p}${i}`, { i })))
    const values = await Promise.all(Array.from({ length: 200 }, (_, i) => db.get<{ i: number }>(`${p}${i}`)))
    expect(values.map((v) => v?.i)).toEqual(Array.from({ length: 200 }, (_, i) => i))
  })

  test('a read-only token reads, and its writes fail with the gateway FORBIDDEN error', async () => {
    const p = prefix()
    await client().set(`${p}k`, { v: 1 })
    const ro = client(READ_TOKEN)
    expect(await ro.get(`${p}k`)).toEqual({ v: 1 })
    await expect(ro.set(`${p}k`, 'x')).rejects.toThrow(/FORBIDDEN/)
    expect(await env.direct.get(`${p}k`)).toBe('{"v":1}')
  })

  test('the `kv` export, configured by KV_REST_API_URL and KV_REST_API_TOKEN', async () => {
    process.env.KV_REST_API_URL = env.gw.base('main')
    process.env.KV_REST_API_TOKEN = WRITE_TOKEN
    try {
      const k = `${prefix()}env`
      expect(await kv.set(k, { from: 'env' })).toBe('OK')
      expect(await kv.get(k)).toEqual({ from: 'env' })
    } finally {
      delete process.env.KV_REST_API_URL
      delete process.env.KV_REST_API_TOKEN
    }
  })
})
