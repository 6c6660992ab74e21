// Scripts whose shebang names flags Redis does not know (`#!lua flags=allow-key-locking`, sent by
// @upstash/ratelimit 2.1+; routing/scripts.ts), against a real redis-server: the unknown flag is
// dropped and the known ones kept, EVALSHA of the client's sha finds the rewritten script in one
// round trip, SCRIPT FLUSH gives NOSCRIPT as Redis would, and another gateway learns from one EVAL.
// The token levels and their Redis ACL users apply exactly as to any script.

import { createHash } from 'node:crypto'
import type { Redis as IORedis } from 'ioredis'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { parseInfo, startRedis, type RedisServer } from '../helpers/redis-server.js'
import { call } from '../helpers/rest.js'

const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex')

const READ_SCRIPT = `#!lua flags=allow-key-locking,no-writes
return redis.call('GET', KEYS[1])
`
const WRITE_IN_NO_WRITES = `#!lua flags=allow-key-locking,no-writes
return redis.call('SET', KEYS[1], 'x')
`
const INCR_SCRIPT = `#!lua flags=allow-key-locking
return redis.call('INCRBY', KEYS[1], ARGV[1])
`

let redis: RedisServer
let direct: IORedis
let gw: TestGateway
let gw2: TestGateway

beforeAll(async () => {
  redis = await startRedis()
  direct = redis.client()
  gw = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
  gw2 = await startGateway({ instances: [{ name: 'main', endpoints: [redis.url] }] })
})

afterAll(async () => {
  await gw2?.stop()
  await gw?.stop()
  await redis?.stop()
})

beforeEach(async () => {
  await direct.script('FLUSH')
  await direct.del('n')
  await direct.set('k', 'v')
})

/** Calls of each script command Redis ran since the last reset (INFO commandstats). */
async function scriptCalls(): Promise<{ eval: number; evalsha: number }> {
  const info = parseInfo((await direct.info('commandstats')) as string)
  const calls = (name: string): number => Number(/calls=(\d+)/.exec(info[`cmdstat_${name}`] ?? '')?.[1] ?? 0)
  return { eval: calls('eval'), evalsha: calls('evalsha') }
}

describe('unknown shebang flags', () => {
  test('Redis itself refuses the flag the gateway drops', async () => {
    await expect(direct.eval(READ_SCRIPT, 1, 'k')).rejects.toThrow(/Unexpected flag in script shebang: allow-key-locking/)
  })

  test('EVAL works, and no-writes is kept: a write inside fails as Redis says, naming the client sha', async () => {
    expect(await call(gw.base('main'), WRITE_TOKEN, ['EVAL', READ_SCRIPT, '1', 'k'])).toEqual({ status: 200, json: { result: 'v' } })
    const r = await call(gw.base('main'), WRITE_TOKEN, ['EVAL', WRITE_IN_NO_WRITES, '1', 'k'])
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(/Write commands are not allowed from read-only scripts/)
    expect(r.json.error).toContain(sha1(WRITE_IN_NO_WRITES))
    expect(await direct.get('k')).toBe('v')
    // What Redis cached is the rewritten text; the client's sha is not in Redis's cache.
    expect(await direct.script('EXISTS', sha1(READ_SCRIPT), sha1("#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])\n"))).toEqual([0, 1])
  })

  test('EVALSHA of the client sha after an EVAL: one round trip, one EVALSHA in Redis', async () => {
    const sha = sha1(INCR_SCRIPT)
    expect((await call(gw.base('main'), WRITE_TOKEN, ['EVAL', INCR_SCRIPT, '1', 'n', '2'])).json.result).toBe(2)
    await direct.config('RESETSTAT')
    expect(await call(gw.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '1', 'n', '3'])).toEqual({ status: 200, json: { result: 5 } })
    expect(await call(gw.base('main'), WRITE_TOKEN, ['evalsha', sha.toUpperCase(), '1', 'n', '1'])).toEqual({ status: 200, json: { result: 6 } })
    expect(await scriptCalls()).toEqual({ eval: 0, evalsha: 2 })
    // In a pipeline and a transaction too.
    const p = await call(`${gw.base('main')}/pipeline`, WRITE_TOKEN, [['EVALSHA', sha, '1', 'n', '1'], ['GET', 'n']])
    expect(p.json).toEqual([{ result: 7 }, { result: '7' }])
    const m = await call(`${gw.base('main')}/multi-exec`, WRITE_TOKEN, [['EVALSHA', sha, '1', 'n', '1'], ['EVAL', INCR_SCRIPT, '1', 'n', '1']])
    expect(m.json).toEqual([{ result: 8 }, { result: 9 }])
  })

  test('after SCRIPT FLUSH the client sha gets NOSCRIPT, as with Redis alone; one EVAL loads it again', async () => {
    const sha = sha1(INCR_SCRIPT)
    await call(gw.base('main'), WRITE_TOKEN, ['EVAL', INCR_SCRIPT, '1', 'n', '1'])
    expect((await call(gw.base('main'), ADMIN_TOKEN, ['SCRIPT', 'FLUSH'])).json.result).toBe('OK')
    const r = await call(gw.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '1', 'n', '1'])
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(/^NOSCRIPT/)
    expect((await call(gw.base('main'), WRITE_TOKEN, ['EVAL', INCR_SCRIPT, '1', 'n', '1'])).json.result).toBe(2)
    expect((await call(gw.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '1', 'n', '1'])).json.result).toBe(3)
  })

  test('another gateway on the same Redis learns from one EVAL', async () => {
    const script = `#!lua flags=allow-key-locking\nreturn 'second:' .. redis.call('GET', KEYS[1])\n`
    const sha = sha1(script)
    expect((await call(gw.base('main'), WRITE_TOKEN, ['EVAL', script, '1', 'k'])).json.result).toBe('second:v')
    expect((await call(gw.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '1', 'k'])).json.result).toBe('second:v')
    // gw2 never saw the text: the client sha goes as is, and Redis never had it.
    const miss = await call(gw2.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '1', 'k'])
    expect(miss.json.error).toMatch(/^NOSCRIPT/)
    expect((await call(gw2.base('main'), WRITE_TOKEN, ['EVAL', script, '1', 'k'])).json.result).toBe('second:v')
    await direct.config('RESETSTAT')
    expect((await call(gw2.base('main'), WRITE_TOKEN, ['EVALSHA', sha, '1', 'k'])).json.result).toBe('second:v')
    expect(await scriptCalls()).toEqual({ eval: 0, evalsha: 1 })
  })

  test('SCRIPT LOAD answers the client sha (JSON and binary path form); SCRIPT EXISTS and EVALSHA_RO find it', async () => {
    const sha = sha1(READ_SCRIPT)
    expect((await call(gw.base('main'), WRITE_TOKEN, ['SCRIPT', 'LOAD', READ_SCRIPT])).json.result).toBe(sha)
    const res = await fetch(`${gw.base('main')}/script/load`, { method: 'POST', headers: { authorization: `Bearer ${WRITE_TOKEN}` }, body: Buffer.from(INCR_SCRIPT) })
    expect(await res.json()).toEqual({ result: sha1(INCR_SCRIPT) })
    expect((await call(gw.base('main'), READ_TOKEN, ['SCRIPT', 'EXISTS', sha, sha1(INCR_SCRIPT), 'f'.repeat(40)])).json.result).toEqual([1, 1, 0])
    expect((await call(gw.base('main'), READ_TOKEN, ['EVALSHA_RO', sha, '1', 'k'])).json.result).toBe('v')
  })

  test('token levels and ACL users apply as to any script', async () => {
    // A read token: EVAL is still a write (403), EVAL_RO runs, and a write inside still fails.
    expect((await call(gw.base('main'), READ_TOKEN, ['EVAL', READ_SCRIPT, '1', 'k'])).status).toBe(403)
    expect((await call(gw.base('main'), READ_TOKEN, ['EVAL_RO', READ_SCRIPT, '1', 'k'])).json.result).toBe('v')
    const ro = await call(gw.base('main'), READ_TOKEN, ['EVAL_RO', INCR_SCRIPT, '1', 'k', '1'])
    expect(ro.status).toBe(400)
    expect(await direct.get('k')).toBe('v')
    // A write token's script still cannot run what its Redis user may not (FLUSHALL).
    await call(gw.base('main'), WRITE_TOKEN, ['SCRIPT', 'LOAD', `#!lua flags=allow-key-locking\nreturn redis.call('FLUSHALL')\n`])
    const flush = await call(gw.base('main'), WRITE_TOKEN, ['EVALSHA', sha1(`#!lua flags=allow-key-locking\nreturn redis.call('FLUSHALL')\n`), '0'])
    expect(flush.status).toBe(400)
    expect(flush.json.error).toMatch(/can't run this command or subcommand/)
    expect(await direct.get('k')).toBe('v')
  })
})
