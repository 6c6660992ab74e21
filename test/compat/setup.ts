// What the compat suites share: one redis-server with the gateway in front of it as instance
// `main`, started before a file's tests and stopped after them.

import type { Redis as IORedis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

export interface OneRedis {
  /** The gateway; `gw.base('main')` is the instance's URL. */
  readonly gw: TestGateway
  /** A client straight to the redis-server, for checking what the gateway did. */
  readonly direct: IORedis
}

/** Registers the file's beforeAll/afterAll; the fields are set once beforeAll has run. */
export function redisBehindGateway(): OneRedis {
  const env = {} as { gw: TestGateway; direct: IORedis; redis: RedisServer }
  beforeAll(async () => {
    env.redis = await startRedis()
    env.direct = env.redis.client()
    env.gw = await startGateway({ instances: [{ name: 'main', endpoints: [env.redis.url] }] })
  })
  afterAll(async () => {
    await env.gw?.stop()
    await env.redis?.stop()
  })
  return env
}
