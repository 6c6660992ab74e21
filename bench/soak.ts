// `npm run bench:soak` (or `npm run bench -- --soak`): does the gateway's memory stay flat under a
// long steady load? Measures the peak rate (GET at 50 connections), then runs half of it for
// 5 minutes (SET and GET in turn, SDK form; wrk's per-request delay and the number of connections,
// calibrated first, set the rate), sampling the gateway's RSS and V8 heap (from its own /metrics)
// every 10 s, and reports the growth: least-squares slope after the first minute, and last minute
// vs second minute.
// Options (CLI): --minutes N (5)  --interval S (10)  --fraction F (0.5)

import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { loadAverage, rssKiB, sleep, startGateway, startRedis, type GatewayServer } from './lib/procs.js'
import { GW_HEADERS, SCENARIOS, SMALL, seed } from './lib/scenarios.js'
import { runWrk, type HttpRequestSpec, type WrkResult } from './lib/wrk.js'
import { fmtInt, slope } from './lib/stats.js'

export interface SoakSample {
  tS: number
  rssKiB: number
  heapUsedKiB: number
}

export interface SoakResult {
  peakRps: number
  targetRps: number
  achievedRps: number
  /** Connections and per-request delay the calibration chose for the target rate. */
  connections: number
  delayMs: number
  minutes: number
  p50Us: number
  p99Us: number
  errors: number
  samples: SoakSample[]
  /** RSS slope after the first minute, KiB per minute. */
  rssSlopeKiBPerMin: number
  heapSlopeKiBPerMin: number
  /** Mean RSS of the last minute minus the mean of the second minute, KiB. */
  rssGrowthKiB: number
  /** Spread of the RSS samples after the first minute (max - min), KiB. */
  rssSpreadKiB: number
  verdict: string
  loadAverage: [number, number, number]
}

async function heapUsedKiB(g: GatewayServer): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${g.opsPort}/metrics`)).text()
  const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)
  return m ? Number(m[1]) / 1024 : NaN
}

export async function runSoak(o: { minutes?: number; intervalS?: number; fraction?: number }): Promise<SoakResult> {
  const minutes = o.minutes ?? 5
  const intervalS = o.intervalS ?? 10
  const fraction = o.fraction ?? 0.5
  const redis = await startRedis()
  await seed(redis.port)
  const g = await startGateway(redis.port)
  const get = SCENARIOS.find((s) => s.id === 'get-c50')!
  if (get.gateway === 'sdk') throw new Error('unreachable')
  const pid = g.proc.pid
  await runWrk(get.gateway(g.base), { connections: 50, durationS: 2, serverPid: pid })
  const peak = await runWrk(get.gateway(g.base), { connections: 50, durationS: 5, serverPid: pid })
  const target = peak.rps * fraction
  const spec: HttpRequestSpec = {
    method: 'POST',
    url: g.base,
    headers: GW_HEADERS,
    bodies: [JSON.stringify(['set', 'bench:soak', SMALL]), JSON.stringify(['get', 'bench:soak'])],
  }
  // Calibrate the rate: each connection waits delayMs before each request. wrk's delay is whole
  // milliseconds, too coarse alone (1 ms or 2 ms at 50 connections can be 25k or 15k req/s), so the
  // delay is fixed first and the number of connections is tuned (each is ~2 % of the rate at 50).
  let conns = 50
  const delayMs = Math.max(1, Math.round((conns * 1000) / target))
  for (let k = 0; k < 3; k++) {
    const r = await runWrk(spec, { connections: conns, durationS: 4, serverPid: pid, delayMs })
    conns = Math.min(1000, Math.max(1, Math.round(conns * (target / Math.max(1, r.rps)))))
  }
  console.log(
    `\nsoak: peak ${fmtInt(peak.rps)} req/s (GET, 50 connections); ${minutes} min at ~${fmtInt(target)} req/s (SET/GET, ${conns} connections, ${delayMs} ms between requests per connection); RSS every ${intervalS} s`,
  )
  const samples: SoakSample[] = []
  const t0 = performance.now()
  const load: Promise<WrkResult> = runWrk(spec, { connections: conns, durationS: minutes * 60, serverPid: pid, delayMs })
  let done = false
  void load.finally(() => (done = true))
  for (;;) {
    const tS = (performance.now() - t0) / 1000
    const s = { tS: Math.round(tS), rssKiB: rssKiB(pid), heapUsedKiB: Math.round(await heapUsedKiB(g)) }
    samples.push(s)
    process.stdout.write(`  t=${String(s.tS).padStart(3)} s  RSS ${(s.rssKiB / 1024).toFixed(1)} MiB  heap used ${(s.heapUsedKiB / 1024).toFixed(1)} MiB\n`)
    if (done || tS >= minutes * 60) break
    await sleep(Math.max(0, (samples.length * intervalS - (performance.now() - t0) / 1000) * 1000))
  }
  const r = await load
  await g.proc.stop()
  await redis.proc.stop()
  const steady = samples.filter((s) => s.tS >= 60)
  const rssSlope = slope(steady.map((s) => s.tS / 60), steady.map((s) => s.rssKiB))
  const heapSlope = slope(steady.map((s) => s.tS / 60), steady.map((s) => s.heapUsedKiB))
  const lastMin = steady.filter((s) => s.tS >= minutes * 60 - 60).map((s) => s.rssKiB)
  const secondMin = steady.filter((s) => s.tS < 120).map((s) => s.rssKiB)
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / (xs.length || 1)
  const growth = mean(lastMin) - mean(secondMin)
  const spread = Math.max(...steady.map((s) => s.rssKiB)) - Math.min(...steady.map((s) => s.rssKiB))
  // "No growth beyond noise": the last minute is within the spread the second minute already shows,
  // or within 2% of the RSS.
  const secondSpread = secondMin.length > 0 ? Math.max(...secondMin) - Math.min(...secondMin) : 0
  const flat = growth <= Math.max(secondSpread, 0.02 * mean(secondMin))
  // Both minutes compared must have been sampled after the first one (warm-up): 3 minutes at least.
  const verdict = minutes < 3 ? 'too short to judge (3 minutes at least)' : flat ? 'flat (no growth beyond noise)' : 'GROWING'
  const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
  console.log(
    `  achieved ${fmtInt(r.rps)} req/s (${(r.rps / peak.rps).toFixed(2)}x the peak), p50 ${r.latencyUs.p50} us, p99 ${r.latencyUs.p99} us, ${errors} errors; RSS slope after 1 min ${rssSlope.toFixed(0)} KiB/min, heap ${heapSlope.toFixed(0)} KiB/min; last minute vs second minute ${growth >= 0 ? '+' : ''}${(growth / 1024).toFixed(2)} MiB (spread ${(spread / 1024).toFixed(2)} MiB): ${verdict}`,
  )
  return {
    peakRps: peak.rps,
    targetRps: target,
    achievedRps: r.rps,
    connections: conns,
    delayMs,
    minutes,
    p50Us: r.latencyUs.p50,
    p99Us: r.latencyUs.p99,
    errors,
    samples,
    rssSlopeKiBPerMin: rssSlope,
    heapSlopeKiBPerMin: heapSlope,
    rssGrowthKiB: growth,
    rssSpreadKiB: spread,
    verdict,
    loadAverage: loadAverage(),
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '5' },
      interval: { type: 'string', default: '10' },
      fraction: { type: 'string', default: '0.5' },
      json: { type: 'string' },
    },
  })
  const r = await runSoak({ minutes: Number(values.minutes), intervalS: Number(values.interval), fraction: Number(values.fraction) })
  if (values.json) {
    const { writeFileSync } = await import('node:fs')
    writeFileSync(values.json, JSON.stringify(r, null, 2))
  }
  process.exit(0)
}
