// Load from the official @upstash/redis SDK, as an application would use it: one client with
// auto-pipelining (commands issued in the same tick go out as one /pipeline request), N concurrent
// async callers, each alternating SET and GET on its own key, for a fixed time. The SDK's defaults
// stay on (base64 response encoding, read-your-writes sync tokens, JSON (de)serialisation).
// Prints one line "BENCH_JSON {...}" with commands, duration and per-command latency percentiles.
// Usage: node --import tsx bench/sdk-driver.ts <baseUrl> <token> <callers> <seconds> [warmupSeconds]

import { Redis } from '@upstash/redis'

const [baseUrl, token, callersArg, secondsArg, warmupArg] = process.argv.slice(2)
if (!baseUrl || !token) {
  process.stderr.write('usage: sdk-driver.ts <baseUrl> <token> <callers> <seconds> [warmupSeconds]\n')
  process.exit(2)
}
const callers = Number(callersArg ?? 50)
const seconds = Number(secondsArg ?? 5)
const warmup = Number(warmupArg ?? 1)

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

async function caller(i: number): Promise<void> {
  const key = `bench:sdk:${i}`
  let k = 0
  while (!stop) {
    const t0 = performance.now()
    try {
      if ((k++ & 1) === 0) await redis.set(key, value)
      else {
        const v = await redis.get<string>(key)
        if (v !== value) throw new Error(`GET ${key} returned ${JSON.stringify(v)}`)
      }
      allCommands++
      if (measuring) {
        commands++
        record((performance.now() - t0) * 1000)
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
process.stdout.write(`BENCH_JSON ${JSON.stringify(out)}\n`)
process.exit(0)
