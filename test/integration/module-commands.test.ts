// Module commands (README "How commands are classified"): the gateway learns each backend's command
// table (COMMAND INFO) and classifies module commands by their own flags, so FT.* of a real
// RediSearch (Debian's redis-redisearch, loaded into the Redis here; .ci/run installs it) run with
// the right tokens, through the right Redis ACL users, to the right endpoints; a module loaded at
// runtime works without restarting the gateway; unknown commands still get Redis's own error.

import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitForRoles } from './replication-env.js'
import { waitFor } from '../helpers/wait.js'
import { call } from '../helpers/rest.js'

const MODULE = '/usr/lib/redis/modules/redisearch.so'

// The module is optional on a developer's machine (npm test passes with only Node and redis-server):
// without it these tests are skipped, saying why. CI sets REQUIRE_REDIS_MODULES=1, so there a
// missing module fails (beforeAll below) instead of skipping.
const SKIP = !existsSync(MODULE) && process.env['REQUIRE_REDIS_MODULES'] !== '1'
if (SKIP) console.warn(`module-commands.test.ts skipped: ${MODULE} is missing (Debian/Ubuntu: apt-get install redis-redisearch; REQUIRE_REDIS_MODULES=1 makes this a failure)`)

let primary: RedisServer
let replica: RedisServer
let plain: RedisServer
let gw: TestGateway

beforeAll(async () => {
  if (!existsSync(MODULE)) throw new Error(`${MODULE} is missing: apt-get install redis-redisearch (.ci/run does)`)
  primary = await startRedis({ args: ['--loadmodule', MODULE] })
  replica = await startRedis({ replicaOf: primary, args: ['--loadmodule', MODULE] })
  await replica.waitForSync()
  // No module yet; MODULE LOAD allowed (Redis 7 refuses it by default).
  plain = await startRedis({ args: ['--enable-module-command', 'yes'] })
  gw = await startGateway({
    instances: [
      { name: 'search', endpoints: [primary.url] },
      { name: 'replicas', endpoints: [primary.url, replica.url], annotations: { 'redis-gateway.io/read-policy': 'replica' } },
      { name: 'late', endpoints: [plain.url] },
    ],
  })
  const created = await call(gw.base('search'), WRITE_TOKEN, ['FT.CREATE', 'idx', 'SCHEMA', 'title', 'TEXT'])
  expect(created).toEqual({ status: 200, json: { result: 'OK' } })
  for (const [id, title] of [['doc1', 'hello world'], ['doc2', 'goodbye world']]) {
    expect((await call(gw.base('search'), WRITE_TOKEN, ['FT.ADD', 'idx', id!, '1.0', 'FIELDS', 'title', title!])).status).toBe(200)
  }
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  await Promise.all([replica?.stop(), primary?.stop(), plain?.stop()])
})

describe.skipIf(SKIP)('module commands are classified by the flags the server reports', () => {
  test('/admin/routes shows each endpoint\'s learned table', async () => {
    type View = { instances: { name: string; endpoints: { commands: { state: string; count: number; moduleCommands: number; fingerprint: string } }[] }[] }
    const view = (await (await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as View
    const [p, r] = view.instances.find((i) => i.name === 'replicas')!.endpoints.map((e) => e.commands)
    expect(p).toMatchObject({ state: 'learned', moduleCommands: 27 })
    expect(p!.count).toBeGreaterThan(200)
    expect(r!.fingerprint).toBe(p!.fingerprint) // same version, same module
  })

  test('FT.CREATE by an admin token works', async () => {
    expect(await call(gw.base('search'), ADMIN_TOKEN, ['FT.CREATE', 'adminidx', 'SCHEMA', 'body', 'TEXT'])).toEqual({ status: 200, json: { result: 'OK' } })
  })

  test('FT.SEARCH (readonly) by a read token works, in any case, in the path form and in pipelines', async () => {
    const r = await call(gw.base('search'), READ_TOKEN, ['FT.SEARCH', 'idx', 'hello'])
    expect(r.status).toBe(200)
    expect(r.json.result).toEqual([1, 'doc1', ['title', 'hello world']])
    expect((await call(gw.base('search'), READ_TOKEN, ['ft.search', 'idx', 'world', 'NOCONTENT'])).json.result).toEqual([2, expect.any(String), expect.any(String)])
    const path = await fetch(`${gw.base('search')}/ft.search/idx/goodbye?_token=${READ_TOKEN}`)
    expect(path.status).toBe(200)
    expect(((await path.json()) as { result: unknown[] }).result[0]).toBe(1)
    const p = await call(`${gw.base('search')}/pipeline`, READ_TOKEN, [['FT.SEARCH', 'idx', 'hello', 'NOCONTENT'], ['FT.INFO', 'idx'], ['GET', 'nothing']])
    expect(p.status).toBe(200)
    expect(p.json[0]).toEqual({ result: [1, 'doc1'] })
    expect(Array.isArray(p.json[1]!.result)).toBe(true)
    expect(p.json[2]).toEqual({ result: null })
  })

  test('FT.CREATE and FT.ADD (write) by a read token: 403 from the gateway, nothing created', async () => {
    const r = await call(gw.base('search'), READ_TOKEN, ['FT.CREATE', 'readidx', 'SCHEMA', 'title', 'TEXT'])
    expect(r.status).toBe(403)
    expect(r.json.error).toBe("FORBIDDEN token 'reader' has read access; 'FT.CREATE' needs write")
    const add = await call(gw.base('search'), READ_TOKEN, ['ft.add', 'idx', 'doc9', '1.0', 'FIELDS', 'title', 'x'])
    expect(add.status).toBe(403)
    expect(add.json.error).toMatch(/^FORBIDDEN .*'FT\.ADD' needs write/)
    await expect(primary.client().call('FT.INFO', 'readidx')).rejects.toThrow(/Unknown Index name/)
    const tx = await call(`${gw.base('search')}/multi-exec`, READ_TOKEN, [['FT.SEARCH', 'idx', 'hello'], ['FT.DROP', 'idx']])
    expect(tx.status).toBe(403)
    expect(tx.json.error).toMatch(/^FORBIDDEN command 2: .*'FT\.DROP' needs write/)
  })

  test('module overrides: FT.DEBUG is admin-only although RediSearch flags it readonly', async () => {
    const r = await call(gw.base('search'), WRITE_TOKEN, ['FT.DEBUG', 'DUMP_TERMS', 'idx'])
    expect(r.status).toBe(403)
    expect(r.json.error).toMatch(/^FORBIDDEN .*'FT\.DEBUG' needs admin/)
    // An admin's reaches RediSearch (whose FT.DEBUG wants other arguments: its own error).
    const admin = await call(gw.base('search'), ADMIN_TOKEN, ['FT.DEBUG', 'DUMP_TERMS', 'idx'])
    expect(admin).toEqual({ status: 400, json: { error: "ERR wrong number of arguments for 'FT.DEBUG' command" } })
  })

  test("a command no backend has gets Redis's own error; Upstash-only SEARCH.* is refused naming the gateway", async () => {
    const r = await call(gw.base('search'), ADMIN_TOKEN, ['FT.NOSUCH', 'idx'])
    expect(r).toEqual({ status: 400, json: { error: "ERR unknown command 'FT.NOSUCH'" } })
    const j = await call(gw.base('search'), WRITE_TOKEN, ['JSON.GET', 'k'])
    expect(j).toEqual({ status: 400, json: { error: "ERR unknown command 'JSON.GET'" } })
    const s = await call(gw.base('search'), WRITE_TOKEN, ['SEARCH.QUERY', 'idx', 'x'])
    expect(s.status).toBe(400)
    expect(s.json.error).toMatch(/^REFUSED SEARCH\.QUERY is an Upstash-only command/)
  })

  test('static-table commands behave as before', async () => {
    expect(await call(gw.base('search'), WRITE_TOKEN, ['SET', 'mod:k', 'v'])).toEqual({ status: 200, json: { result: 'OK' } })
    expect(await call(gw.base('search'), READ_TOKEN, ['GET', 'mod:k'])).toEqual({ status: 200, json: { result: 'v' } })
    expect((await call(gw.base('search'), READ_TOKEN, ['SET', 'mod:k', 'x'])).status).toBe(403)
    expect((await call(gw.base('search'), WRITE_TOKEN, ['KEYS', '*'])).status).toBe(403)
    const b = await call(gw.base('search'), ADMIN_TOKEN, ['BLPOP', 'mod:l', '0'])
    expect(b.status).toBe(400)
    expect(b.json.error).toMatch(/^REFUSED BLPOP would block/)
    expect(await call(gw.base('search'), READ_TOKEN, ['NOSUCHCMD'])).toEqual({ status: 400, json: { error: "ERR unknown command 'NOSUCHCMD'" } })
  })
})

describe.skipIf(SKIP)('the Redis ACL users of the token levels include module commands by their class', () => {
  test('a read token runs FT.SEARCH inside EVAL_RO; FT.CREATE there is refused by Redis', async () => {
    const ok = await call(gw.base('search'), READ_TOKEN, ['EVAL_RO', "return redis.call('FT.SEARCH', 'idx', 'hello', 'NOCONTENT')", '0'])
    expect(ok).toEqual({ status: 200, json: { result: [1, 'doc1'] } })
    const denied = await call(gw.base('search'), READ_TOKEN, ['EVAL_RO', "return redis.call('FT.CREATE', 'evilidx', 'SCHEMA', 't', 'TEXT')", '0'])
    expect(denied.status).toBe(400)
    expect(denied.json.error).toMatch(/Write commands are not allowed from read-only scripts|can't run this command/)
  })

  test('the read user has FT.SEARCH and not FT.CREATE; the write user both', async () => {
    const users = (await primary.client().call('ACL', 'USERS')) as string[]
    const read = users.find((u) => u.startsWith('redis-gateway-read-'))!
    const write = users.find((u) => u.startsWith('redis-gateway-write-'))!
    const dry = (user: string, ...args: string[]) => primary.client().call('ACL', 'DRYRUN', user, ...args)
    expect(await dry(read, 'FT.SEARCH', 'idx', 'x')).toBe('OK')
    expect(await dry(read, 'FT.CREATE', 'i', 'SCHEMA', 't', 'TEXT')).toMatch(/no permissions/)
    expect(await dry(write, 'FT.CREATE', 'i', 'SCHEMA', 't', 'TEXT')).toBe('OK')
    expect(await dry(write, 'FT.DEBUG', 'DUMP_TERMS', 'i')).toMatch(/no permissions/)
  })
})

describe.skipIf(SKIP)('routing', () => {
  test('a learned read follows the read policy: FT.SEARCH goes to the replica', async () => {
    await waitForRoles(gw, [
      { server: primary, role: 'primary' },
      { server: replica, role: 'replica' },
    ])
    await replica.resetStats()
    await primary.resetStats()
    const r = await call(gw.base('replicas'), READ_TOKEN, ['FT.SEARCH', 'idx', 'hello'])
    // Whether the replica has the index yet does not matter here (a Redis answer either way).
    expect(r.json.error ?? '').not.toMatch(/^[A-Z]+ (token|instance)|^NOENDPOINT|^FORBIDDEN/)
    expect((await replica.commandStats())['ft.search']).toBe(1)
    expect((await primary.commandStats())['ft.search']).toBeUndefined()
    // A learned write goes to the primary.
    expect((await call(gw.base('replicas'), WRITE_TOKEN, ['FT.ADD', 'idx', 'doc3', '1.0', 'FIELDS', 'title', 'routed'])).status).toBe(200)
    expect((await primary.commandStats())['ft.add']).toBe(1)
  })
})

describe.skipIf(SKIP)('refresh', () => {
  test('MODULE LOAD at runtime: the module commands work without restarting the gateway', async () => {
    const before = await call(gw.base('late'), WRITE_TOKEN, ['FT.CREATE', 'lateidx', 'SCHEMA', 'title', 'TEXT'])
    expect(before).toEqual({ status: 400, json: { error: "ERR unknown command 'FT.CREATE'" } })
    expect(await call(gw.base('late'), WRITE_TOKEN, ['MODULE', 'LOAD', MODULE])).toEqual({ status: 403, json: { error: "FORBIDDEN token 'writer' has write access; 'MODULE' needs admin" } })
    expect(await call(gw.base('late'), ADMIN_TOKEN, ['MODULE', 'LOAD', MODULE])).toEqual({ status: 200, json: { result: 'OK' } })
    // At once (no waiting out the check interval): the table is read again, and the level users
    // are provisioned again with the new commands before the request runs as one of them.
    expect(await call(gw.base('late'), WRITE_TOKEN, ['FT.CREATE', 'lateidx', 'SCHEMA', 'title', 'TEXT'])).toEqual({ status: 200, json: { result: 'OK' } })
    expect((await call(gw.base('late'), WRITE_TOKEN, ['FT.ADD', 'lateidx', 'd', '1.0', 'FIELDS', 'title', 'late bloomer'])).status).toBe(200)
    expect(await call(gw.base('late'), READ_TOKEN, ['FT.SEARCH', 'lateidx', 'bloomer', 'NOCONTENT'])).toEqual({ status: 200, json: { result: [1, 'd'] } })
    expect((await call(gw.base('late'), READ_TOKEN, ['FT.DROP', 'lateidx'])).status).toBe(403)
  })

  test('a reconnect reads the table again: after a restart without the module its commands are gone from it', async () => {
    const client = gw.gateway.pool.get(`127.0.0.1:${plain.port}`)!.client
    expect(client.commands?.specs.has('ft.search')).toBe(true)
    await plain.restart()
    await waitFor(() => client.up && client.commands?.specs.has('ft.search') === false, { message: 'the table to be read again' })
    expect(await call(gw.base('late'), WRITE_TOKEN, ['FT.CREATE', 'again', 'SCHEMA', 't', 'TEXT'])).toEqual({ status: 400, json: { error: "ERR unknown command 'FT.CREATE'" } })
    // The write token's own connection (its Redis ACL user is made again on the new server first)
    // comes up on its own schedule: under load, after the gateway's connection.
    await waitFor(async () => expect(await call(gw.base('late'), WRITE_TOKEN, ['SET', 'late:k', 'v'])).toEqual({ status: 200, json: { result: 'OK' } }), {
      message: 'a write after the restart',
    })
  })

  test('unknown commands cost at most one COMMAND COUNT per endpoint per second', async () => {
    await plain.resetStats()
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => call(gw.base('late'), READ_TOKEN, [`NOPE${i}`])))
    for (const [i, r] of replies.entries()) expect(r).toEqual({ status: 400, json: { error: `ERR unknown command 'NOPE${i}'` } })
    const stats = await plain.commandStats()
    expect(stats['command|count'] ?? 0).toBeLessThanOrEqual(1)
    expect(stats['command|info'] ?? 0).toBe(0)
  })
})
