// Load from the official @upstash/redis SDK, as an application would use it: one client with
// auto-pipelining (commands issued in the same tick go out as one /pipeline request), N concurrent
// async callers, each alternating SET and GET on its own key, for a fixed time. The SDK's defaults
// stay on (base64 response encoding, read-your-writes sync tokens, JSON (de)serialisation).
// Prints one line "BENCH_JSON {...}" with commands, duration and per-command latency percentiles.
// Usage: node --import tsx bench/sdk-driver.ts <baseUrl> <token> <callers> <seconds> [warmupSeconds]
// With SDK_CAPTURE=<file>, the bodies of the first 2,000 requests the SDK sends after the warm-up
// (and their path) are written to <file> as JSON, for wrk to replay (the "sdk-wrk" scenario: the
// SDK's exact traffic from a client that is not the bottleneck). SDK_FANOUT=<n>: each caller sends
// 1-n commands at once (random; SET and GET of its own keys), as a request handler's Promise.all
// does, so that batches come in mixed sizes.

import { writeFileSync } from 'node:fs'
import { Redis } from '@upstash/redis'

const [baseUrl, token, callersArg, secondsArg, warmupArg] = process.argv.slice(2)
if (!baseUrl || !token) {
  process.stderr.write('usage: sdk-driver.ts <baseUrl> <token> <callers> <seconds> [warmupSeconds]\n')
  process.exit(2)
}
const callers = Number(callersArg ?? 50)
const seconds = Number(secondsArg ?? 5)
const warmup = Number(warmupArg ?? 1)

const fanout = Number(process.env.SDK_FANOUT ?? 1)
const capture = process.env.SDK_CAPTURE
const captured: { path: string; body: string }[] = []
if (capture) {
  const realFetch = globalThis.fetch
  globalThis.fetch = (input, init) => {
    if (measuring && captured.length < 2000 && typeof init?.body === 'string') {
      captured.push({ path: new URL(input instanceof Request ? input.url : String(input)).pathname, body: init.body })
    }
    return realFetch(input, init)
  }
}

const redis = new Redis({ url: baseUrl, token, enableAutoPipelining: true })
const value = 'v'.repeat(32)

let measuring = false
let stop = false
let commands = 0
/** Commands completed over the whole run, warm-up included (to relate to the gateway's request count). */
let allCommands = 0
let errors = 0
let firstError = ''
let lat = new Float64Array(1 << 20)
let n = 0

function record(us: number): void {
  if (n === lat.length) {
    const bigger = new Float64Array(lat.length * 2)
    bigger.set(lat)
    lat = bigger
  }
  lat[n++] = us
}

/** One command of caller `i`: SET and GET of its own key in turn (j: the caller's count). */
async function command(key: string, j: number): Promise<void> {
  if ((j & 1) === 0) await redis.set(key, value)
  else {
    const v = await redis.get<string>(key)
    if (v !== value) throw new Error(`GET ${key} returned ${JSON.stringify(v)}`)
  }
}

async function caller(i: number): Promise<void> {
  let k = 0
  while (!stop) {
    // SDK_FANOUT: like a request handler's Promise.all of a few commands, 1-n at once.
    const m = fanout > 1 ? 1 + Math.floor(Math.random() * fanout) : 1
    const t0 = performance.now()
    try {
      await Promise.all(Array.from({ length: m }, (_, x) => command(`bench:sdk:${i}:${x}`, k)))
      k++
      allCommands += m
      if (measuring) {
        commands += m
        for (let x = 0; x < m; x++) record((performance.now() - t0) * 1000)
      }
    } catch (err) {
      errors++
      firstError ||= err instanceof Error ? err.message : String(err)
      if (errors > 1000) stop = true
    }
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const running = Array.from({ length: callers }, (_, i) => caller(i))
await new Promise((r) => setTimeout(r, warmup * 1000))
measuring = true
const t0 = performance.now()
await new Promise((r) => setTimeout(r, seconds * 1000))
measuring = false
const durationS = (performance.now() - t0) / 1000
stop = true
await Promise.all(running)
const sorted = lat.subarray(0, n).sort()
const out = {
  commands,
  allCommands,
  durationS,
  errors,
  firstError,
  latencyUs: {
    p50: Math.round(percentile(sorted, 50)),
    p90: Math.round(percentile(sorted, 90)),
    p99: Math.round(percentile(sorted, 99)),
    max: Math.round(percentile(sorted, 100)),
  },
}
if (capture) writeFileSync(capture, JSON.stringify(captured))
process.stdout.write(`BENCH_JSON ${JSON.stringify(out)}\n`)
process.exit(0)
