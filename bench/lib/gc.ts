// GC pauses of a Node server started with `--trace-gc`, read from its output as it runs: the time
// its main thread spent stopped for collection, for the "GC share of CPU" of `npm run bench`.
//
// V8 prints one line per collection, e.g.
//   [123:0x5e...]   5123 ms: Scavenge 40.1 (57.3) -> 24.6 (57.8) MB, 1.84 / 0.00 ms  (average mu = ...) allocation failure;
//   [123:0x5e...]   9042 ms: Mark-Compact 60.3 (80.0) -> 31.2 (79.0) MB, 3.10 / 0.05 ms  (+ 12.4 ms in 210 steps since start of marking, ...) finalize incremental marking ...
// The first figure after "MB," is the pause on the main thread; a Mark-Compact's incremental
// steps ran on the main thread too, between requests, and are counted ("+ N ms in M steps").
// Concurrent marking and sweeping on helper threads is not: it shows in the process's CPU only.

import type { ChildProcess } from 'node:child_process'

export interface GcTotals {
  /** Main-thread milliseconds in pauses and incremental steps. */
  ms: number
  count: number
  /** Longest single pause (ms). */
  maxMs: number
}

const LINE = /: (Scavenge|Mark-Compact|Mark-Compact \(reduce\)|Minor Mark-Compact|Minor Mark-Sweep)\b.*?MB, ([\d.]+) \/ [\d.]+ ms(?:\s+\(\+ ([\d.]+) ms in \d+ steps)?/

/** Counts what `child` (started with --trace-gc) reports; `take()` returns the totals since the last take. */
export function gcTracker(child: ChildProcess): { take(): GcTotals } {
  let cur: GcTotals = { ms: 0, count: 0, maxMs: 0 }
  let rest = ''
  child.stdout?.on('data', (b: Buffer) => {
    const lines = (rest + b.toString('utf8')).split('\n')
    rest = lines.pop() ?? ''
    for (const l of lines) {
      const m = LINE.exec(l)
      if (m === null) continue
      const pause = Number(m[2])
      cur.ms += pause + (m[3] === undefined ? 0 : Number(m[3]))
      cur.count++
      if (pause > cur.maxMs) cur.maxMs = pause
    }
  })
  return {
    take() {
      const t = cur
      cur = { ms: 0, count: 0, maxMs: 0 }
      return t
    },
  }
}
