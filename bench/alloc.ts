// Where the bytes a request allocates go (issue 21, requirement 1: young-generation collections set
// the tail, and how often they come is the allocation per request). Runs a scenario under wrk against
// the gateway (or bench/raw-server.mjs's proxy, the floor of a Node gateway) with the inspector's
// sampling heap profiler preloaded (bench/lib/heap-sample.cjs: objects that died young included), and
// prints the bytes per request, in all and by the function that allocated them.
//   npm run bench:alloc -- [--scenario get-c50] [--server gateway|raw-proxy] [--duration 5] [--top 30]
// Sampling slows the server (~3x fewer requests a second); the bytes per request are what it measures,
// not the rate. Sampled every 256 bytes, so small figures are estimates (± a few %).

import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH_DIR, sleep, startGateway, startRaw, startRedis, stopChild, tmpDir, type Server } from './lib/procs.js'
import { KEY, SCENARIOS, seed } from './lib/scenarios.js'
import { fmtInt, table } from './lib/stats.js'
import { runWrk } from './lib/wrk.js'

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'get-c50' },
    server: { type: 'string', default: 'gateway' },
    duration: { type: 'string', default: '5' },
    top: { type: 'string', default: '30' },
  },
})
const scenario = SCENARIOS.find((s) => s.id === values.scenario)
if (!scenario) throw new Error(`unknown scenario ${values.scenario}; one of ${SCENARIOS.map((s) => s.id).join(', ')}`)
const { gateway } = scenario
if (gateway === 'sdk') throw new Error('the sdk scenario has no wrk request; use sdk-wrk')
if (values.server !== 'gateway' && values.server !== 'raw-proxy') throw new Error('--server is gateway or raw-proxy')
if (values.server === 'raw-proxy' && values.scenario !== 'get-c1' && values.scenario !== 'get-c50')
  throw new Error('raw-proxy answers only GET of the bench key: --scenario get-c1 or get-c50')

interface ProfileNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly selfSize: number
  readonly children: readonly ProfileNode[]
}

const redis = await startRedis()
await seed(redis.port)
const out = path.join(tmpDir(), `heap-sample-${values.server}.json`)
const preload = { nodeArgs: ['--require', path.join(BENCH_DIR, 'lib/heap-sample.cjs')], env: { HEAP_SAMPLE_OUT: out } }
let server: Server
let base: string
if (values.server === 'gateway') {
  const gw = await startGateway(redis.port, preload)
  server = gw
  base = gw.base
} else {
  server = await startRaw('proxy', { redisPort: redis.port, key: KEY, ...preload })
  base = `${server.url}/v1/instances/bench`
}
const spec = gateway(base)
const pid = server.proc.child.pid!
await runWrk(spec, { connections: scenario.connections, durationS: 3, serverPid: pid }) // warm-up
process.kill(pid, 'SIGUSR2')
await sleep(300)
const r = await runWrk(spec, { connections: scenario.connections, durationS: Number(values.duration), serverPid: pid })
process.kill(pid, 'SIGUSR2')
for (let i = 0; i < 60 && !existsSync(out); i++) await sleep(500)
await stopChild(server.proc.child)
await stopChild(redis.proc.child)
if (!existsSync(out)) throw new Error('the server wrote no heap profile')

const profile = JSON.parse(readFileSync(out, 'utf8')) as { head: ProfileNode } | { error: string }
if ('error' in profile) throw new Error(`sampling failed: ${profile.error}`)
const byFunction = new Map<string, number>()
let total = 0
const walk = (n: ProfileNode): void => {
  const f = n.callFrame
  const where = f.url === '' ? '' : ` ${path.basename(f.url)}:${f.lineNumber + 1}`
  const name = `${f.functionName === '' ? '(anonymous)' : f.functionName}${where}`
  total += n.selfSize
  byFunction.set(name, (byFunction.get(name) ?? 0) + n.selfSize)
  for (const c of n.children) walk(c)
}
walk(profile.head)
// Profiles sample the window between the two signals; the requests are wrk's over its run, which
// that window contains (give or take the signals' few ms).
const perRequest = (bytes: number): string => fmtInt(bytes / r.requests)
console.log(`${values.server}, ${scenario.id}: ${fmtInt(r.requests)} requests (${fmtInt(r.rps)}/s while sampled); ${perRequest(total)} bytes allocated per request`)
const rows = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))
console.log(table([['bytes/request', 'allocated in (function file:line, built JS)'], ...rows.map(([name, bytes]) => [perRequest(bytes), name])]))
