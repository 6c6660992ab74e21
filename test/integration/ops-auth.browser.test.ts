// The ops page `GET /` and `ops.auth` in real headless Chromium (test/helpers/chromium.ts), against
// an in-process gateway over a real redis-server whose config file is rewritten as the test goes:
// opened as `/?_token=<admin token>` it renders the table, its polls carrying the token as
// `Authorization: Bearer`; without a token (or with a read token) the browser shows the gateway's
// reason, not a blank page; with ops.auth: none it works without a token; and an open page whose
// token stops working (revoked, or ops.auth turned on) says why and keeps the last table.

import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser, Page } from 'playwright-core'
import { findChromium, launchChromium } from '../helpers/chromium.js'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

/** An admin token the test revokes while a page uses it. */
const PAGE_TOKEN = 'ops-auth-page-token'

let redis: RedisServer
let gw: TestGateway
let browser: Browser
const logs: string[] = []

/** The page's globals the callbacks below read (the project compiles without the DOM lib). */
interface G {
  readonly document: {
    addEventListener(type: 'securitypolicyviolation', fn: (e: { violatedDirective: string }) => void): void
    readonly body: { readonly innerText: string }
  }
  __violations?: string[]
}

const config = (ops: 'admin' | 'none', pageToken = true): Omit<TestGatewayOptions, 'watch'> => ({
  instances: [{ name: 'orders', endpoints: [`127.0.0.1:${redis.port}`] }],
  tokens: pageToken ? [{ name: 'page', token: PAGE_TOKEN, access: 'admin' }] : [],
  extra: { ops: { auth: ops }, health: { interval: '300ms', timeout: '1s' }, log: { level: 'debug' } },
})

/** A fresh page that records CSP violations and the Authorization header of each admin/routes poll. */
async function newPage(): Promise<{ page: Page; auth: (string | null)[] }> {
  const page = await browser.newPage()
  page.setDefaultTimeout(10_000)
  await page.addInitScript(() => {
    const g = globalThis as unknown as G
    g.__violations = []
    g.document.addEventListener('securitypolicyviolation', (e) => g.__violations!.push(e.violatedDirective))
  })
  const auth: (string | null)[] = []
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/admin/routes') auth.push(r.headers()['authorization'] ?? null)
  })
  return { page, auth }
}

const shown = (page: Page): Promise<string> => page.evaluate(() => (globalThis as unknown as G).document.body.innerText)
const violations = (page: Page): Promise<string[] | null> => page.evaluate(() => (globalThis as unknown as G).__violations ?? null)
const instanceRow = 'tr.inst[data-instance="orders"]'

// Outside the describe: a missing browser is one failed test with the fix in its message, never a skip.
it('finds Chromium', () => {
  expect(() => findChromium()).not.toThrow()
})

describe('the ops page and ops.auth in Chromium', () => {
  beforeAll(async () => {
    redis = await startRedis()
    gw = await startGateway({
      ...config('admin'),
      watch: true,
      logDestination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          logs.push(chunk.toString('utf8'))
          cb()
        },
      }),
    })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await gw?.stop()
    await redis?.stop()
  })

  it('opened with ?_token=<admin token>: renders the table, each poll sends the token as Bearer', async () => {
    const { page, auth } = await newPage()
    try {
      const res = await page.goto(`${gw.opsUrl}/?_token=${ADMIN_TOKEN}`)
      expect(res?.status()).toBe(200)
      expect(res?.headers()['referrer-policy']).toBe('no-referrer')
      await page.waitForSelector(instanceRow)
      await waitFor(async () => (await page.textContent('#status')) === 'live', { message: 'status live' })
      // A second poll too: the token is kept for the page's life, not only its first fetch.
      await waitFor(() => auth.length >= 2, { timeoutMs: 10_000, message: 'two polls' })
      expect(new Set(auth)).toEqual(new Set([`Bearer ${ADMIN_TOKEN}`]))
      expect(await shown(page)).not.toContain(ADMIN_TOKEN)
      expect(await violations(page)).toEqual([])
    } finally {
      await page.close()
    }
  })

  it('without a token: the 401 reason is shown, not a blank page', async () => {
    const { page } = await newPage()
    try {
      const res = await page.goto(`${gw.opsUrl}/`)
      expect(res?.status()).toBe(401)
      expect(await shown(page)).toContain('UNAUTHORIZED the routing table needs a token; send an admin token')
    } finally {
      await page.close()
    }
  })

  it('with a read token: the 403 reason is shown', async () => {
    const { page } = await newPage()
    try {
      const res = await page.goto(`${gw.opsUrl}/?_token=${READ_TOKEN}`)
      expect(res?.status()).toBe(403)
      expect(await shown(page)).toContain("FORBIDDEN token 'reader' has read access; the routing table needs admin")
    } finally {
      await page.close()
    }
  })

  it('a page whose polls are refused before any table came says why where the table would be', async () => {
    const { page } = await newPage()
    try {
      // The page itself with the token; its polls without (so the real gateway refuses them).
      // The page asks for a page of the table (admin/routes?limit=...): match any query.
      await page.route(/\/admin\/routes(\?|$)/, (route) => {
        const headers = { ...route.request().headers() }
        delete headers['authorization']
        void route.continue({ headers })
      })
      expect((await page.goto(`${gw.opsUrl}/?_token=${ADMIN_TOKEN}`))?.status()).toBe(200)
      await waitFor(async () => (await page.textContent('#status'))?.startsWith('stale: HTTP 401 UNAUTHORIZED '), { message: 'status says 401' })
      expect(await page.textContent('#meta')).toMatch(/^HTTP 401 UNAUTHORIZED the routing table needs a token; .*_token/)
      expect(await page.getAttribute('#status', 'class')).toBe('status stale')
    } finally {
      await page.close()
    }
  })

  it('a revoked token: the open page says 401 and why, and keeps the last table', async () => {
    const { page } = await newPage()
    try {
      await page.goto(`${gw.opsUrl}/?_token=${PAGE_TOKEN}`)
      await page.waitForSelector(instanceRow)
      await gw.rewrite(config('admin', false))
      await waitFor(async () => (await page.textContent('#status'))?.startsWith('stale: HTTP 401 UNAUTHORIZED unknown token; '), {
        message: 'status says the token is unknown',
      })
      expect(await page.$$(instanceRow)).toHaveLength(1)
    } finally {
      await page.close()
    }
  })

  it('ops.auth: none: the page works without a token; turned back to admin, the open page says why', async () => {
    await gw.rewrite(config('none'))
    await waitFor(async () => (await fetch(`${gw.opsUrl}/admin/routes`)).status === 200, { message: 'ops.auth: none applied' })
    const { page, auth } = await newPage()
    try {
      expect((await page.goto(`${gw.opsUrl}/`))?.status()).toBe(200)
      await page.waitForSelector(instanceRow)
      await waitFor(async () => (await page.textContent('#status')) === 'live', { message: 'status live' })
      expect(auth.every((a) => a === null)).toBe(true)
      expect(await violations(page)).toEqual([])

      await gw.rewrite(config('admin'))
      await waitFor(async () => (await page.textContent('#status'))?.startsWith('stale: HTTP 401 UNAUTHORIZED the routing table needs a token'), {
        message: 'status says a token is needed',
      })
      expect(await page.$$(instanceRow)).toHaveLength(1)
    } finally {
      await page.close()
    }
  })

  it('no token reached a log line', () => {
    const text = logs.join('')
    expect(text.length).toBeGreaterThan(0)
    for (const t of [ADMIN_TOKEN, READ_TOKEN, PAGE_TOKEN]) expect(text, t).not.toContain(t)
  })
})
