// unstorage's upstash driver (`unstorage/drivers/upstash`), unchanged, through the gateway against a
// real redis-server. The driver builds its own @upstash/redis client from `{ url, token, ...options }`
// (it does not take a client object), prefixes every key with `base` + ':', and lists keys with
// SCAN MATCH '<base>:*' (clear deletes what that finds). Here: setItem/getItem/hasItem/removeItem,
// getItems (MGET), getKeys and clear confined to the base, ttl, and a mount inside a storage.

import { randomUUID } from 'node:crypto'
import { createStorage, type Storage } from 'unstorage'
import upstashDriver from 'unstorage/drivers/upstash'
import { describe, expect, test } from 'vitest'
import { WRITE_TOKEN } from '../helpers/gateway.js'
import { redisBehindGateway } from './setup.js'

const env = redisBehindGateway()

function driver(base: string, extra: { ttl?: number; scanCount?: number } = {}) {
  return upstashDriver({ url: env.gw.base('main'), token: WRITE_TOKEN, base, retry: false, enableTelemetry: false, ...extra })
}

const newBase = (): string => `us${randomUUID().slice(0, 8)}`

describe('unstorage upstash driver', () => {
  test('setItem/getItem/hasItem/removeItem under a base prefix; values as unstorage stores them', async () => {
    const base = newBase()
    const storage: Storage = createStorage({ driver: driver(base) })
    const obj = { a: 1, list: ['x', 'y'], nested: { ok: true }, text: 'héllo 🚀' }

    await storage.setItem('users:1', obj)
    await storage.setItem('users/2', 'plain string') // '/' is a separator like ':'
    await storage.setItem('count', 42)
    await storage.setItem('flag', true)

    // In Redis: '<base>:<key>', objects as JSON text.
    expect(await env.direct.get(`${base}:users:1`)).toBe(JSON.stringify(obj))
    expect(await env.direct.get(`${base}:users:2`)).toBe('plain string')

    expect(await storage.getItem('users:1')).toEqual(obj)
    expect(await storage.getItem('users:2')).toBe('plain string')
    expect(await storage.getItem('count')).toBe(42)
    expect(await storage.getItem('flag')).toBe(true)
    expect(await storage.getItem('missing')).toBeNull()

    expect(await storage.hasItem('users:1')).toBe(true)
    expect(await storage.hasItem('missing')).toBe(false)

    await storage.removeItem('users:1')
    expect(await storage.hasItem('users:1')).toBe(false)
    expect(await env.direct.exists(`${base}:users:1`)).toBe(0)

    expect(await storage.getItems(['users:2', 'count', 'missing'])).toEqual([
      { key: 'users:2', value: 'plain string' },
      { key: 'count', value: 42 },
      { key: 'missing', value: null },
    ])
  })

  test('getKeys (also of a sub-base) and clear see only the base, however many keys there are', async () => {
    const base = newBase()
    const storage = createStorage({ driver: driver(base, { scanCount: 20 }) })
    const outside = `${newBase()}:other`
    await env.direct.set(outside, 'untouched')
    await env.direct.set(`${base}x:lookalike`, 'untouched') // shares the prefix text, not the base

    const keys = Array.from({ length: 150 }, (_, i) => `items:${i}`)
    await Promise.all(keys.map((k, i) => storage.setItem(k, { i })))
    await storage.setItem('meta:version', 3)

    expect((await storage.getKeys()).sort()).toEqual([...keys, 'meta:version'].sort())
    expect((await storage.getKeys('items')).sort()).toEqual([...keys].sort())
    expect(await storage.getKeys('meta:')).toEqual(['meta:version'])

    // (unstorage's clear(base) only clears mounts at or under base: on the root mount, clear('items')
    // does nothing, with the memory driver too. A mount is cleared whole; see the mount test.)
    await storage.clear()
    expect(await storage.getKeys()).toEqual([])
    expect(await env.direct.get(outside)).toBe('untouched')
    expect(await env.direct.get(`${base}x:lookalike`)).toBe('untouched')
  })

  test('ttl: a default for the driver and one per setItem (seconds, SET EX)', async () => {
    const base = newBase()
    const storage = createStorage({ driver: driver(base, { ttl: 100 }) })
    await storage.setItem('a', 'v')
    await storage.setItem('b', 'v', { ttl: 1000 })
    const [a, b] = await Promise.all([env.direct.ttl(`${base}:a`), env.direct.ttl(`${base}:b`)])
    expect(a).toBeGreaterThan(90)
    expect(a).toBeLessThanOrEqual(100)
    expect(b).toBeGreaterThan(990)
    expect(b).toBeLessThanOrEqual(1000)
  })

  test('mounted at a path inside a storage, next to the memory driver', async () => {
    const base = newBase()
    const storage = createStorage()
    storage.mount('cache', driver(base))
    await storage.setItem('cache:page:home', { html: '<h1>hi</h1>' })
    await storage.setItem('local:x', 1) // the memory driver
    expect(await env.direct.get(`${base}:page:home`)).toBe('{"html":"<h1>hi</h1>"}')
    expect(await storage.getItem('cache:page:home')).toEqual({ html: '<h1>hi</h1>' })
    expect((await storage.getKeys()).sort()).toEqual(['cache:page:home', 'local:x'])
    await storage.clear('cache')
    expect(await env.direct.exists(`${base}:page:home`)).toBe(0)
    expect(await storage.getItem('local:x')).toBe(1)
    await storage.dispose()
  })
})
