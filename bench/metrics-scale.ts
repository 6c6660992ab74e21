// What metrics cost at scale (issue 21: no event-loop turn over ~50 ms at 5,000 instances): N
// instances with one endpoint each appear at once (their series registered, zero-initialised), then
// /metrics is scraped through the ops app, plain and gzip-compressed (what Prometheus asks for).
// Prints the registration time (the one turn the instances appear in), each scrape's wall and CPU
// time, the longest single event-loop turn while it ran (gaps between setImmediate ticks, so any
// turn the scrape holds shows), the text size and the size on the wire. In process, no socket:
// the handler's cost, not the HTTP server's; the body is read piece by piece as a socket would
// take it (not concatenated, which would be a long turn of the bench's own).
//
//   npx tsx bench/metrics-scale.ts [--instances 5000] [--scrapes 3] [--traffic]
//
// --traffic also records one request per command class and one round trip per instance, so the
// request and upstream histograms have series too (a busy gateway's shape, not a fresh one's).
// With `node --expose-gc` (NODE_OPTIONS=--expose-gc) it also prints the heap the series hold.

import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { EventHub } from '../src/core/events.js'
import { createOpsApp } from '../src/http/ops-plane.js'
import { GatewayMetrics } from '../src/telemetry/metrics.js'

const { values: opts } = parseArgs({
  options: {
    instances: { type: 'string', default: '5000' },
    scrapes: { type: 'string', default: '3' },
    traffic: { type: 'boolean', default: false },
  },
})
const N = Number(opts.instances)
const SCRAPES = Number(opts.scrapes)

const gc = (globalThis as { gc?: () => void }).gc
const heapMB = (): number => {
  gc?.()
  return process.memoryUsage().heapUsed / 1e6
}

const events = new EventHub()
const metrics = new GatewayMetrics()
metrics.subscribe(events)
const heapBefore = heapMB()

const endpointOf = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:6379`
const cpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
let t = performance.now()
const cpu = cpuMs()
for (let i = 0; i < N; i++) {
  events.emit('instanceChange', {
    instance: `redis-${i}`,
    change: 'added',
    maintenance: null,
    weight: null,
    removedEndpoints: [],
    addedEndpoints: [endpointOf(i)],
  })
}
const registerMs = performance.now() - t
const registerCpuMs = cpuMs() - cpu
if (opts.traffic) {
  for (let i = 0; i < N; i++) {
    const instance = `redis-${i}`
    for (const cls of ['read', 'write', 'pipeline', 'multi']) {
      events.emit('requestEnd', { instance, group: null, class: cls, status: 200, code: 'OK', durationS: 0.0003, endMs: 0, scope: null })
    }
    events.emit('upstream', {
      instance, endpoint: endpointOf(i), role: 'primary', outcome: 'ok', durationS: 0.0002, scope: null,
      operation: '', commands: 1, host: '', port: 0, startMs: 0, breaker: null,
    })
  }
}
const heapAfter = heapMB()

const app = createOpsApp({
  registry: metrics.registry,
  readiness: { notReadyReason: () => null },
  routes: { routes: () => ({}) as never, fullView: async () => ['{}'] },
  access: { mode: () => 'none', tokens: () => null as never },
})

/** Runs `work` while a setImmediate chain ticks; returns its result, wall and CPU time and the longest gap between ticks. */
async function timed<T>(work: () => Promise<T>): Promise<{ result: T; ms: number; cpuMs: number; longestTurnMs: number }> {
  let running = true
  let last = performance.now()
  let longest = 0
  const tick = (): void => {
    const now = performance.now()
    longest = Math.max(longest, now - last)
    last = now
    if (running) setImmediate(tick)
  }
  setImmediate(tick)
  const start = performance.now()
  const startCpu = cpuMs()
  last = start
  const result = await work()
  const ms = performance.now() - start
  // The turn the work finished in counts too.
  tick()
  running = false
  return { result, ms, cpuMs: cpuMs() - startCpu, longestTurnMs: longest }
}

/** The body's size, and the body itself when it is gzip (~1 MB); a turn between pieces, as a socket write takes. */
async function scrape(gzip: boolean): Promise<{ bytes: number; gzipped: Buffer | null }> {
  const res = await app.request('/metrics', { headers: gzip ? { 'accept-encoding': 'gzip' } : {} })
  const pieces: Uint8Array[] = []
  let bytes = 0
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += piece.length
    if (res.headers.get('content-encoding') === 'gzip') pieces.push(piece)
    await nextTurn()
  }
  return { bytes, gzipped: res.headers.get('content-encoding') === 'gzip' ? Buffer.concat(pieces) : null }
}

const fmt = (x: number): string => x.toFixed(x < 10 ? 1 : 0)
console.log(`instances: ${N} (one endpoint each)${opts.traffic ? ', with traffic' : ''}; node ${process.version}`)
console.log(`register:  ${fmt(registerMs)} ms (one turn), CPU ${fmt(registerCpuMs)} ms${gc ? `, heap +${fmt(heapAfter - heapBefore)} MB` : ''}`)
// The ops app's first request builds its router (~20 ms once, any route): not the scrape's cost.
await app.request('/healthz')
// The machine's own noise: the longest gap between ticks while nothing else runs (a shared VM
// deschedules the process now and then; a scrape's longest turn is only meaningful above this).
const idle = await timed(() => new Promise<void>((resolve) => setTimeout(resolve, 1_000)))
console.log(`idle:      longest turn ${fmt(idle.longestTurnMs)} ms in 1 s with no scrape (the machine's noise floor)`)
let textBytes = 0
for (const gzip of [false, true]) {
  for (let k = 0; k < SCRAPES; k++) {
    const r = await timed(() => scrape(gzip))
    const { bytes, gzipped } = r.result
    if (gzipped !== null) textBytes = gunzipSync(gzipped).length
    else textBytes = bytes
    const wire = gzipped !== null ? `gzip ${fmt(bytes / 1e6)} MB` : `plain ${fmt(bytes / 1e6)} MB`
    console.log(
      `scrape ${gzip ? 'accept gzip' : 'plain      '} #${k + 1}: ${fmt(r.ms).padStart(5)} ms, CPU ${fmt(r.cpuMs).padStart(5)} ms, ` +
        `longest turn ${fmt(r.longestTurnMs).padStart(5)} ms, ${wire}`,
    )
  }
}
const lines = (await metrics.registry.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#')).length
console.log(`text:      ${fmt(textBytes / 1e6)} MB, ${lines} series lines`)
