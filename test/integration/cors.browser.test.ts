// CORS in a real browser (headless Chromium from the npm package @sparticuz/chromium, driven by playwright-core): the
// unchanged @upstash/redis SDK (its fetch-only build, bundled for the page) runs in a page served
// from another origin than the gateway's, as a web app with an Upstash token would. Chromium
// enforces CORS: a preflight for the SDK's headers, the reply readable only with
// Access-Control-Allow-Origin, the sync token only if exposed. Commands, a pipeline, an error and a
// subscription (Server-Sent Events) go through; a gateway whose http.cors.origins does not list the
// page's origin is refused by the browser. Chromium missing = failure, not skip.

import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { Browser, Page } from 'playwright-core'
import { launchChromium } from '../helpers/chromium.js'
import { startGateway, READ_TOKEN, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

let redis: RedisServer
let open: TestGateway
let closed: TestGateway
let site: Server
let siteUrl: string
let browser: Browser
let page: Page

/** The SDK's Cloudflare build (fetch only, no Node built-ins) as one script defining `Upstash`. */
async function sdkBundle(): Promise<string> {
  const require = createRequire(import.meta.url)
  const { build } = (await import('esbuild')) as typeof import('esbuild')
  const out = await build({
    entryPoints: [require.resolve('@upstash/redis/cloudflare')],
    bundle: true,
    format: 'iife',
    globalName: 'Upstash',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  })
  return out.outputFiles[0]!.text
}

beforeAll(async () => {
  redis = await startRedis()
  const instances = [{ name: 'main', endpoints: [redis.url] }]
  ;[open, closed] = await Promise.all([
    startGateway({ instances }),
    startGateway({ instances, extra: { http: { cors: { origins: ['https://only.example.com'] } } } }),
  ])
  const sdk = await sdkBundle()
  // The web app's own origin: another port, so another origin than either gateway.
  site = createServer((req, res) => {
    if (req.url === '/sdk.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' })
      res.end(sdk)
      return
    }
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end('<!doctype html><title>app</title><script src="/sdk.js"></script>')
  })
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve))
  siteUrl = `http://localhost:${(site.address() as AddressInfo).port}`
  browser = await launchChromium()
  page = await browser.newPage()
  await page.goto(`${siteUrl}/`)
  await page.waitForFunction(() => typeof (globalThis as unknown as { Upstash?: unknown }).Upstash === 'object')
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await new Promise((resolve) => site?.close(resolve))
  await Promise.all([open?.stop(), closed?.stop()])
  await redis?.stop()
})

interface PageResult {
  set?: unknown
  get?: unknown
  pipeline?: unknown
  error?: string
  syncToken?: string
  failure?: string
}

/** Runs the SDK in the page against `url` (the callback runs in Chromium; nothing outside it is used). */
function inPage(url: string, token: string, key: string): Promise<PageResult> {
  return page.evaluate(
    async ([url, token, key]) => {
      type Sdk = { Redis: new (o: Record<string, unknown>) => any }
      const { Redis } = (globalThis as unknown as { Upstash: Sdk }).Upstash
      const out: Record<string, unknown> = {}
      try {
        const redis = new Redis({ url, token, enableAutoPipelining: false, retry: false })
        out['set'] = await redis.set(key, { from: 'the browser' })
        out['get'] = await redis.get(key)
        const p = redis.pipeline()
        p.incr(`${key}:n`)
        p.incr(`${key}:n`)
        out['pipeline'] = await p.exec()
        try {
          await redis.incr(key)
        } catch (e) {
          out['error'] = String((e as Error).message)
        }
        // The SDK keeps the last sync token it could read (readYourWrites): only if it is exposed.
        out['syncToken'] = (redis as { client: { upstashSyncToken: string } }).client.upstashSyncToken
      } catch (e) {
        out['failure'] = String((e as Error).message)
      }
      return out
    },
    [url, token, key] as const,
  )
}

describe('the SDK in a browser page on another origin', () => {
  test('commands, a pipeline and a Redis error go through CORS (preflight included); the sync token is readable', async () => {
    const r = await inPage(open.base('main'), WRITE_TOKEN, 'cors:browser')
    expect(r).toMatchObject({
      set: 'OK',
      get: { from: 'the browser' },
      pipeline: [1, 2],
      error: expect.stringContaining('ERR value is not an integer'),
      syncToken: expect.stringMatching(/^rg1:main:/),
    })
    expect(r.failure).toBeUndefined()
    expect(await redis.client().get('cors:browser')).toBe('{"from":"the browser"}')
  })

  test('a read-only token in the page: reads served, a write refused with a readable 403', async () => {
    const r = await inPage(open.base('main'), READ_TOKEN, 'cors:browser')
    expect(r.failure).toMatch(/FORBIDDEN/)
  })

  test('subscribe (Server-Sent Events, with the SDK Accept and Cache-Control headers) receives messages', async () => {
    const url = open.base('main')
    const started = page.evaluate(
      async ([url, token]) => {
        type Sdk = { Redis: new (o: Record<string, unknown>) => any }
        const { Redis } = (globalThis as unknown as { Upstash: Sdk }).Upstash
        const redis = new Redis({ url, token })
        const sub = redis.subscribe(['cors:chan'])
        const g = globalThis as unknown as { got: unknown[]; sub: unknown }
        g.got = []
        g.sub = sub
        sub.on('message', (m: { message: unknown }) => g.got.push(m.message))
        sub.on('subscribe', () => g.got.push('subscribed'))
      },
      [url, WRITE_TOKEN] as const,
    )
    await started
    const got = (): Promise<unknown[]> => page.evaluate(() => (globalThis as unknown as { got: unknown[] }).got)
    await waitFor(async () => (await got()).includes('subscribed'), { message: 'subscribed in the browser' })
    await redis.client().publish('cors:chan', 'hello browser')
    await waitFor(async () => (await got()).length === 2, { message: 'the message in the browser' })
    expect(await got()).toEqual(['subscribed', 'hello browser'])
    await page.evaluate(async () => {
      await (globalThis as unknown as { sub: { unsubscribe(): Promise<void> } }).sub.unsubscribe()
    })
  })

  test('a gateway whose http.cors.origins does not list the page: the browser refuses the reply', async () => {
    const r = await inPage(closed.base('main'), WRITE_TOKEN, 'cors:refused')
    expect(r.failure).toMatch(/fetch/i)
    expect(r.set).toBeUndefined()
  })
})
