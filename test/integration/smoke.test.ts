// First end-to-end check: the official @upstash/redis SDK against the gateway against a real
// redis-server started for this file.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { Redis } from '@upstash/redis'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'

let redis: RedisServer
let gw: TestGateway

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
})
afterAll(async () => {
  await gw?.stop()
  await redis?.stop()
})

describe('smoke', () => {
  test('SDK set/get round trip reaches the real server', async () => {
    const sdk = new Redis({ url: gw.base('main'), token: WRITE_TOKEN })
    expect(await sdk.set('smoke:k', 'v1')).toBe('OK')
    expect(await sdk.get('smoke:k')).toBe('v1')
    const direct = redis.client()
    expect(await direct.get('smoke:k')).toBe('v1')
  })
})
