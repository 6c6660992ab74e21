// Logs (docs/observability.md "Logs"): pino JSON lines. Routing decisions at debug (instance,
// endpoint, strategy, reason); state changes at info/warn (endpoint down/up, maintenance, bad
// annotation); and no token, key, value or argument in any line, whatever the request does (good
// requests, Redis errors, bad tokens, unknown commands, malformed bodies). Real redis-server
// processes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, WRITE_TOKEN, type TestGateway, type TestInstance } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'
import { HEALTH, startTopology, type Topology } from './replication-env.js'

const A = 'redis-gateway.io/'
const KEY = 'secret-key-3c9d'
const VALUE = 'secret-value-77aa'
const BAD_TOKEN = 'secret-token-0b1e'

interface Line {
  level: number
  msg: string
  [k: string]: unknown
}

const lines: Line[] = []
const raw: string[] = []
const sink = {
  write(s: string): void {
    raw.push(s)
    lines.push(JSON.parse(s) as Line)
  },
}

let topo: Topology
let extra: RedisServer
let gw: TestGateway

const instances = (maintenance = 'off'): TestInstance[] => [
  {
    name: 'main',
    endpoints: topo.urls,
    annotations: { [`${A}read-policy`]: 'replica', [`${A}strategy`]: 'round-robin', [`${A}maintenance`]: maintenance },
  },
  { name: 'solo', endpoints: [extra.url], annotations: { [`${A}weight`]: 'heavy' } }, // bad annotation
]

beforeAll(async () => {
  topo = await startTopology()
  extra = await startRedis()
  gw = await startGateway({ instances: instances(), extra: { ...HEALTH, log: { level: 'debug' } }, watch: true, logDestination: sink })
  await waitFor(() => [...gw.gateway.pool.all()].every((e) => e.state.healthy && e.state.role !== 'unknown'), { message: 'endpoints checked' })
})

afterAll(async () => {
  await gw?.stop()
  await extra?.stop()
  await topo?.stop()
})

async function post(path: string, body: string, token = WRITE_TOKEN): Promise<number> {
  const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body })
  await res.arrayBuffer()
  return res.status
}

const since = (n: number) => lines.slice(n)
const LEVEL = { debug: 20, info: 30, warn: 40 } as const

describe('logs', () => {
  it('logs each routing decision at debug with instance, endpoint, strategy and reason', async () => {
    const n = lines.length
    expect(await post('/v1/instances/main', JSON.stringify(['GET', KEY]))).toBe(200)
    const decisions = since(n).filter((l) => l.msg === 'endpoint selected')
    expect(decisions).toHaveLength(1)
    expect(decisions[0]).toMatchObject({
      level: LEVEL.debug,
      instance: 'main',
      strategy: 'round-robin',
      role: 'replica',
      attempt: 'first',
      reason: 'read-policy replica',
    })
    expect([`127.0.0.1:${topo.r1.port}`, `127.0.0.1:${topo.r2.port}`]).toContain(decisions[0]!.endpoint)
  })

  it('reports a bad annotation at warn, naming the key, and keeps the instance', () => {
    const bad = lines.find((l) => l.msg.startsWith('bad annotation'))
    expect(bad).toMatchObject({ level: LEVEL.warn, instance: 'solo', annotation: `${A}weight` })
  })

  it('logs an endpoint going down (warn) and up again (info)', async () => {
    const n = lines.length
    await topo.r2.kill()
    const down = await waitFor(() => since(n).find((l) => l.msg.startsWith('endpoint down')) ?? null, { message: 'endpoint down line' })
    expect(down).toMatchObject({ level: LEVEL.warn, endpoint: `127.0.0.1:${topo.r2.port}` })
    await topo.r2.restart()
    const up = await waitFor(() => since(n).find((l) => l.msg.startsWith('endpoint up')) ?? null, {
      message: 'endpoint up line',
      timeoutMs: 15_000,
    })
    expect(up).toMatchObject({ level: LEVEL.info, endpoint: `127.0.0.1:${topo.r2.port}` })
  })

  it('logs maintenance changes: drain at warn, back to off at info', async () => {
    let n = lines.length
    await gw.rewrite({ instances: instances('drain'), extra: { ...HEALTH, log: { level: 'debug' } } })
    const drain = await waitFor(() => since(n).find((l) => l.msg.startsWith('maintenance:')) ?? null, { message: 'drain line' })
    expect(drain).toMatchObject({ level: LEVEL.warn, instance: 'main', from: 'off', to: 'drain', msg: 'maintenance: off -> drain' })
    n = lines.length
    await gw.rewrite({ instances: instances('off'), extra: { ...HEALTH, log: { level: 'debug' } } })
    const off = await waitFor(() => since(n).find((l) => l.msg.startsWith('maintenance:')) ?? null, { message: 'off line' })
    expect(off).toMatchObject({ level: LEVEL.info, from: 'drain', to: 'off' })
  })

  it('never writes a token, key, value or argument, whatever the request', async () => {
    const n = raw.length
    const statuses = await Promise.all([
      post('/v1/instances/main', JSON.stringify(['SET', KEY, VALUE])),
      post('/v1/instances/main', JSON.stringify(['GET', KEY])),
      post('/v1/instances/main', JSON.stringify(['LPUSH', KEY, VALUE])), // WRONGTYPE
      post('/v1/instances/main', JSON.stringify(['GET', KEY]), BAD_TOKEN), // 401
      post('/v1/instances/main', JSON.stringify(['NOSUCH', KEY, VALUE])), // unknown command
      post('/v1/instances/main', `["SET", "${KEY}", "${VALUE}"`), // malformed JSON
      post('/v1/instances/main/pipeline', JSON.stringify([['SET', KEY, VALUE], ['INCR', KEY]])),
      post('/v1/instances/main/multi-exec', JSON.stringify([['SET', KEY, VALUE], ['NOSUCH', VALUE]])),
      post(`/v1/instances/main/set/${KEY}/${VALUE}?_token=${BAD_TOKEN}`, ''),
      post('/v1/instances/main', JSON.stringify(['EVAL', `return '${VALUE}'`, '0'])),
      post('/v1/instances/main', JSON.stringify(['EVAL', `error('${VALUE}')`, '0'])), // script error
    ])
    expect(statuses).toContain(401)
    const text = raw.slice(n).join('')
    expect(text.length).toBeGreaterThan(0)
    for (const secret of [KEY, VALUE, BAD_TOKEN, WRITE_TOKEN]) expect(text).not.toContain(secret)
  })
})
