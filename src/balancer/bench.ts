// Micro-benchmark of the balancers (not a test): ns per pick for each strategy with 3 (and 10)
// candidates, and the maglev table build time. Run: npx tsx src/balancer/bench.ts
// Figures are for comparison between strategies and against a request's total cost (~50-100 us
// through the gateway); absolute values depend on the machine.

import { performance } from 'node:perf_hooks'
import { createBalancer } from './index.js'
import { LoadTracker } from './least-request.js'
import { buildMaglevTable, buildRendezvousTable, type MaglevBackend } from './maglev.js'
import { createPrng } from './prng.js'
import type { Candidate, PickContext, Strategy } from './types.js'

const PICKS = 2_000_000
const STRATEGIES: readonly Strategy[] = ['least-request', 'round-robin', 'random', 'weighted', 'maglev']

function candidates(n: number): Candidate[] {
  const now = performance.now()
  return Array.from({ length: n }, (_, i) => {
    const load = new LoadTracker()
    load.latency.observe(0.3 + i * 0.1, now)
    load.inflight = i % 3
    return { id: `10.0.0.${i + 1}:6379`, weight: 100 + i * 50, load }
  })
}

let sink = 0

function nsPerPick(strategy: Strategy, n: number, sticky: boolean): number {
  const b = createBalancer(strategy)
  const list = candidates(n)
  const rng = createPrng(1)
  const clients = Array.from({ length: 1024 }, (_, i) => `client-${i}`)
  // One mutable context, as a router would reuse per request; the client id varies.
  const ctx: { clientId: string | null; random: () => number } = { clientId: null, random: rng.next }
  const run = (count: number): void => {
    for (let i = 0; i < count; i++) {
      if (sticky) ctx.clientId = clients[i & 1023]!
      sink += b.pick(list, ctx as PickContext)!.weight
    }
  }
  run(200_000) // warm up (JIT, maglev table build)
  const start = process.hrtime.bigint()
  run(PICKS)
  return Number(process.hrtime.bigint() - start) / PICKS
}

function buildMs(build: (m: readonly MaglevBackend[], size: number) => unknown, n: number, weighted: boolean): number {
  const members = Array.from({ length: n }, (_, i) => ({ id: `10.0.${i >> 8}.${i & 255}:6379`, weight: weighted ? 1 + ((i * 37) % 100) : 100 }))
  build(members, 65537) // warm up
  const reps = n > 50 ? 5 : 20
  const start = process.hrtime.bigint()
  for (let r = 0; r < reps; r++) build(members, 65537)
  return Number(process.hrtime.bigint() - start) / reps / 1e6
}

console.log(`node ${process.version}, ${PICKS} picks per row`)
for (const n of [3, 10]) {
  for (const s of STRATEGIES) {
    console.log(`${s.padEnd(14)} ${String(n).padStart(3)} candidates  ${nsPerPick(s, n, s === 'maglev').toFixed(1).padStart(7)} ns/pick`)
  }
  console.log(`${'maglev (no id)'.padEnd(14)} ${String(n).padStart(3)} candidates  ${nsPerPick('maglev', n, false).toFixed(1).padStart(7)} ns/pick`)
}
for (const weighted of [false, true]) {
  for (const n of [3, 100]) {
    const label = `maglev table build, M = 65537, ${String(n).padStart(3)} endpoints, ${weighted ? 'unequal' : 'equal'} weights:`
    console.log(`${label} maglev fill ${buildMs(buildMaglevTable, n, weighted).toFixed(2)} ms, rendezvous fill ${buildMs(buildRendezvousTable, n, weighted).toFixed(2)} ms`)
  }
}
if (sink === 42) console.log('') // keep the picks observable
