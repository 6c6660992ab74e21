// @upstash/lock, unchanged, through the gateway with the real @upstash/redis SDK against a real
// redis-server. The library acquires with `SET id uuid NX PX lease` and releases and extends with
// EVAL scripts that check the holder's uuid first. Here: acquire/release/extend/getStatus, a lease
// that runs out, and mutual exclusion under concurrency (N concurrent acquires of one lock: exactly
// one holds it at a time, checked in memory and by a read-modify-write that would lose updates).

import { randomUUID } from 'node:crypto'
import { Lock } from '@upstash/lock'
import { Redis } from '@upstash/redis'
import { describe, expect, test } from 'vitest'
import { WRITE_TOKEN } from '../helpers/gateway.js'
import { redisBehindGateway } from './setup.js'

const env = redisBehindGateway()

// @upstash/lock ships CommonJS typings, which name @upstash/redis's CommonJS declaration of Redis;
// this ESM file gets the ESM one. Same class at runtime (the library only calls the client it is
// given), so the type is bridged here.
type LockRedis = ConstructorParameters<typeof Lock>[0]['redis']

function sdk(opts: { enableAutoPipelining?: boolean } = {}): LockRedis & Redis {
  return new Redis({ url: env.gw.base('main'), token: WRITE_TOKEN, retry: false, enableTelemetry: false, ...opts }) as unknown as LockRedis & Redis
}

const lockId = (): string => `lock:${randomUUID().slice(0, 8)}`
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe('@upstash/lock', () => {
  test('acquire, getStatus, release; the key holds the holder uuid while acquired', async () => {
    const id = lockId()
    const lock = new Lock({ id, redis: sdk(), lease: 10_000 })
    expect(await lock.getStatus()).toBe('FREE')
    expect(await lock.acquire({ uuid: 'holder-1' })).toBe(true)
    expect(await lock.getStatus()).toBe('ACQUIRED')
    expect(await env.direct.get(id)).toBe('holder-1')
    const pttl = await env.direct.pttl(id)
    expect(pttl).toBeGreaterThan(9_000)
    expect(pttl).toBeLessThanOrEqual(10_000)

    // A second lock object on the same id cannot take it, and cannot release or extend it.
    const other = new Lock({ id, redis: sdk(), retry: { attempts: 2, delay: 10 } })
    expect(await other.acquire()).toBe(false)
    expect(await other.release()).toBe(false)
    expect(await other.extend(1_000)).toBe(false)
    expect(await env.direct.get(id)).toBe('holder-1')

    expect(await lock.release()).toBe(true)
    expect(await env.direct.exists(id)).toBe(0)
    expect(await lock.release()).toBe(false) // already released
    // Now the other one gets it.
    expect(await other.acquire()).toBe(true)
    expect(await other.release()).toBe(true)
  })

  test('extend adds whole seconds to the remaining lease, only for the holder', async () => {
    const id = lockId()
    const lock = new Lock({ id, redis: sdk(), lease: 10_000 })
    expect(await lock.acquire()).toBe(true)
    expect(await lock.extend(5_000)).toBe(true)
    // The script does EXPIRE id (TTL + 5): about 15 s.
    const ttl = await env.direct.ttl(id)
    expect(ttl).toBeGreaterThan(10)
    expect(ttl).toBeLessThanOrEqual(15)
    // The library adds ms / 1000 to the TTL inside Lua: 1500 ms is `EXPIRE id <ttl>.5`, which Redis
    // itself refuses (as it would without the gateway); the lock keeps its lease.
    await expect(lock.extend(1_500)).rejects.toThrow(/value is not an integer/)
    expect(await lock.getStatus()).toBe('ACQUIRED')
    expect(await lock.release()).toBe(true)
    expect(await lock.extend(5_000)).toBe(false) // released: nothing to extend
  })

  test('a lease that ran out frees the lock: another acquires it, and the old holder cannot release it', async () => {
    const id = lockId()
    const first = new Lock({ id, redis: sdk(), lease: 150 })
    expect(await first.acquire()).toBe(true)
    const second = new Lock({ id, redis: sdk(), retry: { attempts: 1, delay: 0 } })
    expect(await second.acquire()).toBe(false)
    await sleep(250)
    expect(await first.getStatus()).toBe('FREE')
    expect(await second.acquire({ lease: 10_000 })).toBe(true)
    expect(await first.release()).toBe(false) // the uuid check in the script keeps the new holder's lock
    expect(await second.getStatus()).toBe('ACQUIRED')
    expect(await second.release()).toBe(true)
  })

  test.each([true, false])('N concurrent acquires of one lock (no retry): exactly one wins (auto-pipelining %s)', async (enableAutoPipelining) => {
    const id = lockId()
    const client = sdk({ enableAutoPipelining })
    const locks = Array.from({ length: 40 }, () => new Lock({ id, redis: client, lease: 10_000, retry: { attempts: 1, delay: 0 } }))
    const won = await Promise.all(locks.map((l) => l.acquire()))
    expect(won.filter(Boolean)).toHaveLength(1)
    const winner = locks[won.indexOf(true)]!
    const statuses = await Promise.all(locks.map((l) => l.getStatus()))
    expect(statuses.filter((s) => s === 'ACQUIRED')).toHaveLength(1)
    expect(await winner.release()).toBe(true)
  })

  test('mutual exclusion: 20 workers, each with its own client, take turns; a non-atomic increment under the lock loses nothing', async () => {
    const id = lockId()
    const counter = `${id}:counter`
    const workers = 20
    const rounds = 3
    let holders = 0
    let maxHolders = 0
    let turns = 0

    const worker = async (): Promise<void> => {
      const client = sdk()
      for (let r = 0; r < rounds; r++) {
        const lock = new Lock({ id, redis: client, lease: 10_000, retry: { attempts: 2_000, delay: 5 } })
        expect(await lock.acquire()).toBe(true)
        holders++
        maxHolders = Math.max(maxHolders, holders)
        // Read, wait, write: without mutual exclusion concurrent workers would overwrite each other.
        const value = Number((await client.get<number>(counter)) ?? 0)
        await sleep(1)
        await client.set(counter, value + 1)
        turns++
        holders--
        expect(await lock.release()).toBe(true)
      }
    }

    await Promise.all(Array.from({ length: workers }, worker))
    expect(maxHolders).toBe(1)
    expect(turns).toBe(workers * rounds)
    expect(await env.direct.get(counter)).toBe(String(workers * rounds))
    expect(await env.direct.exists(id)).toBe(0)
  })
})
