// Preloaded into the gateway by `bench:scale-kube --late-turns` (node --require): logs every late
// turn of its event loop and every long GC pause, on the gateway's clock (ms since its start).
// A 1 ms interval timer: a gap over 20 ms between two of its runs is a turn that long (the timer
// costs the gateway a little CPU of its own). Lines, appended to LATE_TURNS_OUT once a second:
//   listen <ms>              the first server that listens
//   turn <start ms> <ms>     a gap over 20 ms
//   gc <start ms> <ms> <kind> a collection over 5 ms (kind: 1 minor, 4 major, 8 incremental, 16 weak callbacks)
const { PerformanceObserver, performance } = require('node:perf_hooks')
const { appendFileSync } = require('node:fs')
const net = require('node:net')

const file = process.env.LATE_TURNS_OUT
const lines = []
let last = performance.now()
setInterval(() => {
  const now = performance.now()
  if (now - last > 20) lines.push(`turn ${last.toFixed(1)} ${(now - last).toFixed(1)}`)
  last = now
}, 1).unref()
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.duration > 5) lines.push(`gc ${e.startTime.toFixed(1)} ${e.duration.toFixed(1)} ${e.detail?.kind ?? 0}`)
}).observe({ entryTypes: ['gc'] })
let listened = false
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (!listened) lines.push(`listen ${performance.now().toFixed(1)}`)
  listened = true
  return listen.apply(this, args)
}
setInterval(() => {
  if (lines.length > 0) appendFileSync(file, `${lines.splice(0).join('\n')}\n`)
}, 1000).unref()
