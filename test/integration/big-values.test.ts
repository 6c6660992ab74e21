// Large values end to end (src/http/big-values.ts, encode.ts resultBase64): a value of 64 KiB or
// 1 MiB written through the gateway reaches Redis byte for byte, and reads back the same, through
// the fast lane and through node:http, as one command, in a pipeline and in a transaction, from
// the real @upstash/redis SDK and from raw requests; values that are not lifted (escapes, UTF-8)
// are unchanged too.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { Redis } from '@upstash/redis'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'

let redis: RedisServer
let lane: TestGateway
let plain: TestGateway

beforeAll(async () => {
  redis = await startRedis()
  const instances = [{ name: 'main', endpoints: [redis.url] }]
  ;[lane, plain] = await Promise.all([
    startGateway({ instances }),
    startGateway({ instances, extra: { http: { fastLane: false } } }),
  ])
})
afterAll(async () => {
  await Promise.all([lane?.stop(), plain?.stop()])
  await redis?.stop()
})

/** Printable ASCII in a pattern that shows a shifted or cut byte. */
function pattern(n: number): string {
  let s = ''
  for (let i = 0; s.length < n; i++) s += String.fromCharCode(0x20 + (i % 95)).replace('"', '#').replace('\\', '/')
  return s.slice(0, n)
}

async function post(gw: TestGateway, path: string, body: unknown, base64 = true): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${gw.base('main')}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE_TOKEN}`, ...(base64 ? { 'upstash-encoding': 'base64' } : {}) },
    body: JSON.stringify(body),
  })
  return { status: res.status, json: await res.json() }
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')

describe.each([
  ['the fast lane', () => lane],
  ['node:http', () => plain],
])('large values through %s', (_name, gw) => {
  test.each([64 * 1024, 1024 * 1024 + 1])('a %i-byte value: SET, GET, a pipeline and a transaction, byte for byte', async (n) => {
    const v = pattern(n)
    const key = `big:${n}:${_name}`
    expect(await post(gw(), '', ['set', key, v])).toEqual({ status: 200, json: { result: 'OK' } })
    expect((await redis.client().getBuffer(key))!.equals(Buffer.from(v))).toBe(true)
    expect(await post(gw(), '', ['get', key])).toEqual({ status: 200, json: { result: b64(v) } })
    expect(await post(gw(), '', ['get', key], false)).toEqual({ status: 200, json: { result: v } })
    const w = v.split('').reverse().join('')
    expect(await post(gw(), '/pipeline', [['set', `${key}:p`, w], ['strlen', `${key}:p`], ['get', `${key}:p`]])).toEqual({
      status: 200,
      json: [{ result: 'OK' }, { result: n }, { result: b64(w) }],
    })
    expect(await post(gw(), '/multi-exec', [['set', `${key}:m`, v], ['append', `${key}:m`, 'é!'], ['get', `${key}:m`]])).toEqual({
      status: 200,
      json: [{ result: 'OK' }, { result: n + 3 }, { result: b64(`${v}é!`) }],
    })
  })

  test('values that are not lifted (escapes, UTF-8, quotes) are sent as JSON.parse reads them', async () => {
    const v = `${pattern(40_000)}\n"\\é\u0001${pattern(40_000)}`
    expect((await post(gw(), '', ['set', 'big:escaped', v])).status).toBe(200)
    expect((await redis.client().getBuffer('big:escaped'))!.equals(Buffer.from(v, 'utf8'))).toBe(true)
  })

  test('the SDK writes and reads a 1 MiB string and a 1 MiB JSON object', async () => {
    const sdk = new Redis({ url: gw().base('main'), token: WRITE_TOKEN })
    const v = pattern(1024 * 1024)
    expect(await sdk.set('big:sdk', v)).toBe('OK')
    expect(await sdk.get('big:sdk')).toBe(v)
    const obj = { name: 'x', items: Array.from({ length: 20_000 }, (_, i) => ({ i, s: pattern(40) })) }
    expect(await sdk.set('big:sdk:obj', obj)).toBe('OK')
    expect(await sdk.get('big:sdk:obj')).toEqual(obj)
  })

  test('a truncated body with a large value is refused and writes nothing', async () => {
    const res = await fetch(`${gw().base('main')}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}` },
      body: `["set","big:truncated","${pattern(100_000)}"`,
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toMatch(/not valid JSON/)
    expect(await redis.client().exists('big:truncated')).toBe(0)
  })
})
