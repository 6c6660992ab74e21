// GET /admin/routes on an in-process gateway over real redis-servers (a password-protected
// primary, a `--replicaof` replica, and a standalone server behind two instances): roles found by
// ROLE checks, health, breakers, policy and weights from annotations (a bad value and an unknown
// key listed as annotation errors), a drained group member, every reply valid against the
// documented JSON Schema, no secret in it, and a killed replica shown down while the instance
// stays up (degraded) on its primary. Queries over HTTP: pages, filters, the health counts and the
// 400s; without one the reply is the full view, with no page.

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RoutesView } from '../../src/http/routes-view.js'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { assertRoutesView } from '../helpers/routes-schema.js'
import { waitFor } from '../helpers/wait.js'

const A = 'redis-gateway.io/'
const PASSWORD = 'routes-view-secret-7d41c0'

let primary: RedisServer
let replica: RedisServer
let standalone: RedisServer
let gw: TestGateway
let dir: string

const id = (s: RedisServer): string => `127.0.0.1:${s.port}`

/** The full view, or with a query string (`limit=2&...`) one page of it. */
async function routes(query = ''): Promise<RoutesView> {
  const res = await fetch(`${gw.opsUrl}/admin/routes${query === '' ? '' : `?${query}`}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  expect(res.headers.get('cache-control')).toBe('no-store')
  const text = await res.text()
  for (const secret of [PASSWORD, ADMIN_TOKEN, WRITE_TOKEN, READ_TOKEN]) expect(text, 'a secret in /admin/routes').not.toContain(secret)
  const view = JSON.parse(text) as unknown
  assertRoutesView(view, { paged: query !== '' })
  return view as RoutesView
}

const instance = (v: RoutesView, name: string) => {
  const i = v.instances.find((x) => x.name === name)
  if (!i) throw new Error(`no instance ${name} in ${v.instances.map((x) => x.name).join(', ')}`)
  return i
}
const endpoint = (v: RoutesView, name: string, server: RedisServer) => {
  const e = instance(v, name).endpoints.find((x) => x.id === id(server))
  if (!e) throw new Error(`no endpoint ${id(server)} in ${name}`)
  return e
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-routes-'))
  const passwordFile = path.join(dir, 'redis-password')
  await writeFile(passwordFile, PASSWORD)
  primary = await startRedis({ password: PASSWORD })
  replica = await startRedis({ password: PASSWORD, replicaOf: primary })
  standalone = await startRedis({ password: PASSWORD })
  gw = await startGateway({
    instances: [
      {
        name: 'orders',
        endpoints: [id(primary), id(replica)],
        annotations: {
          [`${A}read-policy`]: 'prefer-replica',
          [`${A}groups`]: 'shop',
          [`${A}weight`]: '70',
          [`${A}hedge-after`]: '15ms',
          [`${A}max-replica-lag`]: '2MiB',
          [`${A}strategy`]: 'Round-Robin',
          [`${A}wieght`]: '5',
        },
      },
      { name: 'cache', endpoints: [id(standalone)], annotations: { [`${A}groups`]: 'shop', [`${A}weight`]: '30' } },
      {
        name: 'archive',
        endpoints: [id(standalone)],
        annotations: { [`${A}groups`]: 'shop', [`${A}weight`]: '50', [`${A}maintenance`]: 'drain' },
      },
    ],
    groups: { shop: { strategy: 'weighted' }, spare: { strategy: 'sticky' } },
    extra: {
      redis: { commandTimeout: '2s', connectTimeout: '1s', passwordFile },
      health: { interval: '300ms', timeout: '1s' },
    },
  })
  // Roles come from ROLE checks; the replica reports `connected` once its first sync is done.
  await waitFor(
    async () => {
      const v = await routes()
      return endpoint(v, 'orders', replica).link === 'connected' && instance(v, 'orders').health === 'up' && instance(v, 'cache').health === 'up'
    },
    { timeoutMs: 15_000, message: 'roles and replication link known' },
  )
})

afterAll(async () => {
  await gw?.stop()
  await Promise.all([replica?.stop(), primary?.stop(), standalone?.stop()])
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('GET /admin/routes', () => {
  it('lists instances (sorted), their policy from annotations and the annotation errors', async () => {
    const v = await routes()
    expect(v.version).toBe(1)
    expect(v.zone).toBeNull()
    expect(v.tableVersion).toBeGreaterThan(0)
    expect(Math.abs(Date.parse(v.generatedAt) - Date.now())).toBeLessThan(60_000)
    expect(v.instances.map((i) => i.name)).toEqual(['archive', 'cache', 'orders'])
    const orders = instance(v, 'orders')
    expect(orders).toMatchObject({
      source: 'static',
      maintenance: 'off',
      weight: 70,
      groups: ['shop'],
      readPolicy: 'prefer-replica',
      // The bad value fell back to the default.
      strategy: 'least-request',
      maxReplicaLagBytes: 2 * 1024 * 1024,
      hedgeAfterMs: 15,
      port: null,
    })
    expect(orders.annotationErrors.map((e) => e.key)).toEqual([`${A}strategy`, `${A}wieght`])
    expect(orders.annotationErrors[0]!.value).toBe('Round-Robin')
    expect(orders.annotationErrors[0]!.message).toMatch(/did you mean "round-robin"\?\); using least-request$/)
    expect(orders.annotationErrors[1]!.message).toMatch(/unknown annotation \(did you mean redis-gateway\.io\/weight\?\)/)
    expect(instance(v, 'archive')).toMatchObject({ maintenance: 'drain', weight: 50, annotationErrors: [] })
  })

  it('shows roles found by ROLE, health, closed breakers and replication state', async () => {
    const v = await routes()
    const orders = instance(v, 'orders')
    expect(orders.health).toBe('up')
    expect(orders.primary).toBe(id(primary))
    expect(orders.endpoints.map((e) => e.id)).toEqual([id(primary), id(replica)])
    expect(endpoint(v, 'orders', primary)).toMatchObject({
      role: 'primary',
      isPrimary: true,
      up: true,
      connected: true,
      serving: true,
      reason: null,
      lastError: null,
      link: null,
      lagBytes: null,
      breaker: { state: 'closed', consecutiveFailures: 0, openings: 0, retryInMs: null },
    })
    const r = endpoint(v, 'orders', replica)
    expect(r).toMatchObject({ role: 'replica', isPrimary: false, up: true, serving: true, link: 'connected', breaker: { state: 'closed' } })
    expect(r.lagBytes).toBeGreaterThanOrEqual(0)
    expect(r.lagBytes).toBeLessThanOrEqual(2 * 1024 * 1024)
    expect(r.lastCheckAgoMs).not.toBeNull()
    // One server behind two instances: the same endpoint, the same live state, in both.
    expect(endpoint(v, 'cache', standalone)).toMatchObject({ role: 'primary', isPrimary: true, up: true })
    expect(endpoint(v, 'archive', standalone)).toMatchObject({ role: 'primary', isPrimary: true, up: true })
  })

  it('shows group members with weights, shares and the drained member taking no traffic', async () => {
    const v = await routes()
    expect(v.groups.map((g) => g.name)).toEqual(['shop', 'spare'])
    expect(v.groups[0]).toEqual({
      name: 'shop',
      strategy: 'weighted',
      members: [
        { instance: 'archive', weight: 50, maintenance: 'drain', takingTraffic: false, reason: 'draining', share: null },
        { instance: 'cache', weight: 30, maintenance: 'off', takingTraffic: true, reason: null, share: 0.3 },
        { instance: 'orders', weight: 70, maintenance: 'off', takingTraffic: true, reason: null, share: 0.7 },
      ],
    })
    expect(v.groups[1]).toEqual({ name: 'spare', strategy: 'sticky', members: [] })
  })

  it('latency and in-flight follow real requests', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await fetch(gw.base('orders'), {
        method: 'POST',
        headers: { authorization: `Bearer ${WRITE_TOKEN}` },
        body: JSON.stringify(['SET', `routes:${i}`, 'v']),
      })
      expect(res.status).toBe(200)
    }
    const p = endpoint(await routes(), 'orders', primary)
    expect(p.ewmaMs).not.toBeNull()
    expect(p.ewmaMs!).toBeGreaterThan(0)
    expect(p.inflight).toBe(0)
    expect(p.pending).toBe(0)
  })

  it('a killed replica is shown down with the reason; the instance stays up on its primary (degraded)', async () => {
    await replica.kill()
    const v = await waitFor(
      async () => {
        const view = await routes()
        return endpoint(view, 'orders', replica).up === false && view
      },
      { timeoutMs: 10_000, message: 'the killed replica shown down' },
    )
    const r = endpoint(v, 'orders', replica)
    expect(r.serving).toBe(false)
    expect(r.reason).toMatch(/^(not connected|health check failing)$/)
    expect(r.lastError).toEqual(expect.any(String))
    const orders = instance(v, 'orders')
    expect(orders.health).toBe('degraded')
    expect(orders.primary).toBe(id(primary))
    expect(endpoint(v, 'orders', primary)).toMatchObject({ up: true, serving: true })
    // The group still sends orders its share: its primary serves.
    expect(v.groups[0]!.members.find((m) => m.instance === 'orders')).toMatchObject({ takingTraffic: true, share: 0.7 })
    // What is broken, asked for: the counts and the filter see it too.
    const problems = await routes('health=degraded,down')
    expect(problems.instances.map((i) => i.name)).toEqual(['orders'])
    expect(problems.page).toEqual({ total: 3, matched: 1, offset: 0, returned: 1, next: null, health: { up: 2, degraded: 1, down: 0 } })
    expect(problems.instances[0]).toEqual({ ...orders, endpoints: expect.any(Array), inflight: expect.any(Number), ewmaMs: expect.anything() })
  })
})

describe('GET /admin/routes with a query', () => {
  it('pages through the instances by name with limit and the after cursor', async () => {
    const full = await routes()
    expect(full.page).toBeUndefined()
    const p1 = await routes('limit=2')
    expect(p1.instances.map((i) => i.name)).toEqual(['archive', 'cache'])
    expect(p1.page).toMatchObject({ total: 3, matched: 3, offset: 0, returned: 2, next: 'cache' })
    const p2 = await routes(`limit=2&after=${p1.page!.next}`)
    expect(p2.instances.map((i) => i.name)).toEqual(['orders'])
    expect(p2.page).toMatchObject({ total: 3, matched: 3, offset: 2, returned: 1, next: null })
    expect(p1.tableVersion).toBe(full.tableVersion)
    // The page's instances are the full view's (live figures aside).
    const strip = (i: RoutesView['instances'][number]) => ({ ...i, ewmaMs: null, inflight: 0, endpoints: i.endpoints.map((e) => e.id) })
    expect(p1.instances.map(strip)).toEqual(full.instances.slice(0, 2).map(strip))
  })

  it('filters by name (q, any case; instance, exact) and carries the groups of the page, with its members', async () => {
    const full = await routes()
    const byQ = await routes('q=ORD')
    expect(byQ.instances.map((i) => i.name)).toEqual(['orders'])
    expect(byQ.page).toMatchObject({ total: 3, matched: 1, returned: 1, next: null })
    // The page's member only; its share is over the whole group.
    expect(byQ.groups).toEqual([{ ...full.groups[0]!, members: full.groups[0]!.members.filter((m) => m.instance === 'orders'), memberCount: 3, membersTakingTraffic: 2 }])
    expect(byQ.groups[0]!.members).toEqual([{ instance: 'orders', weight: 70, maintenance: 'off', takingTraffic: true, reason: null, share: 0.7 }])
    const exact = await routes('instance=cache&instance=archive&groups=none')
    expect(exact.instances.map((i) => i.name)).toEqual(['archive', 'cache'])
    expect(exact.groups).toEqual([])
    const all = await routes('groups=all&limit=1')
    expect(all.groups.map((g) => [g.name, g.members.length, g.memberCount])).toEqual([
      ['shop', 3, 3],
      ['spare', 0, 0],
    ])
    expect((await routes('q=nothing-matches')).page).toMatchObject({ matched: 0, returned: 0, next: null })
  })

  it('refuses a bad parameter with 400 and the reason', async () => {
    for (const [qs, error] of [
      ['limit=5000', 'BADREQUEST limit must be an integer from 1 to 1000, got "5000"'],
      ['health=sick', 'BADREQUEST health must be up, degraded or down (several: comma-separated or repeated), got "sick"'],
      ['sort=name', 'BADREQUEST unknown parameter "sort" of /admin/routes; known: instance, q, health, limit, after, groups (docs/admin-routes.md)'],
    ] as const) {
      const res = await fetch(`${gw.opsUrl}/admin/routes?${qs}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      expect(res.status, qs).toBe(400)
      expect(await res.json(), qs).toEqual({ error })
    }
  })
})

describe('GET / (routes page)', () => {
  it('is a self-contained HTML page under a strict Content-Security-Policy', async () => {
    const res = await fetch(`${gw.opsUrl}/`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(res.headers.get('content-security-policy')).toMatch(/^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/)
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    const html = await res.text()
    expect(html).toMatch(/^<!doctype html>/)
    // It polls one page, never the whole table.
    expect(html).toContain("'admin/routes?' + q.toString()")
    expect(html).toContain("new URLSearchParams({ limit: String(PAGE_SIZE) })")
  })
})
