// `npm run bench:resp-parser`: the gateway's RESP parser (src/upstream/resp-parser.ts) against
// redis-parser 3 (ioredis's, which the gateway used before), in one process, on the reply streams
// the gateway sees: many short GET replies in 64 KiB reads (the hot path), pipeline array replies,
// 100 KB values arriving in reads, integers. Both get the same Buffers; each figure is the median
// of --runs timed passes after a warm-up, in nanoseconds per reply and MB/s.
//
//   npm run bench:resp-parser -- [--runs 7] [--ms 300]

import { Buffer } from 'node:buffer'
import { parseArgs } from 'node:util'
import RedisParser from 'redis-parser'
import { RespParser } from '../src/upstream/resp-parser.js'
import { median, table } from './lib/stats.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '7' }, ms: { type: 'string', default: '300' } } })
const RUNS = Number(values.runs)
const MS = Number(values.ms)

interface Workload {
  id: string
  what: string
  chunks: Buffer[]
  replies: number
}

function chunked(stream: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < stream.length; i += size) out.push(stream.subarray(i, Math.min(stream.length, i + size)))
  return out
}

function workload(id: string, what: string, one: string | Buffer, count: number, read = 65536): Workload {
  const piece = typeof one === 'string' ? Buffer.from(one, 'latin1') : one
  return { id, what, chunks: chunked(Buffer.concat(Array.from({ length: count }, () => piece)), read), replies: count }
}

const value100k = Buffer.concat([Buffer.from('$100000\r\n'), Buffer.alloc(100_000, 0x76), Buffer.from('\r\n')])
const WORKLOADS: Workload[] = [
  workload('get-short', '10,000 GET replies of 3 bytes ($3 bar)', '$3\r\nbar\r\n', 10_000),
  workload('status', '10,000 +OK replies', '+OK\r\n', 10_000),
  workload('integer', '10,000 integer replies', ':1234567\r\n', 10_000),
  workload('mget-10', '2,000 arrays of 10 short values (MGET, HGETALL)', `*10\r\n${'$5\r\nvalue\r\n'.repeat(10)}`, 2_000),
  workload('value-100k', '100 values of 100 KB in 64 KiB reads', value100k, 100),
]

type Run = (w: Workload) => number

function gateway(): Run {
  let n = 0
  const p = new RespParser({ peek: () => SINK, reply: () => void n++, fatal: (e) => { throw e } }, 1 << 30)
  return (w) => {
    n = 0
    for (const c of w.chunks) p.execute(c)
    if (n !== w.replies) throw new Error(`gateway parser: ${n} replies, expected ${w.replies}`)
    return n
  }
}
const SINK = { charge: () => null }

function reference(): Run {
  let n = 0
  const p = new RedisParser({
    returnBuffers: true,
    stringNumbers: true,
    returnReply: () => void n++,
    returnError: () => void n++,
    returnFatalError: (e: Error) => {
      throw e
    },
  })
  return (w) => {
    n = 0
    for (const c of w.chunks) p.execute(c)
    if (n !== w.replies) throw new Error(`redis-parser: ${n} replies, expected ${w.replies}`)
    return n
  }
}

/** Nanoseconds per reply: passes repeated for about MS milliseconds, per run. */
function measure(run: Run, w: Workload): number {
  const t0 = performance.now()
  while (performance.now() - t0 < MS) run(w) // warm-up
  const per: number[] = []
  for (let r = 0; r < RUNS; r++) {
    let passes = 0
    const start = process.hrtime.bigint()
    const until = performance.now() + MS
    while (performance.now() < until) {
      run(w)
      passes++
    }
    per.push(Number(process.hrtime.bigint() - start) / (passes * w.replies))
  }
  return median(per)
}

console.log(`node ${process.version}, ${RUNS} runs of ${MS} ms each, median ns per reply`)
const rows: string[][] = []
for (const w of WORKLOADS) {
  const bytes = w.chunks.reduce((s, c) => s + c.length, 0) / w.replies
  const g = measure(gateway(), w)
  const r = measure(reference(), w)
  rows.push([w.id, w.what, g.toFixed(1), r.toFixed(1), `${((g / r - 1) * 100).toFixed(0)} %`, ((bytes / g) * 1e3).toFixed(0)])
}
console.log(table([['workload', 'stream', 'gateway ns', 'redis-parser ns', 'gateway vs redis-parser', 'gateway MB/s'], ...rows]))
