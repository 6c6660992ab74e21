// Preloaded into the gateway by bench/tails.ts (node --require): every GC with its wall-clock
// start (ms since the epoch, as bench/wrk/timeline.lua counts responses), its duration and kind
// (1 minor, 2 major, 4 incremental, 8 weak callbacks), appended to GC_TIMELINE_OUT twice a second.
const { PerformanceObserver, performance } = require('node:perf_hooks')
const { appendFileSync } = require('node:fs')

const file = process.env.GC_TIMELINE_OUT
const pending = []
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) pending.push(`${(performance.timeOrigin + e.startTime).toFixed(3)} ${e.duration.toFixed(3)} ${e.detail?.kind ?? 0}`)
}).observe({ entryTypes: ['gc'] })
setInterval(() => {
  if (pending.length > 0) appendFileSync(file, `${pending.splice(0).join('\n')}\n`)
}, 500).unref()
