// `npm run docs:screenshot`: regenerates docs/img/routes-view.png, the ops page (`GET /`) as
// headless Chromium shows it, over a realistic table built from real redis-servers: an instance
// with a primary and two replicas (one killed, so shown down), a second instance, a drained one
// with an annotation error, and a weighted group of the three. Needs redis-server; Chromium comes
// from npm, like the tests' (test/helpers/chromium.ts). Everything it starts is stopped before it exits.

import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { launchChromium } from '../test/helpers/chromium.js'
import { ADMIN_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../test/helpers/gateway.js'
import { startRedis, type RedisServer } from '../test/helpers/redis-server.js'
import { waitFor } from '../test/helpers/wait.js'
import type { RoutesView } from '../src/http/routes-view.js'

const A = 'redis-gateway.io/'
const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/img/routes-view.png')
const id = (s: RedisServer): string => `127.0.0.1:${s.port}`

const servers: RedisServer[] = []
let gw: TestGateway | undefined

async function main(): Promise<void> {
  const ordersPrimary = await startRedis()
  servers.push(ordersPrimary)
  const [replicaA, replicaB, sessions, legacy] = await Promise.all([
    startRedis({ replicaOf: ordersPrimary }),
    startRedis({ replicaOf: ordersPrimary }),
    startRedis(),
    startRedis(),
  ])
  servers.push(replicaA, replicaB, sessions, legacy)
  gw = await startGateway({
    instances: [
      {
        name: 'orders',
        endpoints: [id(ordersPrimary), id(replicaA), id(replicaB)],
        annotations: { [`${A}read-policy`]: 'prefer-replica', [`${A}groups`]: 'shop', [`${A}weight`]: '90', [`${A}hedge-after`]: '15ms' },
      },
      { name: 'sessions', endpoints: [id(sessions)], annotations: { [`${A}groups`]: 'shop', [`${A}weight`]: '10' } },
      {
        name: 'legacy',
        endpoints: [id(legacy)],
        annotations: { [`${A}maintenance`]: 'drain', [`${A}groups`]: 'shop', [`${A}read-policy`]: 'replicas' },
      },
    ],
    groups: { shop: { strategy: 'weighted' } },
    extra: { health: { interval: '500ms', timeout: '1s' } },
  })
  const g = gw
  const view = async (): Promise<RoutesView> => (await (await fetch(`${g.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as RoutesView
  const endpoint = (v: RoutesView, s: RedisServer) => v.instances.find((i) => i.name === 'orders')!.endpoints.find((e) => e.id === id(s))!
  await waitFor(async () => {
    const v = await view()
    return endpoint(v, replicaA).link === 'connected' && endpoint(v, replicaB).link === 'connected'
  }, { timeoutMs: 15_000, message: 'replicas linked' })

  // Some traffic, so latency and replication offsets have values.
  const send = (instance: string, body: unknown[]): Promise<Response> =>
    fetch(`${g.url}/v1/instances/${instance}`, { method: 'POST', headers: { authorization: `Bearer ${WRITE_TOKEN}` }, body: JSON.stringify(body) })
  for (let i = 0; i < 40; i++) {
    await send('orders', ['SET', `order:${i}`, 'x'.repeat(200)])
    await send('orders', ['GET', `order:${i}`])
    await send('sessions', ['SET', `session:${i}`, 'y'])
  }

  await replicaB.kill()
  await waitFor(async () => endpoint(await view(), replicaB).up === false, { message: 'killed replica shown down' })

  const browser = await launchChromium()
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 560 }, colorScheme: 'light' })
    await page.goto(`${g.opsUrl}/?_token=${ADMIN_TOKEN}`)
    await page.waitForSelector(`tr[data-instance="orders"][data-endpoint="${id(replicaB)}"][data-up="false"]`, { timeout: 10_000 })
    await mkdir(path.dirname(OUT), { recursive: true })
    await page.screenshot({ path: OUT, fullPage: true })
  } finally {
    await browser.close()
  }
  console.log(`wrote ${path.relative(process.cwd(), OUT)}`)
}

try {
  await main()
} finally {
  await gw?.stop()
  await Promise.all(servers.map((s) => s.stop()))
}
