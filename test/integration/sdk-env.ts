// Shared setup for the @upstash/redis SDK integration tests (sdk-*.test.ts): one Redis backend
// and one in-process gateway per test file, the official SDK pointed at the gateway's instance
// URL, and a direct ioredis client on the same backend for cross-checks.
// Not a test file itself (no .test.ts suffix).
//
// The backend is one redis-server, or with SDK_BACKEND=cluster (the 'sdk-cluster' vitest project)
// a real Redis Cluster of 3 shards with 1 replica each, served by the gateway as a cluster
// instance (detected, not pinned). In cluster mode:
// - `direct` is an ioredis Cluster client (it follows the slots itself);
// - prefix() is hash-tagged (`sdk:{1a2b3c4d}:`), so all of one test's keys share one slot and
//   multi-key commands, scripts and transactions work as on a single Redis. Cross-slot behaviour
//   (splits, CROSSSLOT) is tested elsewhere;
// - per-node state (DBSIZE, commandstats, PUBSUB NUMSUB...) is the sum or union over nodes():
//   use nodes()/primaries()/commandStats()/dbsize() rather than the direct client for those;
// - tests that cannot work on any Redis Cluster are skipped with `test.skipIf(CLUSTER)` and a
//   reason (README "Redis Cluster").

import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll } from 'vitest'
import { Redis, type RedisConfigNodejs } from '@upstash/redis'
import { Cluster as IORedisCluster, type Redis as IORedis } from 'ioredis'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { startCluster, type RedisCluster } from '../helpers/redis-cluster.js'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'

export const INSTANCE = 'main'

/** True when the SDK tests run against a Redis Cluster (SDK_BACKEND=cluster). */
export const CLUSTER = process.env['SDK_BACKEND'] === 'cluster'

/** The cluster the SDK tests use: 3 shards (the minimum) with a replica each. */
export const SDK_CLUSTER = { shards: 3, replicasPerShard: 1 } as const

export type SdkOptions = Partial<RedisConfigNodejs>

export interface SdkEnv {
  /** The one redis-server (single-server mode only: throws in cluster mode). */
  readonly redis: RedisServer
  /** The cluster (cluster mode only: throws otherwise). */
  readonly cluster: RedisCluster
  /** The instance's endpoints as given to the gateway: the server's URL, or every cluster node. */
  readonly endpoints: string[]
  readonly gw: TestGateway
  /** A direct ioredis client on the backend (bypasses the gateway): a Cluster client in cluster mode. */
  readonly direct: IORedis | IORedisCluster
  /** The base URL the SDK is given: `{gateway}/v1/instances/main`. */
  readonly baseUrl: string
  /** A new, unchanged @upstash/redis client on the gateway (write token by default). */
  sdk(opts?: SdkOptions): Redis
  /** A fresh key prefix, so every test works on its own keys (hash-tagged in cluster mode: one slot). */
  prefix(): string
  /** A direct client per server: the one server, or every cluster node (primaries and replicas). */
  nodes(): IORedis[]
  /** A direct client per server that owns keys: the one server, or every cluster primary. */
  primaries(): IORedis[]
  /** Calls per command (lower-case name) since start, summed over primaries(). */
  commandStats(): Promise<Record<string, number>>
  /** Keys in the whole keyspace: DBSIZE summed over primaries(). */
  dbsize(): Promise<number>
}

/** Registers beforeAll/afterAll that start and stop the backend and the gateway for this file. */
export function useSdkEnv(): SdkEnv {
  let redis: RedisServer | undefined
  let cluster: RedisCluster | undefined
  let gw: TestGateway | undefined
  let direct: IORedis | IORedisCluster | undefined
  let endpoints: string[] | undefined
  // Per-node clients (cluster mode), by node address; made on first use, closed by cluster.stop().
  const nodeClients = new Map<string, IORedis>()

  beforeAll(async () => {
    if (CLUSTER) {
      cluster = await startCluster(SDK_CLUSTER)
      endpoints = [...cluster.seeds]
      const c = new IORedisCluster(
        cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
        { clusterRetryStrategy: (times) => Math.min(times * 50, 500) },
      )
      c.on('error', () => {})
      direct = c
    } else {
      redis = await startRedis()
      endpoints = [redis.url]
      direct = redis.client()
    }
    gw = await startGateway({ instances: [{ name: INSTANCE, endpoints }] })
  }, CLUSTER ? 60_000 : undefined)
  afterAll(async () => {
    await gw?.stop()
    if (direct instanceof IORedisCluster) direct.disconnect()
    await cluster?.stop()
    await redis?.stop()
  })

  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`${what} not started (beforeAll failed${CLUSTER ? ', or not in cluster mode' : ', or in cluster mode'}?)`)
    return v
  }

  const clientsOf = (role: 'all' | 'primary'): IORedis[] => {
    if (!CLUSTER) return [need(direct as IORedis | undefined, 'direct client')]
    const c = need(cluster, 'cluster')
    const nodes = role === 'primary' ? c.primaries() : c.nodes.filter((n) => n.isRunning)
    return nodes.map((n) => {
      let client = nodeClients.get(n.address)
      if (client === undefined) {
        client = c.client(n)
        nodeClients.set(n.address, client)
      }
      return client
    })
  }

  const commandStats = async (): Promise<Record<string, number>> => {
    if (!CLUSTER) return need(redis, 'redis-server').commandStats()
    const c = need(cluster, 'cluster')
    const total: Record<string, number> = {}
    for (const stats of await Promise.all(c.primaries().map((n) => n.server.commandStats()))) {
      for (const [name, calls] of Object.entries(stats)) total[name] = (total[name] ?? 0) + calls
    }
    return total
  }

  return {
    get redis() {
      return need(redis, 'redis-server')
    },
    get cluster() {
      return need(cluster, 'cluster')
    },
    get endpoints() {
      return need(endpoints, 'backend')
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
      const id = randomUUID().slice(0, 8)
      return CLUSTER ? `sdk:{${id}}:` : `sdk:${id}:`
    },
    nodes: () => clientsOf('all'),
    primaries: () => clientsOf('primary'),
    commandStats,
    async dbsize() {
      const sizes = await Promise.all(clientsOf('primary').map((c) => c.dbsize()))
      return sizes.reduce((a, b) => a + b, 0)
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
