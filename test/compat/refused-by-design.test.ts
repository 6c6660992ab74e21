// What the gateway refuses by design, as a client sees it: through the real @upstash/redis SDK and
// as raw REST requests, against a real redis-server (Redis 7, no modules). Each refusal is a 400
// whose error starts with REFUSED and says why (the gateway's reason, not Redis's wording), and the
// documented alternative works:
// - blocking commands (they would stall the connection that all requests to an endpoint share);
// - MULTI/EXEC/WATCH as commands (use /multi-exec: the SDK's multi());
// - SUBSCRIBE as a command (use the SSE endpoints: the SDK's subscribe());
// - Upstash-only extensions plain Redis cannot run: SEARCH.* (the SDK's redis.search), VECTOR.*, SCAN ... WITHTYPE.
// The README's Compatibility table points here.

import { randomUUID } from 'node:crypto'
import { Redis } from '@upstash/redis'
import { describe, expect, test } from 'vitest'
import { WRITE_TOKEN } from '../helpers/gateway.js'
import { call as rest, type CommandReply } from '../helpers/rest.js'
import { redisBehindGateway } from './setup.js'

const env = redisBehindGateway()

function sdk(): Redis {
  return new Redis({ url: env.gw.base('main'), token: WRITE_TOKEN, retry: false, enableTelemetry: false })
}

/** The command as a raw REST request to instance `main`. */
function call(body: unknown): Promise<CommandReply> {
  return rest(env.gw.base('main'), WRITE_TOKEN, body)
}

/** The SDK's error message for a command, or null if it succeeded. */
async function sdkError(p: Promise<unknown>): Promise<string | null> {
  try {
    await p
    return null
  } catch (e) {
    return (e as Error).message
  }
}

const key = (): string => `refused:${randomUUID().slice(0, 8)}`

describe('blocking commands: refused (shared connections), the connection stays usable', () => {
  test.each([
    [['BLPOP', 'k', '0'], /^REFUSED BLPOP would block .*poll with LPOP instead/],
    [['BRPOP', 'k', '1'], /^REFUSED BRPOP would block .*poll with RPOP instead/],
    [['BZPOPMIN', 'k', '0'], /^REFUSED BZPOPMIN would block/],
    [['WAIT', '1', '0'], /^REFUSED WAIT would block/],
    [['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'], /^REFUSED XREAD with BLOCK would block/],
  ])('%j', async (command, message) => {
    const r = await call(command)
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(message)
    expect(r.json).not.toHaveProperty('result')
    expect(await sdkError(sdk().exec(command as [string, ...string[]]))).toMatch(message)
  })

  test('the non-blocking form works', async () => {
    const k = key()
    await env.direct.rpush(k, 'a')
    expect(await sdk().lpop(k)).toBe('a')
  })
})

describe('transactions: MULTI/EXEC as commands are refused, /multi-exec (the SDK multi()) works', () => {
  test.each([['MULTI'], ['EXEC'], ['DISCARD'], ['WATCH', 'k'], ['UNWATCH']])('%s', async (...command) => {
    const r = await call(command)
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(new RegExp(`^REFUSED ${command[0]} needs a private connection; .*/multi-exec`))
  })

  test('multi() runs as /multi-exec', async () => {
    const k = key()
    expect(await sdk().multi().set(k, 1).incr(k).get(k).exec()).toEqual(['OK', 2, 2])
  })
})

describe('SUBSCRIBE as a command is refused; the SSE endpoints (the SDK subscribe()) work', () => {
  test.each([
    [['SUBSCRIBE', 'ch'], /^REFUSED SUBSCRIBE needs a private connection; use POST \/subscribe\/\{channel\}/],
    [['PSUBSCRIBE', 'ch*'], /^REFUSED PSUBSCRIBE needs a private connection; use POST \/psubscribe\/\{pattern\}/],
    [['SSUBSCRIBE', 'ch'], /^REFUSED SSUBSCRIBE needs a private connection/],
  ])('%j', async (command, message) => {
    const r = await call(command)
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(message)
  })

  test('subscribe() receives a message', async () => {
    const channel = key()
    const sub = sdk().subscribe<string>([channel])
    const got = new Promise<unknown>((resolve) => sub.on('message', (m) => resolve(m.message)))
    await new Promise<void>((resolve) => sub.on('subscribe', () => resolve()))
    await sdk().publish(channel, 'hello')
    expect(await got).toBe('hello')
    await sub.unsubscribe()
  })
})

describe('Upstash-only extensions plain Redis cannot run', () => {
  test("SEARCH.* (the SDK's redis.search): refused, naming the gateway", async () => {
    const created = sdk().search.createIndex({ name: 'idx', dataType: 'hash', prefix: 'doc:', schema: { title: 'TEXT' } })
    expect(await sdkError(created)).toMatch(/^REFUSED SEARCH\.CREATE is an Upstash-only command that this gateway's Redis backends do not have/)
    const query = sdk().search.index({ name: 'idx' }).query({ filter: { title: { $eq: 'x' } } } as never)
    expect(await sdkError(query)).toMatch(/^REFUSED SEARCH\.QUERY is an Upstash-only command/)
    const r = await call(['SEARCH.DESCRIBE', 'idx'])
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(/^REFUSED SEARCH\.DESCRIBE is an Upstash-only command/)
  })

  test('SCAN without WITHTYPE, and with TYPE (which Redis has), works', async () => {
    const k = key()
    await env.direct.set(k, 'v')
    const [, keys] = await sdk().scan(0, { match: k, type: 'string', count: 1000 })
    expect(keys).toEqual([k])
  })

  test('SCAN ... WITHTYPE (an Upstash-only option): 400 REFUSED naming the gateway, through the SDK and raw; a MATCH pattern spelled "withtype" is not the option', async () => {
    const k = key()
    await env.direct.set(k, 'v')
    expect(await sdkError(sdk().scan(0, { match: k, withType: true }))).toMatch(/^REFUSED .*WITHTYPE.*Upstash-only/)
    const r = await call(['SCAN', '0', 'WITHTYPE'])
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(/^REFUSED .*WITHTYPE.*Upstash-only/i)
    expect((await call(['SCAN', '0', 'MATCH', 'withtype'])).status).toBe(200)
  })

  // The SDK (1.39) has two more Upstash-only families: redis.vector (VECTOR.CREATE/ADD/QUERY/...)
  // and the array commands (ARSET, ARGET, ARLEN...). VECTOR.* is refused like SEARCH.*; the AR*
  // names are too generic to claim (a module may have them), so they get Redis's own error.
  test("VECTOR.* refused naming the gateway; AR* Redis's own unknown-command error", async () => {
    expect(await sdkError(sdk().vector.index('vidx').count())).toMatch(/^REFUSED VECTOR\.COUNT is an Upstash-only command/)
    expect(await sdkError(sdk().arlen(key()))).toMatch(/ERR unknown command 'ARLEN'/)
  })
})
