// @upstash/ratelimit, unchanged, through the gateway with the real @upstash/redis SDK: the latest
// release (2.1.0 and later start every script with `#!lua flags=allow-key-locking`, which plain
// Redis refuses; the gateway drops the flag, routing/scripts.ts) and 2.0.x (no shebang).
// Every algorithm keeps its exact limit under concurrency; blockUntilReady, resetUsedTokens,
// getRemaining; MultiRegion across two gateways, each in front of its own redis-server.

import { randomUUID } from 'node:crypto'
import { Redis } from '@upstash/redis'
import * as latest from '@upstash/ratelimit'
import * as v20 from 'upstash-ratelimit-2-0'
import type { Redis as IORedis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { parseInfo, startRedis, type RedisServer } from '../helpers/redis-server.js'

// The two releases' types differ in details the tests do not use: a common shape.
type Duration = `${number} s` | `${number} ms`
interface LimitResult {
  success: boolean
  limit: number
  remaining: number
  reset: number
  pending: Promise<unknown>
}
interface Limiter {
  limit(id: string): Promise<LimitResult>
  blockUntilReady(id: string, timeoutMs: number): Promise<LimitResult>
  resetUsedTokens(id: string): Promise<void>
  getRemaining(id: string): Promise<{ remaining: number; reset: number }>
}
type Algorithm = unknown
interface RegionClass {
  new (config: Record<string, unknown>): Limiter
  fixedWindow(tokens: number, window: Duration): Algorithm
  slidingWindow(tokens: number, window: Duration): Algorithm
  tokenBucket(refillRate: number, interval: Duration, maxTokens: number): Algorithm
  cachedFixedWindow(tokens: number, window: Duration): Algorithm
}
interface MultiRegionClass {
  new (config: Record<string, unknown>): Limiter
  fixedWindow(tokens: number, window: Duration): Algorithm
  slidingWindow(tokens: number, window: Duration): Algorithm
}

const VERSIONS = [
  { name: 'latest', Ratelimit: latest.Ratelimit as unknown as RegionClass, MultiRegion: latest.MultiRegionRatelimit as unknown as MultiRegionClass, shebang: true },
  { name: '2.0.x', Ratelimit: v20.Ratelimit as unknown as RegionClass, MultiRegion: v20.MultiRegionRatelimit as unknown as MultiRegionClass, shebang: false },
]

let redisA: RedisServer
let redisB: RedisServer
let directA: IORedis
let gwA: TestGateway
let gwB: TestGateway

beforeAll(async () => {
  ;[redisA, redisB] = await Promise.all([startRedis(), startRedis()])
  directA = redisA.client()
  ;[gwA, gwB] = await Promise.all([
    startGateway({ instances: [{ name: 'main', endpoints: [redisA.url] }] }),
    startGateway({ instances: [{ name: 'main', endpoints: [redisB.url] }] }),
  ])
})

afterAll(async () => {
  await Promise.all([gwA?.stop(), gwB?.stop()])
  await Promise.all([redisA?.stop(), redisB?.stop()])
})

function sdk(gw: TestGateway, opts: { enableAutoPipelining?: boolean } = {}): Redis {
  return new Redis({ url: gw.base('main'), token: WRITE_TOKEN, retry: false, enableTelemetry: false, ...opts })
}

const id = (): string => randomUUID().slice(0, 8)

/** Options every limiter here gets: no local block cache (it would answer without Redis), no fail-open timeout. */
function region(Ratelimit: RegionClass, limiter: Algorithm, redis: Redis = sdk(gwA), cache = false): Limiter {
  return new Ratelimit({
    redis,
    limiter,
    prefix: `rl:${id()}`,
    ephemeralCache: cache ? new Map() : false,
    timeout: 0,
    analytics: false,
    enableTelemetry: false,
  })
}

async function successes(rl: Limiter, key: string, n: number): Promise<number> {
  const results = await Promise.all(Array.from({ length: n }, () => rl.limit(key)))
  await Promise.all(results.map((r) => r.pending))
  return results.filter((r) => r.success).length
}

async function scriptCalls(): Promise<{ eval: number; evalsha: number }> {
  const info = parseInfo((await directA.info('commandstats')) as string)
  const calls = (name: string): number => Number(/calls=(\d+)/.exec(info[`cmdstat_${name}`] ?? '')?.[1] ?? 0)
  return { eval: calls('eval'), evalsha: calls('evalsha') }
}

describe.each(VERSIONS)('@upstash/ratelimit $name', ({ Ratelimit, MultiRegion, shebang }) => {
  const algorithms: [string, () => Algorithm, boolean][] = [
    ['fixedWindow', () => Ratelimit.fixedWindow(10, '1000 s'), false],
    ['slidingWindow', () => Ratelimit.slidingWindow(10, '1000 s'), false],
    ['tokenBucket', () => Ratelimit.tokenBucket(1, '1000 s', 10), false],
    ['cachedFixedWindow', () => Ratelimit.cachedFixedWindow(10, '1000 s'), true],
  ]

  test.each(algorithms)('%s: exactly the limit passes out of 50 concurrent calls, then none', async (_name, algorithm, cache) => {
    const rl = region(Ratelimit, algorithm(), sdk(gwA), cache)
    const key = id()
    expect(await successes(rl, key, 50)).toBe(10)
    expect(await successes(rl, key, 5)).toBe(0)
    expect(await successes(rl, id(), 3)).toBe(3) // another identifier has its own budget
  })

  test('without auto-pipelining too (one EVALSHA per request instead of a pipeline)', async () => {
    const rl = region(Ratelimit, Ratelimit.slidingWindow(10, '1000 s'), sdk(gwA, { enableAutoPipelining: false }))
    expect(await successes(rl, id(), 30)).toBe(10)
  })

  test('after the first call, each limit() is one EVALSHA in Redis (no NOSCRIPT, no EVAL)', async () => {
    const rl = region(Ratelimit, Ratelimit.fixedWindow(10, '1000 s'), sdk(gwA, { enableAutoPipelining: false }))
    const key = id()
    await rl.limit(key)
    await directA.config('RESETSTAT')
    for (let i = 0; i < 3; i++) expect((await rl.limit(key)).success).toBe(true)
    expect(await scriptCalls()).toEqual({ eval: 0, evalsha: 3 })
    if (shebang) {
      // The library's sha for its fixed-window script (sha1 of the text with `#!lua
      // flags=allow-key-locking`): Redis never had that text, the gateway maps the sha.
      const sha = 'b2efc02798c8e9b471a10f9b1d5745db89923ff3'
      expect(await directA.script('EXISTS', sha)).toEqual([0])
      expect(await sdk(gwA).scriptExists(sha)).toEqual([1])
    }
  })

  test('getRemaining follows the used tokens', async () => {
    for (const algorithm of [Ratelimit.fixedWindow(10, '1000 s'), Ratelimit.slidingWindow(10, '1000 s'), Ratelimit.tokenBucket(1, '1000 s', 10)]) {
      const rl = region(Ratelimit, algorithm)
      const key = id()
      expect((await rl.getRemaining(key)).remaining).toBe(10)
      expect(await successes(rl, key, 3)).toBe(3)
      expect((await rl.getRemaining(key)).remaining).toBe(7)
      expect(await successes(rl, key, 20)).toBe(7)
      expect((await rl.getRemaining(key)).remaining).toBe(0)
    }
  })

  test('resetUsedTokens gives the identifier its whole budget back', async () => {
    for (const algorithm of [Ratelimit.fixedWindow(5, '1000 s'), Ratelimit.slidingWindow(5, '1000 s'), Ratelimit.tokenBucket(1, '1000 s', 5)]) {
      const rl = region(Ratelimit, algorithm)
      const key = id()
      expect(await successes(rl, key, 8)).toBe(5)
      await rl.resetUsedTokens(key)
      expect((await rl.getRemaining(key)).remaining).toBe(5)
      expect(await successes(rl, key, 8)).toBe(5)
    }
  })

  test('blockUntilReady waits for the next window, and gives up at its timeout', async () => {
    for (const algorithm of [Ratelimit.fixedWindow(1, '1 s'), Ratelimit.slidingWindow(1, '1 s'), Ratelimit.tokenBucket(1, '1 s', 1)]) {
      const rl = region(Ratelimit, algorithm)
      const key = id()
      expect((await rl.limit(key)).success).toBe(true)
      expect((await rl.limit(key)).success).toBe(false)
      const started = Date.now()
      expect((await rl.blockUntilReady(key, 5_000)).success).toBe(true)
      expect(Date.now() - started).toBeLessThan(4_000)
    }
    const slow = region(Ratelimit, Ratelimit.fixedWindow(1, '1000 s'))
    const key = id()
    await slow.limit(key)
    const started = Date.now()
    expect((await slow.blockUntilReady(key, 300)).success).toBe(false)
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  test.each([
    ['fixedWindow', () => MultiRegion.fixedWindow(10, '1000 s')],
    ['slidingWindow', () => MultiRegion.slidingWindow(10, '1000 s')],
  ] as const)('MultiRegion %s across two gateways, each with its own Redis', async (_name, algorithm) => {
    const rl = new MultiRegion({
      redis: [sdk(gwA), sdk(gwB)],
      limiter: algorithm(),
      prefix: `rl:${id()}`,
      ephemeralCache: false,
      timeout: 0,
      analytics: false,
      enableTelemetry: false,
    })
    // Calls one after the other (each region synced before the next): exact.
    const key = id()
    let passed = 0
    for (let i = 0; i < 15; i++) {
      const r = await rl.limit(key)
      await r.pending
      if (r.success) passed++
    }
    expect(passed).toBe(10)
    // Both regions hold the same requests once synced.
    const [a, b] = await Promise.all([redisA.client().keys('rl:*'), redisB.client().keys('rl:*')])
    const mine = (keys: string[]) => keys.filter((k) => k.includes(key)).sort()
    expect(mine(a).length).toBeGreaterThan(0)
    expect(mine(a)).toEqual(mine(b))
    // Concurrent calls: each is counted in both regions; the library answers from whichever region
    // replies first and syncs later (eventually consistent by design), so a burst could pass up to
    // twice the limit if the regions ordered it differently. Here both SDK clients send the burst in
    // the same order and each gateway keeps it, so exactly the limit passes (10 in every run so far).
    const burst = id()
    const n = await successes(rl, burst, 40)
    expect(n).toBeGreaterThanOrEqual(10)
    expect(n).toBeLessThanOrEqual(20)
    expect(await successes(rl, burst, 5)).toBe(0)
  })
})
