// A/B comparison of two builds of the gateway under the same load, runs interleaved (A, B, A, B...)
// so that background load hits both alike. Each build is a compiled main.js (tsc output), e.g.
//   npx tsc -p tsconfig.build.json --outDir .tmp/a   (then change something)   ... --outDir .tmp/b
//   npx tsx bench/ab.ts .tmp/a/src/main.js .tmp/b/src/main.js --scenario get-c50 --runs 5
// Options: --scenario ID[,ID] (get-c50)  --runs N (5)  --duration S (5)
//          --a-node-args='...'  --b-node-args='...'  (node flags per build, e.g. --b-node-args=--max-semi-space-size=64)
//          --a-config='...'  --b-config='...'  (a YAML line added to that gateway's config, e.g. one build
//          against itself with --b-config='redis: { aclUsers: false }')

import path from 'node:path'
import { parseArgs } from 'node:util'
import { loadAverage, startGateway, startRedis, type GatewayServer } from './lib/procs.js'
import { SCENARIOS, seed } from './lib/scenarios.js'
import { fmtInt, median } from './lib/stats.js'
import { runWrk, type WrkResult } from './lib/wrk.js'

/** Gateway CPU time per request, in microseconds. */
const cpuUs = (r: WrkResult): number => (r.serverCpu * 1e4) / r.rps

const { values, positionals } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'get-c50' },
    runs: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    'a-node-args': { type: 'string', default: '' },
    'b-node-args': { type: 'string', default: '' },
    'a-config': { type: 'string', default: '' },
    'b-config': { type: 'string', default: '' },
  },
  allowPositionals: true,
})
const [a, b] = positionals
if (!a || !b) {
  console.error('usage: ab.ts <a/main.js> <b/main.js> [--scenario get-c50] [--runs 5] [--duration 5]')
  process.exit(2)
}
console.log(`load average ${loadAverage().map((x) => x.toFixed(2)).join(' ')}`)
const redis = await startRedis()
await seed(redis.port)
const builds: [string, GatewayServer][] = [
  ['A', await startGateway(redis.port, { main: path.resolve(a), nodeArgs: values['a-node-args'].split(' ').filter(Boolean), config: values['a-config'] ? [values['a-config']] : [] })],
  ['B', await startGateway(redis.port, { main: path.resolve(b), nodeArgs: values['b-node-args'].split(' ').filter(Boolean), config: values['b-config'] ? [values['b-config']] : [] })],
]
for (const id of values.scenario.split(',')) {
  const s = SCENARIOS.find((x) => x.id === id)
  if (!s || s.gateway === 'sdk') throw new Error(`unknown or unsupported scenario ${id}`)
  const results = new Map<string, WrkResult[]>()
  for (const [name, g] of builds) await runWrk(s.gateway(g.base), { connections: s.connections, durationS: 2, serverPid: g.proc.pid })
  for (let i = 0; i < Number(values.runs); i++) {
    for (const [name, g] of i % 2 === 0 ? builds : [...builds].reverse()) {
      const r = await runWrk(s.gateway(g.base), { connections: s.connections, durationS: Number(values.duration), serverPid: g.proc.pid })
      results.set(name, [...(results.get(name) ?? []), r])
      console.log(
        `  ${id} ${name} run ${i + 1}: ${fmtInt(r.rps)} req/s  p50 ${r.latencyUs.p50} us  p99 ${r.latencyUs.p99} us  cpu ${r.serverCpu.toFixed(0)}%  ${cpuUs(r).toFixed(1)} cpu-us/req`,
      )
    }
  }
  const m = (name: string, f: (r: WrkResult) => number): number => median(results.get(name)!.map(f))
  const ca = m('A', cpuUs)
  const cb = m('B', cpuUs)
  const ra = m('A', (r) => r.rps)
  const rb = m('B', (r) => r.rps)
  console.log(
    `${id}: A ${fmtInt(ra)} req/s (p50 ${fmtInt(m('A', (r) => r.latencyUs.p50))} us), B ${fmtInt(rb)} req/s (p50 ${fmtInt(m('B', (r) => r.latencyUs.p50))} us): B/A = ${(rb / ra).toFixed(3)}`,
  )
  // Under background load, throughput follows whatever CPU share the gateway gets; the CPU time it
  // spends per request does not (much): compare that.
  console.log(`${id}: gateway CPU per request: A ${ca.toFixed(1)} us, B ${cb.toFixed(1)} us: B/A = ${(cb / ca).toFixed(3)}`)
  // The machine's speed drifts between runs (more than a small change moves the figures); A and B
  // run back to back in each round, so the median of the per-round differences cancels the drift.
  const runsA = results.get('A')!
  const runsB = results.get('B')!
  const diff = (f: (r: WrkResult) => number): number => median(runsA.map((r, i) => f(runsB[i]!) - f(r)))
  console.log(
    `${id}: B - A per round (median): p50 ${diff((r) => r.latencyUs.p50).toFixed(1)} us, CPU per request ${diff(cpuUs).toFixed(1)} us`,
  )
}
for (const [, g] of builds) await g.proc.stop()
await redis.proc.stop()
process.exit(0)
