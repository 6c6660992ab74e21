// The gateway's start-up work runs through its one background queue (Gateway.background): an
// endpoint's COMMAND INFO reply is read there, in the same per-turn budget as Kubernetes
// discovery's reconcile chunks (test/kubernetes/discovery-scale.test.ts checks those), not in a
// queue of the pool's own. Against a real redis-server.

import { afterAll, beforeAll, expect, test } from 'vitest'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { call } from '../helpers/rest.js'
import { waitFor } from '../helpers/wait.js'

let redis: RedisServer
let gw: TestGateway
let reads = 0

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({
    instances: [{ name: 'main', endpoints: [redis.url] }],
    beforeStart: (g) => {
      const run = g.background.run.bind(g.background)
      g.background.run = (job) => {
        reads++
        return run(job)
      }
    },
  })
})

afterAll(async () => {
  await gw?.stop()
  await redis?.stop()
})

test("the endpoint's command table is read as a job of the gateway's background queue", async () => {
  await waitFor(() => reads > 0)
  const r = await call(gw.base('main'), WRITE_TOKEN, ['SET', 'background:k', 'v'])
  expect(r.json).toEqual({ result: 'OK' })
})
