// `npm run bench:routing`: does routing stay fast as the routing table grows? (target: endpoint
// selection < 2 us and one instance's update < 1 ms at 10,000 instances; bench/README.md)
//
// Builds the routing table the way the gateway does (src/routing/table.ts, Kubernetes-style
// upserts of InstanceSpecs, with the gateway's own listeners: UpstreamPool.apply and Router.pruneChange),
// with N instances of 3 endpoints (a primary and two healthy replicas), and measures:
//   - endpoint selection: Router.resolve + Router.select per request, ns/op, warm, over random
//     instances (every call a different instance, so caches do not flatter it), for reads
//     (read-policy primary, the default; and prefer-replica with least-request, P2C over two
//     replicas) and writes;
//   - one instance's update (an EndpointSlice change: a replica goes not-ready, then back), in ms:
//     the table alone, with the router's listener (Router.pruneChange), and with UpstreamPool.apply
//     too, as src/gateway.ts wires them (what a watch event costs);
//   - the same for 10 and 1,000 instances, to show the trend;
//   - Kubernetes start-up, where the first list arrives as one upsert per instance.
// The pool is the real UpstreamPool, never started: it builds its ioredis clients but opens no
// connection. Options: --sizes 10,1000,10000  --json (also print one BENCH_JSON line)  --select-only

import { parseArgs } from 'node:util'
import { parseAnnotations } from '../src/discovery/annotations.js'
import type { InstanceSpec } from '../src/core/topology.js'
import { Router } from '../src/selection/router.js'
import { RoutingTable, type RoutingSnapshot } from '../src/routing/table.js'
import { UpstreamPool } from '../src/upstream/pool.js'
import { median } from './lib/stats.js'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10,1000,10000' },
    json: { type: 'boolean', default: false },
    'select-only': { type: 'boolean', default: false },
  },
})
const SIZES = values.sizes.split(',').map(Number)
const SELECTS = 1_000_000
const UPDATES = 200

const DEFAULT_POLICY = parseAnnotations({}).policy
const REPLICA_POLICY = parseAnnotations({ 'redis-gateway.io/read-policy': 'prefer-replica' }).policy

function ip(i: number, e: number): string {
  const n = i * 3 + e
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
}

function spec(i: number, readyReplica = true): InstanceSpec {
  const endpoints = [0, 1, 2].map((e) => {
    const host = ip(i, e)
    return { id: `${host}:6379`, host, port: 6379, ready: e !== 2 || readyReplica }
  })
  return {
    name: `inst-${i}`,
    source: `kubernetes:redis-system/redis-inst-${i}`,
    endpoints,
    // Every other instance reads from replicas (least-request over the two of them).
    policy: i % 2 === 0 ? DEFAULT_POLICY : REPLICA_POLICY,
    annotationErrors: [],
  }
}

interface World {
  table: RoutingTable
  pool: UpstreamPool
  router: Router
  names: string[]
}

type Wiring = 'none' | 'prune' | 'gateway'

function build(n: number, wiring: Wiring): { world: World; buildMs: number } {
  const table = new RoutingTable()
  const pool = new UpstreamPool({ username: '', password: '', tls: false, commandTimeoutMs: 2000, connectTimeoutMs: 1000 })
  const router = new Router(pool, { maxInflightPerEndpoint: 1000, maxEjectionPercent: 50 })
  // 'gateway': as src/gateway.ts wires it; 'prune': the router's listener only.
  if (wiring === 'gateway') table.onChange((_snap: RoutingSnapshot, _prev, change) => pool.apply(change))
  if (wiring !== 'none') table.onChange((snap: RoutingSnapshot, _prev, change) => router.pruneChange(snap, change))
  const specs = Array.from({ length: n }, (_, i) => spec(i))
  const t0 = performance.now()
  table.apply({ type: 'reset', source: 'kubernetes', instances: specs })
  const buildMs = performance.now() - t0
  if (wiring !== 'gateway') pool.sync(table.current)
  // Health as the checker would leave it: endpoint 0 primary, 1 and 2 connected replicas.
  for (const inst of specs) {
    inst.endpoints.forEach((e, k) => {
      const st = pool.get(e.id)!.state
      st.healthy = true
      st.replId = 'a'.repeat(40)
      st.role = k === 0 ? 'primary' : 'replica'
      st.link = k === 0 ? 'none' : 'connected'
      st.primaryHost = k === 0 ? null : inst.endpoints[0]!.host
      st.primaryPort = k === 0 ? 0 : 6379
    })
  }
  return { world: { table, pool, router, names: specs.map((s) => s.name) }, buildMs }
}

/** Kubernetes start-up: the first list arrives as one upsert per instance. ms for `count` upserts. */
function initialListMs(count: number, wiring: Wiring): number {
  const table = new RoutingTable()
  const pool = new UpstreamPool({ username: '', password: '', tls: false, commandTimeoutMs: 2000, connectTimeoutMs: 1000 })
  const router = new Router(pool)
  if (wiring === 'gateway') table.onChange((_snap: RoutingSnapshot, _prev, change) => pool.apply(change))
  if (wiring !== 'none') table.onChange((snap: RoutingSnapshot, _prev, change) => router.pruneChange(snap, change))
  const t0 = performance.now()
  for (let i = 0; i < count; i++) table.apply({ type: 'upsert', instance: spec(i) })
  const ms = performance.now() - t0
  void pool.stop()
  return ms
}

let sink = 0

/** ns per resolve+select, over a pseudo-random walk through the instances. */
function selectNs(w: World, kind: 'read' | 'write', filter: (i: number) => boolean, count: number): number {
  const names = w.names.filter((_, i) => filter(i))
  const order = new Uint32Array(65536)
  let x = 12345
  for (let i = 0; i < order.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    order[i] = x % names.length
  }
  const run = (c: number): void => {
    const snap = w.table.current
    for (let i = 0; i < c; i++) {
      const r = w.router.resolve(snap, 'instance', names[order[i & 65535]!]!, null)
      const sel = w.router.select(r, kind, null, null)
      sink += sel.candidates ?? 1
    }
  }
  run(200_000) // warm (JIT, per-route caches)
  const t0 = process.hrtime.bigint()
  run(count)
  return Number(process.hrtime.bigint() - t0) / count
}

/** ms per single-instance update: a replica goes not-ready, then ready again (two updates). */
function updateMs(w: World, n: number, updates = UPDATES): { median: number; p99: number; max: number } {
  const times: number[] = []
  for (let k = 0; k < updates; k++) {
    const i = (k * 7919) % n
    for (const ready of [false, true]) {
      const t0 = performance.now()
      w.table.apply({ type: 'upsert', instance: spec(i, ready) })
      times.push(performance.now() - t0)
    }
  }
  times.sort((a, b) => a - b)
  return { median: median(times), p99: times[Math.floor(times.length * 0.99)]!, max: times[times.length - 1]! }
}

interface SizeResult {
  instances: number
  endpoints: number
  initialResetMs: number
  selectNs: { readPrimary: number; readPreferReplica: number; write: number }
  updateMs: {
    tableOnly: ReturnType<typeof updateMs>
    tableAndRouterPrune: ReturnType<typeof updateMs>
    asGatewayWiresIt: ReturnType<typeof updateMs>
  }
}

const results: SizeResult[] = []
for (const n of SIZES) {
  const plain = build(n, 'none')
  const sel = {
    readPrimary: selectNs(plain.world, 'read', (i) => i % 2 === 0, SELECTS),
    readPreferReplica: selectNs(plain.world, 'read', (i) => i % 2 === 1, SELECTS),
    write: selectNs(plain.world, 'write', () => true, SELECTS),
  }
  if (values['select-only']) {
    console.log(`${n} instances: select ns/op ${JSON.stringify(sel)}`)
    await plain.world.pool.stop()
    continue
  }
  const tableOnly = updateMs(plain.world, n)
  await plain.world.pool.stop()
  const pruned = build(n, 'prune')
  selectNs(pruned.world, 'read', () => true, 10_000) // the router has state for the instances
  const withPrune = updateMs(pruned.world, n)
  await pruned.world.pool.stop()
  const wired = build(n, 'gateway')
  selectNs(wired.world, 'read', () => true, 10_000)
  const asGateway = updateMs(wired.world, n)
  await wired.world.pool.stop()
  results.push({
    instances: n,
    endpoints: n * 3,
    initialResetMs: wired.buildMs,
    selectNs: sel,
    updateMs: { tableOnly, tableAndRouterPrune: withPrune, asGatewayWiresIt: asGateway },
  })
  const f = (x: number): string => x.toFixed(0).padStart(5)
  const ms = (x: { median: number; p99: number; max: number }): string =>
    `${x.median.toFixed(3)} ms (p99 ${x.p99.toFixed(3)}, max ${x.max.toFixed(3)})`
  console.log(
    `${String(n).padStart(6)} instances x 3 endpoints: select ns/op: read (primary) ${f(sel.readPrimary)}, read (prefer-replica, P2C) ${f(sel.readPreferReplica)}, write ${f(sel.write)}`,
  )
  console.log(
    `         one instance's update: routing table ${ms(tableOnly)}; + Router.pruneChange ${ms(withPrune)}; + UpstreamPool.apply, as src/gateway.ts wires it ${ms(asGateway)}`,
  )
}
for (const n of SIZES.filter((x) => x <= 1000)) {
  console.log(
    `  Kubernetes start-up, ${n} instances listed (one upsert each): routing table ${initialListMs(n, 'none').toFixed(1)} ms, as the gateway wires it ${initialListMs(n, 'gateway').toFixed(1)} ms`,
  )
}
const big = Math.max(...SIZES)
console.log(`  Kubernetes start-up, ${big} instances listed: routing table alone ${initialListMs(big, 'none').toFixed(1)} ms`)
if (values['select-only']) process.exit(0)
const last = results[results.length - 1]!
const worstSelect = Math.max(last.selectNs.readPrimary, last.selectNs.readPreferReplica, last.selectNs.write)
console.log(
  `${worstSelect < 2000 ? 'PASS' : 'FAIL'}  endpoint selection with ${last.instances} instances: ${worstSelect.toFixed(0)} ns/op (target < 2,000 ns)`,
)
const u = last.updateMs
console.log(
  `${u.tableAndRouterPrune.p99 < 1 ? 'PASS' : 'FAIL'}  one instance's update with ${last.instances} instances, routing table + router: median ${u.tableAndRouterPrune.median.toFixed(3)} ms, p99 ${u.tableAndRouterPrune.p99.toFixed(3)} ms, max ${u.tableAndRouterPrune.max.toFixed(3)} ms (target < 1 ms)`,
)
console.log(
  `${u.asGatewayWiresIt.p99 < 1 ? 'PASS' : 'FAIL'}  the same, with UpstreamPool.apply as src/gateway.ts wires it: median ${u.asGatewayWiresIt.median.toFixed(3)} ms, p99 ${u.asGatewayWiresIt.p99.toFixed(3)} ms, max ${u.asGatewayWiresIt.max.toFixed(3)} ms`,
)
if (values.json) process.stdout.write(`BENCH_JSON ${JSON.stringify({ node: process.version, results })}\n`)
if (sink === -1) console.log('')
process.exit(0)
