// The ops page `GET /` in real headless Chromium (from the npm package @sparticuz/chromium, driven by playwright-core)
// against an in-process gateway over real redis-servers: it renders instances, endpoints, roles
// and groups from /admin/routes; it updates live (a killed replica turns down without a reload);
// hostile text is shown as text and never runs; and the page's own script and style run under
// its Content-Security-Policy without a single violation. It polls one page of the table
// (`?limit=`), never the whole of it; search, "problems only" and next/previous ask for other
// pages, and the summary counts instances by health. Chromium missing = failure, not skip.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser, Page } from 'playwright-core'
import { DEFAULT_POLICY } from '../../src/discovery/annotations.js'
import { findChromium, launchChromium } from '../helpers/chromium.js'
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const A = 'redis-gateway.io/'
const HOSTILE_KEY = `${A}<img src=x onerror="window.__xss=1">`
const HOSTILE_VALUE = '<script>window.__xss=2</script>'
const HOSTILE_NAME = '<img src=x onerror=window.__xss=3>'
const HOSTILE_GROUP = '<b onmouseover=window.__xss=4>grp</b>'

let primary: RedisServer
let replica: RedisServer
let gw: TestGateway
let gwStopped = false
let browser: Browser
let page: Page
/** Every /admin/routes request the page made. */
const polled: string[] = []

const id = (s: RedisServer): string => `127.0.0.1:${s.port}`
/** The cell of one endpoint row of one instance (a server behind two instances has two rows). */
const cell = (instance: string, endpoint: string, field: string): string =>
  `tr[data-instance="${instance}"][data-endpoint="${endpoint}"] td[data-field="${field}"]`
const row = (instance: string, endpoint: string): string => `tr[data-instance="${instance}"][data-endpoint="${endpoint}"]`
const shownNames = (p: Page): Promise<(string | null)[]> => p.$$eval('tr.inst [data-field="name"]', (els) => els.map((e) => e.textContent))
/** Waits until the page shows exactly these instances, in this order. */
const showing = (p: Page, names: string[]): Promise<unknown> =>
  waitFor(async () => JSON.stringify(await shownNames(p)) === JSON.stringify(names), { timeoutMs: 10_000, message: `the page showing ${names.join(', ')}` })

/**
 * The page's globals as the callbacks below use them. The callbacks run in Chromium, and the
 * project compiles without the DOM lib, so they reach the page as `globalThis as unknown as G`
 * (a type-only cast: nothing outside the callback is referenced at run time).
 */
interface PageNode {
  readonly textContent: string | null
  readonly attributes: Iterable<{ readonly name: string }>
  getAttribute(name: string): string | null
}
interface G {
  readonly document: {
    querySelectorAll(selector: string): Iterable<PageNode> & { readonly length: number }
    addEventListener(type: 'securitypolicyviolation', fn: (e: { violatedDirective: string; blockedURI: string }) => void): void
    readonly body: { readonly innerText: string }
  }
  __xss?: number
  __violations?: string[]
  __loadMarker?: string
}

// Outside the describe below, so a missing browser is one failed test with the fix in its
// message (the describe's hooks then fail too), never a skip.
it('finds Chromium', () => {
  expect(() => findChromium()).not.toThrow()
})

describe('routes page in Chromium', () => {
  beforeAll(async () => {
    primary = await startRedis()
    replica = await startRedis({ replicaOf: primary })
    gw = await startGateway({
      instances: [
        { name: 'orders', endpoints: [id(primary), id(replica)], annotations: { [`${A}read-policy`]: 'prefer-replica', [`${A}groups`]: 'shop' } },
        {
          name: 'legacy',
          endpoints: [id(primary)],
          annotations: { [`${A}maintenance`]: 'drain', [`${A}groups`]: 'shop', [HOSTILE_KEY]: 'x', [`${A}read-policy`]: HOSTILE_VALUE },
        },
      ],
      extra: { health: { interval: '300ms', timeout: '1s' } },
    })
    browser = await launchChromium()
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    // Failures name the selector well within the test timeout.
    page.setDefaultTimeout(10_000)
    // Runs before the page's own script: records CSP violations (an injected <img>, or a hash that
    // no longer matches the page's script or style, would show up here).
    await page.addInitScript(() => {
      const g = globalThis as unknown as G
      g.__violations = []
      g.document.addEventListener('securitypolicyviolation', (e) => g.__violations!.push(`${e.violatedDirective} ${e.blockedURI}`))
    })
    page.on('request', (r) => {
      if (r.url().includes('/admin/routes')) polled.push(r.url())
    })
    await page.goto(`${gw.opsUrl}/?_token=${ADMIN_TOKEN}`)
  })

  afterAll(async () => {
    await browser?.close()
    if (!gwStopped) await gw?.stop()
    await Promise.all([replica?.stop(), primary?.stop()])
  })

  it('renders instances, endpoints, roles, health and groups', async () => {
    // Roles and the replication link come from ROLE checks, shown by the page's next poll.
    await page.waitForSelector(`${cell('orders', id(replica), 'role')}:text-is("replica")`, { timeout: 15_000 })
    await page.waitForSelector(`${cell('orders', id(replica), 'link')}:text-is("connected")`, { timeout: 15_000 })
    expect(await page.textContent(cell('orders', id(primary), 'role'))).toBe('primary')
    expect(await page.textContent(cell('orders', id(primary), 'endpoint'))).toBe(`${id(primary)} \u2605`)
    expect(await page.textContent(cell('orders', id(replica), 'health'))).toBe('serving')
    expect(await page.textContent(cell('orders', id(replica), 'breaker'))).toBe('closed')
    expect(await page.getAttribute(row('orders', id(replica)), 'data-up')).toBe('true')

    const names = await page.$$eval('tr.inst [data-field="name"]', (els) => els.map((e) => e.textContent))
    expect(names).toEqual(['legacy', 'orders'])
    const legacy = await page.textContent('tr.inst[data-instance="legacy"]')
    expect(legacy).toContain('maintenance: drain')
    expect(legacy).toContain('2 annotation errors')
    expect(await page.textContent('tr[data-group="shop"][data-member="legacy"] td[data-field="traffic"]')).toBe('none(draining)')
    expect(await page.textContent('tr[data-group="shop"][data-member="orders"] td[data-field="share"]')).toBe('100.0 %')
    expect(await page.textContent('tr[data-group="shop"] [data-field="member-count"]')).toBe('(1 of 2 members taking traffic)')
    expect(await page.textContent('#status')).toBe('live')
  })

  it('shows hostile text as text: nothing from the data becomes markup or runs', async () => {
    // Discovery only admits DNS-label names; publish one straight into the routing table to show
    // the page does not rely on that: every field is rendered as text.
    gw.gateway.table.apply({
      type: 'upsert',
      instance: {
        name: HOSTILE_NAME,
        source: '<i>kubernetes</i>',
        endpoints: [],
        policy: { ...DEFAULT_POLICY, groups: [HOSTILE_GROUP] },
        annotationErrors: [{ key: `${A}x`, value: '<svg onload=window.__xss=5>', message: '<svg onload=window.__xss=5>' }],
      },
    })
    // Wait for its row by attribute (set with setAttribute, so also safe), then look at the text.
    await page.waitForFunction(
      (name) => [...(globalThis as unknown as G).document.querySelectorAll('tr.inst')].some((e) => e.getAttribute('data-instance') === name),
      HOSTILE_NAME,
      { timeout: 10_000 },
    )
    const names = await page.$$eval('tr.inst [data-field="name"]', (els) => els.map((e) => e.textContent))
    expect(names).toEqual([HOSTILE_NAME, 'legacy', 'orders'])
    const shown = await page.evaluate(() => (globalThis as unknown as G).document.body.innerText)
    for (const text of [HOSTILE_NAME, HOSTILE_GROUP, HOSTILE_VALUE, 'redis-gateway.io/<img src=x onerror="window.__xss=1">', '<svg onload=window.__xss=5>', '<i>kubernetes</i>']) {
      expect(shown, text).toContain(text)
    }
    const dom = await page.evaluate(() => {
      const g = globalThis as unknown as G
      return {
        markup: g.document.querySelectorAll('img, svg, i, b, iframe, object, embed').length,
        scripts: g.document.querySelectorAll('script').length,
        handlers: [...g.document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
        xss: g.__xss ?? null,
        violations: g.__violations ?? null,
      }
    })
    expect(dom).toEqual({ markup: 0, scripts: 1, handlers: 0, xss: null, violations: [] })
  })

  it('updates live: a killed replica turns down without a reload', async () => {
    await page.evaluate(() => ((globalThis as unknown as G).__loadMarker = 'same page'))
    await replica.kill()
    await page.waitForSelector(`${row('orders', id(replica))}[data-up="false"]`, { timeout: 10_000 })
    const health = await page.textContent(cell('orders', id(replica), 'health'))
    expect(health).toMatch(/^down\((not connected|health check failing)\)$/)
    expect(await page.getAttribute(row('orders', id(replica)), 'class')).toContain('down')
    expect(await page.textContent(cell('orders', id(primary), 'health'))).toBe('serving')
    expect(await page.textContent('tr.inst[data-instance="orders"]')).toContain('degraded')
    expect(await page.evaluate(() => (globalThis as unknown as G).__loadMarker)).toBe('same page')
  })

  it('polls one page of the table, never the whole of it, and counts instances by health', async () => {
    expect(polled.length).toBeGreaterThan(1)
    for (const url of polled) expect(new URL(url).searchParams.get('limit'), url).toBe('100')
    // legacy up; orders degraded (its replica killed above); the hostile instance has no endpoint.
    await waitFor(async () => (await page.textContent('#summary')) === '3 instances: 1 up \u00b7 1 degraded \u00b7 1 down', { message: 'the summary' })
    expect(await page.getAttribute('#summary [data-field="down"]', 'class')).toBe('bad')
    expect(await page.textContent('#range')).toBe('1\u20133 of 3')
    expect(await page.isDisabled('#next')).toBe(true)
    expect(await page.isDisabled('#prev')).toBe(true)
  })

  it('searches by name and shows problems only, asking the gateway for them', async () => {
    await page.fill('#search', 'ORD')
    await showing(page, ['orders'])
    expect(await page.textContent('#range')).toBe('1\u20131 of 1 matching')
    // The summary stays the whole table's.
    expect(await page.textContent('#summary')).toBe('3 instances: 1 up \u00b7 1 degraded \u00b7 1 down')
    await page.fill('#search', '')
    await showing(page, [HOSTILE_NAME, 'legacy', 'orders'])
    await page.check('#problems')
    await showing(page, [HOSTILE_NAME, 'orders'])
    expect(await page.textContent('#range')).toBe('1\u20132 of 2 matching')
    await page.fill('#search', 'leg')
    await page.waitForSelector('#instances-body td.empty:text-is("no instance matches")')
    expect(await page.textContent('#range')).toBe('0 of 0')
    const last = new URL(polled.at(-1)!).searchParams
    expect([last.get('q'), last.get('health'), last.get('limit')]).toEqual(['leg', 'degraded,down', '100'])
    await page.uncheck('#problems')
    await showing(page, ['legacy'])
    await page.fill('#search', '')
    await showing(page, [HOSTILE_NAME, 'legacy', 'orders'])
  })

  it('pages with next and previous (/?limit= sets the page size)', async () => {
    const small = await browser.newPage()
    small.setDefaultTimeout(10_000)
    const asked: string[] = []
    small.on('request', (r) => {
      if (r.url().includes('/admin/routes')) asked.push(r.url())
    })
    try {
      await small.goto(`${gw.opsUrl}/?_token=${ADMIN_TOKEN}&limit=1`)
      await showing(small, [HOSTILE_NAME])
      expect(await small.textContent('#range')).toBe('1\u20131 of 3')
      expect(await small.isDisabled('#prev')).toBe(true)
      await small.click('#next:not([disabled])')
      await showing(small, ['legacy'])
      expect(await small.textContent('#range')).toBe('2\u20132 of 3')
      // Its group, with the members on this page only.
      expect(await small.$$eval('tr[data-group]', (r) => r.map((e) => [e.getAttribute('data-group'), e.getAttribute('data-member')]))).toEqual([['shop', 'legacy']])
      await small.click('#next:not([disabled])')
      await showing(small, ['orders'])
      await waitFor(async () => await small.isDisabled('#next'), { message: 'next disabled on the last page' })
      await small.click('#prev:not([disabled])')
      await showing(small, ['legacy'])
      await small.click('#prev:not([disabled])')
      await showing(small, [HOSTILE_NAME])
      expect(await small.isDisabled('#prev')).toBe(true)
      // The cursor is the previous page's last name.
      const params = asked.map((u) => new URL(u).searchParams)
      expect(params.every((q) => q.get('limit') === '1')).toBe(true)
      expect(new Set(params.map((q) => q.get('after')))).toEqual(new Set([null, HOSTILE_NAME, 'legacy']))
      // A filter starts again at the first page.
      await small.click('#next:not([disabled])')
      await showing(small, ['legacy'])
      await small.check('#problems')
      await showing(small, [HOSTILE_NAME])
      expect(await small.textContent('#range')).toBe('1\u20131 of 2 matching')
    } finally {
      await small.close()
    }
  })

  it('says so when the gateway stops answering, and keeps the last table', async () => {
    const rows = await page.$$eval('tr.ep-row', (r) => r.length)
    gwStopped = true
    await gw.stop()
    await waitFor(async () => (await page.textContent('#status'))?.startsWith('stale: '), { timeoutMs: 10_000, message: 'stale status' })
    expect(await page.getAttribute('#status', 'class')).toBe('status stale')
    expect(await page.$$eval('tr.ep-row', (r) => r.length)).toBe(rows)
  })
})
