// Runs wrk (one thread, pinned to the client core) with bench/wrk/request.lua (or another script
// that speaks its protocol) and returns what its done() hook reports, plus per-core CPU use and the
// server's own CPU use during the run.

import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { BENCH_DIR, CLIENT_CORE, coreBusy, coreTimes, cpuSeconds, pinned, tmpDir } from './procs.js'

export interface HttpRequestSpec {
  readonly method: 'GET' | 'POST' | 'PUT'
  /** Full URL, path included. */
  readonly url: string
  readonly headers?: Readonly<Record<string, string>>
  /** Bodies sent in turn (one per request); none for GET. */
  readonly bodies?: readonly string[]
}

export interface WrkResult {
  readonly requests: number
  readonly durationS: number
  readonly rps: number
  readonly errors: { connect: number; read: number; write: number; status: number; timeout: number }
  readonly latencyUs: { min: number; mean: number; max: number; p50: number; p90: number; p99: number; p999: number }
  /** Busy share (0..100) of each core during the run. */
  readonly coreBusy: number[]
  /** CPU used by the server under test, in % of one core. */
  readonly serverCpu: number
}

let seq = 0

export function writeRequestFiles(spec: HttpRequestSpec): { headers: string; bodies: string } {
  const n = ++seq
  const headers = path.join(tmpDir(), `wrk-headers-${n}.txt`)
  const bodies = path.join(tmpDir(), `wrk-bodies-${n}.txt`)
  writeFileSync(headers, Object.entries(spec.headers ?? {}).map(([k, v]) => `${k}: ${v}\n`).join(''))
  for (const b of spec.bodies ?? []) if (b.includes('\n')) throw new Error('a request body for wrk cannot contain a line break')
  writeFileSync(bodies, (spec.bodies ?? []).map((b) => `${b}\n`).join(''))
  return { headers, bodies }
}

export async function runWrk(
  spec: HttpRequestSpec,
  o: {
    connections: number
    durationS: number
    serverPid: number
    delayMs?: number
    timeoutS?: number
    /** Lua script (default bench/wrk/request.lua) and more environment for it. */
    script?: string
    env?: Readonly<Record<string, string>>
  },
): Promise<WrkResult> {
  const files = writeRequestFiles(spec)
  const argv = pinned(CLIENT_CORE, [
    'wrk',
    '-t1',
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    `--timeout`,
    `${o.timeoutS ?? 5}s`,
    '-s',
    o.script ?? path.join(BENCH_DIR, 'wrk/request.lua'),
    spec.url,
  ])
  const env = {
    ...process.env,
    BENCH_METHOD: spec.method,
    BENCH_HEADERS: files.headers,
    BENCH_BODIES: files.bodies,
    BENCH_DELAY_MS: o.delayMs !== undefined ? String(o.delayMs) : '',
    ...o.env,
  }
  const cores0 = coreTimes()
  const cpu0 = cpuSeconds(o.serverPid)
  const t0 = performance.now()
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    child.stdout.on('data', (b: Buffer) => (text += b.toString('utf8')))
    child.stderr.on('data', (b: Buffer) => (text += b.toString('utf8')))
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}:\n${text}`))))
  })
  const wall = (performance.now() - t0) / 1000
  const busy = coreBusy(cores0, coreTimes())
  const serverCpu = (100 * (cpuSeconds(o.serverPid) - cpu0)) / wall
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '))
  if (line === undefined) throw new Error(`wrk printed no result:\n${out}`)
  const j = JSON.parse(line.slice('BENCH_JSON '.length)) as {
    requests: number
    durationUs: number
    errors: WrkResult['errors']
    latencyUs: WrkResult['latencyUs']
  }
  const durationS = j.durationUs / 1e6
  return {
    requests: j.requests,
    durationS,
    rps: j.requests / durationS,
    errors: j.errors,
    latencyUs: j.latencyUs,
    coreBusy: busy,
    serverCpu,
  }
}
