// Shared setup for the @upstash/redis SDK integration tests (sdk-*.test.ts): one real
// redis-server and one in-process gateway per test file, the official SDK pointed at the
// gateway's instance URL, and a direct ioredis client on the same server for cross-checks.
// Not a test file itself (no .test.ts suffix).

import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll } from 'vitest'
import { Redis, type RedisConfigNodejs } from '@upstash/redis'
import type { Redis as IORedis } from 'ioredis'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'

export const INSTANCE = 'main'

export type SdkOptions = Partial<RedisConfigNodejs>

export interface SdkEnv {
  readonly redis: RedisServer
  readonly gw: TestGateway
  /** A direct ioredis client on the real server (bypasses the gateway). */
  readonly direct: IORedis
  /** The base URL the SDK is given: `{gateway}/v1/instances/main`. */
  readonly baseUrl: string
  /** A new, unchanged @upstash/redis client on the gateway (write token by default). */
  sdk(opts?: SdkOptions): Redis
  /** A fresh key prefix, so every test works on its own keys. */
  prefix(): string
}

/** Registers beforeAll/afterAll that start and stop the server and the gateway for this file. */
export function useSdkEnv(): SdkEnv {
  let redis: RedisServer | undefined
  let gw: TestGateway | undefined
  let direct: IORedis | undefined

  beforeAll(async () => {
    redis = await startRedis()
    gw = await startGateway({ instances: [{ name: INSTANCE, endpoints: [redis.url] }] })
    direct = redis.client()
  })
  afterAll(async () => {
    await gw?.stop()
    await redis?.stop()
  })

  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`${what} not started (beforeAll failed?)`)
    return v
  }

  return {
    get redis() {
      return need(redis, 'redis-server')
    },
    get gw() {
      return need(gw, 'gateway')
    },
    get direct() {
      return need(direct, 'direct client')
    },
    get baseUrl() {
      return need(gw, 'gateway').base(INSTANCE)
    },
    sdk(opts: SdkOptions = {}) {
      return new Redis({
        url: need(gw, 'gateway').base(INSTANCE),
        token: WRITE_TOKEN,
        // Connection failures surface at once instead of after five backoff retries.
        retry: false,
        enableTelemetry: false,
        ...opts,
      })
    },
    prefix() {
      return `sdk:${randomUUID().slice(0, 8)}:`
    },
  }
}

/** Sum of `redis_gateway_requests_total` samples whose labels include all of `labels`. */
export async function requestCount(gw: TestGateway, labels: Record<string, string>): Promise<number> {
  const res = await fetch(`${gw.opsUrl}/metrics`)
  if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`)
  const text = await res.text()
  let total = 0
  for (const line of text.split('\n')) {
    const m = /^redis_gateway_requests_total\{([^}]*)\}\s+(\S+)/.exec(line)
    if (!m) continue
    const have = new Map<string, string>()
    for (const lm of m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(lm[1]!, lm[2]!)
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) total += Number(m[2])
  }
  return total
}
