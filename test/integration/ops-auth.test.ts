// Who may see the topology on the ops port (README "Ops plane", `ops.auth`), on an in-process
// gateway over a real redis-server: by default `/admin/routes` and the page `/` need an admin token
// (Bearer, or `_token`), 401 without one or with an unknown one, 403 for read and write tokens;
// /metrics, /healthz and /readyz stay open; `ops.auth: none` opens the views, and a config reload
// switches between the two at once. No token reaches a log line.

import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway, type TestInstance } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const VIEWS = ['/admin/routes', '/'] as const
const UNKNOWN = 'not-a-known-token-42'

let redis: RedisServer
let gw: TestGateway
const logs: string[] = []

const instances = (): TestInstance[] => [{ name: 'main', endpoints: [`127.0.0.1:${redis.port}`] }]
const get = (url: string, token?: string): Promise<Response> =>
  fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
const errorOf = async (res: Response): Promise<string> => ((await res.json()) as { error: string }).error

beforeAll(async () => {
  redis = await startRedis()
  gw = await startGateway({
    instances: instances(),
    watch: true,
    extra: { log: { level: 'debug' } },
    logDestination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString('utf8'))
        cb()
      },
    }),
  })
})
afterAll(async () => {
  await gw?.stop()
  await redis?.stop()
})

describe('ops.auth: admin (the default)', () => {
  it('no token: 401 with WWW-Authenticate: Bearer and a JSON reason', async () => {
    for (const p of VIEWS) {
      const res = await get(`${gw.opsUrl}${p}`)
      expect(res.status, p).toBe(401)
      expect(res.headers.get('www-authenticate'), p).toBe('Bearer')
      expect(res.headers.get('content-type'), p).toMatch(/^application\/json/)
      expect(res.headers.get('cache-control'), p).toBe('no-store')
      expect(await errorOf(res), p).toBe(
        'UNAUTHORIZED the routing table needs a token; send an admin token: Authorization: Bearer <token>, or open the page as /?_token=<token>',
      )
    }
  })

  it('an unknown token: 401, by Bearer or _token, and the reply does not echo it', async () => {
    for (const p of VIEWS) {
      for (const res of [await get(`${gw.opsUrl}${p}`, UNKNOWN), await get(`${gw.opsUrl}${p}?_token=${UNKNOWN}`)]) {
        expect(res.status, p).toBe(401)
        expect(res.headers.get('www-authenticate'), p).toBe('Bearer')
        const error = await errorOf(res)
        expect(error, p).toMatch(/^UNAUTHORIZED unknown token; /)
        expect(error, p).not.toContain(UNKNOWN)
      }
      // Not a Bearer credential: as on the data plane, the header is what counts, not _token.
      const basic = await fetch(`${gw.opsUrl}${p}?_token=${ADMIN_TOKEN}`, { headers: { authorization: `Basic ${ADMIN_TOKEN}` } })
      expect(basic.status, p).toBe(401)
    }
  })

  it('read and write tokens: 403 FORBIDDEN, by Bearer or _token', async () => {
    for (const p of VIEWS) {
      for (const [name, token] of [['reader', READ_TOKEN], ['writer', WRITE_TOKEN]] as const) {
        for (const res of [await get(`${gw.opsUrl}${p}`, token), await get(`${gw.opsUrl}${p}?_token=${token}`)]) {
          expect(res.status, `${p} ${name}`).toBe(403)
          expect(res.headers.get('www-authenticate')).toBeNull()
          const access = name === 'reader' ? 'read' : 'write'
          expect(await errorOf(res)).toBe(`FORBIDDEN token '${name}' has ${access} access; the routing table needs admin`)
        }
      }
    }
  })

  it('an admin token: 200, by Bearer (any case of the scheme) or _token', async () => {
    for (const res of [
      await get(`${gw.opsUrl}/admin/routes`, ADMIN_TOKEN),
      await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `bearer ${ADMIN_TOKEN}` } }),
      await get(`${gw.opsUrl}/admin/routes?_token=${ADMIN_TOKEN}`),
    ]) {
      expect(res.status).toBe(200)
      expect(res.headers.get('cache-control')).toBe('no-store')
      const view = (await res.json()) as { version: number; instances: { name: string }[] }
      expect(view.version).toBe(1)
      expect(view.instances.map((i) => i.name)).toEqual(['main'])
    }
    for (const res of [await get(`${gw.opsUrl}/`, ADMIN_TOKEN), await get(`${gw.opsUrl}/?_token=${ADMIN_TOKEN}`)]) {
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
      // The token may be in the page's URL: never sent on as a referrer, never cached.
      expect(res.headers.get('referrer-policy')).toBe('no-referrer')
      expect(res.headers.get('cache-control')).toBe('no-store')
      const html = await res.text()
      expect(html).toMatch(/^<!doctype html>/)
      expect(html).not.toContain(ADMIN_TOKEN)
    }
  })

  it('/metrics, /healthz and /readyz need no token; an unknown path is still a 404', async () => {
    for (const p of ['/metrics', '/healthz', '/readyz']) expect((await get(`${gw.opsUrl}${p}`)).status, p).toBe(200)
    expect((await get(`${gw.opsUrl}/nope`)).status).toBe(404)
  })
})

describe('ops.auth: none, and live reloads', () => {
  it('none opens the views to anyone; back to admin closes them, without a restart', async () => {
    await gw.rewrite({ instances: instances(), extra: { log: { level: 'debug' }, ops: { auth: 'none' } } })
    await waitFor(async () => (await get(`${gw.opsUrl}/admin/routes`)).status === 200, { message: 'ops.auth: none applied' })
    const page = await get(`${gw.opsUrl}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toMatch(/^<!doctype html>/)
    // A token sent anyway changes nothing, even an unknown one.
    expect((await get(`${gw.opsUrl}/admin/routes`, UNKNOWN)).status).toBe(200)
    expect((await get(`${gw.opsUrl}/admin/routes`, READ_TOKEN)).status).toBe(200)
    expect(logs.join('')).not.toContain("config key 'ops")

    await gw.rewrite({ instances: instances(), extra: { log: { level: 'debug' } } })
    await waitFor(async () => (await get(`${gw.opsUrl}/admin/routes`)).status === 401, { message: 'ops.auth: admin applied again' })
    expect((await get(`${gw.opsUrl}/`)).status).toBe(401)
    expect((await get(`${gw.opsUrl}/admin/routes`, ADMIN_TOKEN)).status).toBe(200)
  })

  it('a token removed from the config is refused at once', async () => {
    const extra = 'ops-auth-extra-admin-token'
    const tokens = [{ name: 'extra', token: extra, access: 'admin' }]
    await gw.rewrite({ instances: instances(), tokens, extra: { log: { level: 'debug' } } })
    await waitFor(async () => (await get(`${gw.opsUrl}/admin/routes`, extra)).status === 200, { message: 'the new token accepted' })
    await gw.rewrite({ instances: instances(), extra: { log: { level: 'debug' } } })
    await waitFor(async () => (await get(`${gw.opsUrl}/admin/routes`, extra)).status === 401, { message: 'the removed token refused' })
  })

  it('no token, valid or not, is ever logged', () => {
    const text = logs.join('')
    expect(text.length).toBeGreaterThan(0)
    for (const t of [ADMIN_TOKEN, READ_TOKEN, WRITE_TOKEN, UNKNOWN, 'ops-auth-extra-admin-token']) expect(text, t).not.toContain(t)
  })
})

describe('ops.auth: none from the start', () => {
  it('serves the views without a token; probes as before', async () => {
    const open = await startGateway({ instances: instances(), extra: { ops: { auth: 'none' } } })
    try {
      for (const p of [...VIEWS, '/metrics', '/healthz', '/readyz']) expect((await get(`${open.opsUrl}${p}`)).status, p).toBe(200)
    } finally {
      await open.stop()
    }
  })
})
