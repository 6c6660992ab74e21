// CORS on the data port (src/http/cors.ts), over the wire against a real redis-server: a preflight
// is answered without a token, and every reply carries Access-Control-Allow-Origin (success, Redis
// errors, gateway errors, 401, the HTTP parser's own 400/431, Server-Sent Events), the same on the
// fast lane and on node:http; `http.cors.origins` narrows it to listed origins or turns it off.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { head, rawRequest, type RawResponse } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'

const BASE = '/v1/instances/main'
const AUTH = { authorization: `Bearer ${WRITE_TOKEN}` }
const ORIGIN = 'https://app.example.com'

let redis: RedisServer
let lane: TestGateway
let node: TestGateway
let listed: TestGateway
let off: TestGateway

beforeAll(async () => {
  redis = await startRedis()
  const instances = [{ name: 'main', endpoints: [redis.url] }]
  const limits = { maxBody: '4096B', maxHeader: '8KiB' }
  ;[lane, node, listed, off] = await Promise.all([
    startGateway({ instances, extra: { limits } }),
    startGateway({ instances, extra: { limits, http: { fastLane: false } } }),
    startGateway({ instances, extra: { limits, http: { cors: { origins: [ORIGIN, 'http://localhost:5173'] } } } }),
    startGateway({ instances, extra: { limits, http: { cors: { origins: [] } } } }),
  ])
})

afterAll(async () => {
  await Promise.all([lane?.stop(), node?.stop(), listed?.stop(), off?.stop()])
  await redis?.stop()
})

const port = (gw: TestGateway): number => gw.gateway.dataAddress.port

/** A plain request with an Origin, as a browser sends it. */
function req(method: string, target: string, headers: Record<string, string | number> = {}, body = ''): string {
  const h: Record<string, string | number> = { origin: ORIGIN, ...headers }
  if (body !== '' || method === 'POST') h['content-length'] = Buffer.byteLength(body)
  return head(method, target, h) + body
}

/** What a browser looks at, per reply. */
function corsOf(r: RawResponse): Record<string, string | undefined> {
  return {
    origin: r.headers['access-control-allow-origin'],
    expose: r.headers['access-control-expose-headers'],
  }
}

/** One of each kind of reply the data port gives, made on the fast lane where it can be. */
async function replies(p: number): Promise<[string, RawResponse][]> {
  return [
    ['200 path GET', await rawRequest(p, req('GET', `${BASE}/get/c:k`, AUTH))],
    ['200 command POST', await rawRequest(p, req('POST', BASE, AUTH, '["SET","c:k","v"]'))],
    ['200 pipeline', await rawRequest(p, req('POST', `${BASE}/pipeline`, AUTH, '[["GET","c:k"]]'))],
    ['400 Redis error', await rawRequest(p, req('POST', BASE, AUTH, '["SET","c:k"]'))],
    ['400 bad JSON', await rawRequest(p, req('POST', BASE, AUTH, '['))],
    ['401', await rawRequest(p, req('GET', `${BASE}/get/c:k`))],
    ['403', await rawRequest(p, req('GET', `${BASE}/flushall`, AUTH))],
    ['404', await rawRequest(p, req('GET', '/v1/instances/nope/get/c:k', AUTH))],
    ['405', await rawRequest(p, req('DELETE', `${BASE}/get/c:k`, AUTH))],
    ['413', await rawRequest(p, req('POST', BASE, AUTH, JSON.stringify(['SET', 'c:k', 'x'.repeat(5000)])))],
    ['400 chunked (node:http)', await rawRequest(p, head('POST', BASE, { ...AUTH, origin: ORIGIN, 'transfer-encoding': 'chunked' }) + '3\r\n["P\r\n0\r\n\r\n')],
    // Made by the HTTP parser's error handler, before any app code.
    ['431 parser', await rawRequest(p, req('GET', `${BASE}/get/${'k'.repeat(9000)}`, AUTH))],
    ['400 parser', await rawRequest(p, 'GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n')],
  ]
}

describe('default origins ["*"] (as Upstash)', () => {
  test('a preflight is 204 without a token, allowing the SDK headers, methods and caching', async () => {
    for (const gw of [lane, node]) {
      const r = await rawRequest(
        port(gw),
        head('OPTIONS', `${BASE}/pipeline`, {
          origin: ORIGIN,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type,upstash-encoding,upstash-sync-token,upstash-telemetry-sdk',
        }),
      )
      expect(r.status).toBe(204)
      expect(r.headers['access-control-allow-origin']).toBe('*')
      const methods = r.headers['access-control-allow-methods']!.split(/,\s*/)
      expect(methods).toEqual(expect.arrayContaining(['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS']))
      const allowed = r.headers['access-control-allow-headers']!.split(/,\s*/)
      // What the SDK sends (pkg/http.ts and the subscribe commands), and the sticky-routing header.
      for (const h of ['authorization', 'content-type', 'upstash-encoding', 'upstash-sync-token', 'upstash-telemetry-runtime', 'upstash-telemetry-platform', 'upstash-telemetry-sdk', 'upstash-response-format', 'accept', 'cache-control', 'x-client-id']) {
        expect(allowed, h).toContain(h)
      }
      expect(Number(r.headers['access-control-max-age'])).toBeGreaterThan(0)
      expect(r.headers['allow']).toBe('GET, HEAD, POST, PUT, OPTIONS')
      expect(r.headers['upstash-sync-token']).toBe('')
      expect(r.body.length).toBe(0)
    }
  })

  test('every reply carries Access-Control-Allow-Origin: * and exposes upstash-sync-token, on both HTTP paths', async () => {
    for (const gw of [lane, node]) {
      for (const [what, r] of await replies(port(gw))) {
        expect({ what, status: r.status, ...corsOf(r) }).toEqual({
          what,
          status: r.status,
          origin: '*',
          expose: expect.stringContaining('upstash-sync-token'),
        })
      }
    }
    // Statuses as expected (the lane and node:http alike).
    const statuses = (await replies(port(lane))).map(([w, r]) => [w, r.status])
    expect(statuses).toEqual((await replies(port(node))).map(([w, r]) => [w, r.status]))
    expect(Object.fromEntries(statuses)).toMatchObject({ '401': 401, '405': 405, '413': 413, '431 parser': 431, '400 parser': 400 })
  })

  test('a request without Origin gets the same headers (a cache in between may serve it to a browser)', async () => {
    const r = await rawRequest(port(lane), head('GET', `${BASE}/get/c:k`, AUTH))
    expect(r.headers['access-control-allow-origin']).toBe('*')
  })

  test('Server-Sent Events carry them too', async () => {
    const ac = new AbortController()
    const res = await fetch(`${lane.url}${BASE}/subscribe/c:ch`, {
      method: 'POST',
      headers: { ...AUTH, origin: ORIGIN, accept: 'text/event-stream' },
      signal: ac.signal,
    })
    try {
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
      expect(res.headers.get('access-control-allow-origin')).toBe('*')
      expect(res.headers.get('access-control-expose-headers')).toContain('upstash-sync-token')
    } finally {
      ac.abort()
    }
  })
})

describe('http.cors.origins', () => {
  test('a listed origin is echoed with Vary: Origin; another gets no Access-Control-Allow-Origin', async () => {
    const ok = await rawRequest(port(listed), req('GET', `${BASE}/get/c:k`, AUTH))
    expect([ok.status, ok.headers['access-control-allow-origin'], ok.headers['vary']]).toEqual([200, ORIGIN, 'origin'])
    const err = await rawRequest(port(listed), req('GET', `${BASE}/get/c:k`))
    expect([err.status, err.headers['access-control-allow-origin']]).toEqual([401, ORIGIN])
    const other = await rawRequest(port(listed), head('GET', `${BASE}/get/c:k`, { ...AUTH, origin: 'https://evil.example' }))
    expect([other.status, other.headers['access-control-allow-origin'], other.headers['vary']]).toEqual([200, undefined, 'origin'])
    // The preflight of an unlisted origin allows nothing.
    const pre = await rawRequest(port(listed), head('OPTIONS', BASE, { origin: 'https://evil.example', 'access-control-request-method': 'POST' }))
    expect([pre.status, pre.headers['access-control-allow-origin'], pre.headers['access-control-allow-methods']]).toEqual([204, undefined, undefined])
    const preOk = await rawRequest(port(listed), head('OPTIONS', BASE, { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' }))
    expect([preOk.status, preOk.headers['access-control-allow-origin']]).toEqual([204, 'http://localhost:5173'])
    expect(preOk.headers['access-control-allow-methods']).toContain('POST')
  })

  test('[] turns CORS off: no Access-Control-* header anywhere, OPTIONS still 204', async () => {
    const r = await rawRequest(port(off), req('GET', `${BASE}/get/c:k`, AUTH))
    expect(r.status).toBe(200)
    const pre = await rawRequest(port(off), head('OPTIONS', BASE, { origin: ORIGIN, 'access-control-request-method': 'POST' }))
    expect(pre.status).toBe(204)
    for (const x of [r, pre]) expect(Object.keys(x.headers).filter((k) => k.startsWith('access-control-'))).toEqual([])
  })

  test('the config rejects what is not an origin, and "*" beside others', () => {
    const load = (origins: unknown): unknown => loadConfig({ text: JSON.stringify({ http: { cors: { origins } } }), env: {} })
    expect(() => load(['https://app.example.com/'])).toThrow(/http\.cors\.origins\[0\]: expected "\*" or an origin/)
    expect(() => load(['app.example.com'])).toThrow(/expected "\*" or an origin/)
    expect(() => load(['*', 'https://a.example'])).toThrow(/stands alone/)
    const cfg = loadConfig({ text: JSON.stringify({ http: { cors: { origins: ['HTTPS://App.Example.com:8443', 'http://[::1]:3000'] } } }), env: {} })
    expect(cfg.http.cors.origins).toEqual(['https://app.example.com:8443', 'http://[::1]:3000'])
    expect(loadConfig({ text: '', env: {} }).http.cors.origins).toEqual(['*'])
  })
})
