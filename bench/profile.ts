// `npm run bench:profile`: the production build of the gateway under `node --cpu-prof`, pinned like
// in `npm run bench`, loaded by one scenario (default GET at 50 connections) for a while; then the
// profile of the measured load (start-up and warm-up left out) is summarised (top functions by self and inclusive time, self time per module) and a
// folded-stacks file is written for flame graph tools (flamegraph.pl, speedscope, inferno).
// Options: --server gateway|hello (gateway)  --scenario ID (get-c50)  --duration S (15)  --interval US (sampling, 250)  --out DIR
//          (bench/results/profile-<date>)  --top N (30)

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH_DIR, SERVER_CORE, loadAverage, pinned, start, startGateway, startRedis, waitForPort } from './lib/procs.js'
import { freePort } from '../test/helpers/ports.js'
import { SCENARIOS, seed } from './lib/scenarios.js'
import { runWrk } from './lib/wrk.js'
import { fmtInt } from './lib/stats.js'
import { format, summarise } from './cpuprofile-top.js'

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'get-c50' },
    duration: { type: 'string', default: '15' },
    interval: { type: 'string', default: '250' },
    out: { type: 'string' },
    top: { type: 'string', default: '30' },
    server: { type: 'string', default: 'gateway' },
  },
})
const s = SCENARIOS.find((x) => x.id === values.scenario)
if (!s || s.gateway === 'sdk') {
  console.error(`unknown or unsupported scenario '${values.scenario}'; one of: ${SCENARIOS.filter((x) => x.gateway !== 'sdk').map((x) => x.id).join(', ')}`)
  process.exit(2)
}
const out = path.resolve(values.out ?? path.join(BENCH_DIR, 'results', `profile-${s.id}-${new Date().toISOString().replace(/[:.]/g, '-')}`))
mkdirSync(out, { recursive: true })

console.log(`load average ${loadAverage().map((x) => x.toFixed(2)).join(' ')}`)
const redis = await startRedis()
await seed(redis.port)
const spawnedAt = performance.now()
// --server hello: the same load on the hello-world server, to see what Node's HTTP layer alone costs.
const hello = values.server === 'hello'
const gw = hello
  ? null
  : await startGateway(redis.port, {
      nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${out}`, `--cpu-prof-interval=${values.interval}`],
    })
const helloPort = hello ? await freePort() : 0
const helloProc = hello
  ? start(
      'hello-world',
      pinned(SERVER_CORE, [
        process.execPath,
        '--cpu-prof',
        `--cpu-prof-dir=${out}`,
        `--cpu-prof-interval=${values.interval}`,
        path.join(BENCH_DIR, 'hello-server.mjs'),
        String(helloPort),
      ]),
    )
  : null
if (helloProc) await waitForPort(helloProc, helloPort)
const proc = gw?.proc ?? helloProc!
const gwSpec = s.gateway(gw?.base ?? `http://127.0.0.1:${helloPort}/v1/instances/bench`)
// (hello-world answers a reply the size of the gateway's GET reply, whatever the scenario)
const spec = hello ? { ...gwSpec, headers: { ...gwSpec.headers, 'x-reply-bytes': '57' } } : gwSpec
await runWrk(spec, { connections: s.connections, durationS: 2, serverPid: proc.pid }) // warm-up
const fromMs = performance.now() - spawnedAt
const r = await runWrk(spec, { connections: s.connections, durationS: Number(values.duration), serverPid: proc.pid })
const toMs = performance.now() - spawnedAt
console.log(
  `${values.server} ${s.id}: ${fmtInt(r.rps)} req/s, p50 ${r.latencyUs.p50} us, p99 ${r.latencyUs.p99} us, cpu ${r.serverCpu.toFixed(0)}% = ${((r.serverCpu * 1e4) / r.rps).toFixed(1)} cpu-us/request (profiling slows it down)`,
)
if (hello) {
  // SIGINT: node exits normally and writes the profile.
  proc.child.kill('SIGINT')
  await new Promise((res) => proc.child.once('exit', res))
} else await proc.stop() // SIGTERM: the gateway drains and exits, and node writes the profile
await redis.proc.stop()
const file = readdirSync(out).find((f) => f.endsWith('.cpuprofile'))
if (!file) {
  console.error(`no .cpuprofile in ${out}:\n${proc.log()}`)
  process.exit(1)
}
const top = Number(values.top)
const summary = summarise(JSON.parse(readFileSync(path.join(out, file), 'utf8')), top, { fromMs, toMs })
writeFileSync(path.join(out, 'stacks.folded'), summary.folded)
const text = format(summary, top)
writeFileSync(path.join(out, 'summary.txt'), text + '\n')
console.log(text)
console.log(`\nprofile: ${path.relative(process.cwd(), path.join(out, file))} (open in Chrome DevTools > Performance, or speedscope)`)
console.log(`folded stacks: ${path.relative(process.cwd(), path.join(out, 'stacks.folded'))} (flamegraph.pl stacks.folded > flame.svg)`)
process.exit(0)
