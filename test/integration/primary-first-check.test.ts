// Writes right after start-up, while the replica's first health check has answered and the
// primary's has not (select.ts findPrimary). The primary sits behind a proxy that delays every
// chunk by DELAY_MS, and the replica replicates through that proxy too, so its ROLE names the
// proxy's address as its primary, as a replica names the primary's Service address in a real
// deployment. Before the fix, writes in that window failed at once with 503 NOENDPOINT ("no healthy
// primary"): a known replica and an unchecked endpoint made no primary. Now the write goes to the
// endpoint the replica follows and succeeds once the slow primary answers.

import { afterAll, beforeAll, expect, test } from 'vitest'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { send } from './replication-env.js'

/**
 * Each chunk through the proxy, each way. The primary's first check needs several round trips of
 * twice this (a wide window after the replica's), while its connection is ready within the 1 s that
 * a request waits for a connection (redis.connectTimeout): a write in the window can succeed.
 */
const DELAY_MS = 100

let primary: RedisServer
let replica: RedisServer
let proxy: FaultProxy
let gw: TestGateway | undefined

beforeAll(async () => {
  primary = await startRedis()
  proxy = await FaultProxy.start({ target: { port: primary.port } })
  replica = await startRedis({ replicaOf: { host: '127.0.0.1', port: proxy.port } })
  const rc = replica.client()
  await waitFor(async () => /master_link_status:up/.test(await rc.info('replication')), {
    timeoutMs: 10_000,
    message: 'the replica to sync through the proxy',
  })
  rc.disconnect()
  // From now on the replication link is slow but up (replication pings every 10 s by default).
  proxy.delay(DELAY_MS)
}, 30_000)

afterAll(async () => {
  await gw?.stop()
  await replica?.stop()
  await proxy?.close()
  await primary?.stop()
})

test('a write sent after the replica is checked and before the primary is goes to the primary', async () => {
  gw = await startGateway({
    instances: [{ name: 'pf', endpoints: [`redis://127.0.0.1:${proxy.port}`, replica.url] }],
  })
  const g = gw
  const find = (port: number) => [...g.gateway.pool.all()].find((e) => e.client.spec.port === port)
  // The window: the replica known (healthy, following the proxy's address), the primary not yet.
  await waitFor(() => find(replica.port)?.state.role === 'replica' && find(replica.port)?.state.healthy === true, {
    timeoutMs: 5_000,
    intervalMs: 5,
    message: "the replica's first check",
  })
  expect(find(proxy.port)?.state.role, 'the primary is still unchecked: the test is in the window').toBe('unknown')
  expect(find(replica.port)?.state.primaryPort).toBe(proxy.port)

  const r = await send(g.base('pf'), ['SET', 'pf:k', 'v'])
  expect(r.status, JSON.stringify(r.body)).toBe(200)
  expect(r.body).toEqual({ result: 'OK' })
  expect(await primary.client().get('pf:k')).toBe('v')
}, 30_000)
