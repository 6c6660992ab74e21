// `npm run bench:memory` (also part of `npm run bench`): the gateway's resident memory (VmRSS from
// /proc/<pid>/status) idle, with 10,000 keep-alive client connections (idle but for one request
// every 4 s each, or the gateway would close them after Node's 5 s keepAliveTimeout), and with 1,000 open
// SSE subscriptions; and that the subscriptions are gone from Redis once their clients leave.
// The connections are held by bench/conn-holder.ts in its own process on the client core; the
// open-files limit is raised for both processes (see lib/procs.ts `pinned`).
// Options (CLI): --connections N (10000)  --streams N (1000)

import { spawn } from 'node:child_process'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { Redis } from 'ioredis'
import { BENCH_DIR, CLIENT_CORE, INSTANCE, ROOT, TOKEN, lineReader, pinned, rssKiB, sleep, startGateway, startRedis, type GatewayServer } from './lib/procs.js'
import { SCENARIOS, seed } from './lib/scenarios.js'
import { runWrk } from './lib/wrk.js'

export interface HoldResult {
  /** Connections or streams asked for, and how many were established. */
  asked: number
  established: number
  failed: number
  firstError: string
  openingMs: number
  /** Still open when the RSS was sampled. */
  openAtSample: number
  rssBeforeKiB: number
  rssWithKiB: number
  /** (rssWith - rssBefore) / established. */
  perConnectionKiB: number
  rssAfterCloseKiB: number
}

export interface MemoryResult {
  rssIdleKiB: number
  rssAfterWarmupKiB: number
  keepAlive: HoldResult
  sse: HoldResult & { redisChannelsWhileOpen: number; redisChannelsAfterClose: number }
}

async function hold(
  g: GatewayServer,
  mode: 'keepalive' | 'sse',
  count: number,
  during?: () => Promise<void>,
): Promise<HoldResult> {
  const rssBefore = rssKiB(g.proc.pid)
  const argv = pinned(CLIENT_CORE, [
    process.execPath,
    '--import',
    'tsx',
    path.join(BENCH_DIR, 'conn-holder.ts'),
    mode,
    String(g.port),
    String(count),
    TOKEN,
    INSTANCE,
  ])
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
  const nextLine = lineReader(child, 'conn-holder')
  const readyLine = await nextLine()
  const r = JSON.parse(readyLine.slice('READY '.length)) as { ready: number; failed: number; firstError: string; openingMs: number }
  // Let the gateway settle (GC, buffers), then take the highest of a few samples.
  let rssWith = 0
  for (let k = 0; k < 5; k++) {
    await sleep(200)
    rssWith = Math.max(rssWith, rssKiB(g.proc.pid))
  }
  child.stdin.write('count\n')
  const openLine = await nextLine()
  const openAtSample = Number(openLine.split(' ')[1])
  if (during) await during()
  child.stdin.end()
  await new Promise((r2) => child.once('exit', r2))
  await sleep(3000)
  return {
    asked: count,
    established: r.ready,
    failed: r.failed,
    firstError: r.firstError,
    openingMs: r.openingMs,
    openAtSample,
    rssBeforeKiB: rssBefore,
    rssWithKiB: rssWith,
    perConnectionKiB: r.ready > 0 ? (rssWith - rssBefore) / r.ready : NaN,
    rssAfterCloseKiB: rssKiB(g.proc.pid),
  }
}

export async function runMemory(o: { connections?: number; streams?: number } = {}): Promise<MemoryResult> {
  const connections = o.connections ?? 10_000
  const streams = o.streams ?? 1_000
  console.log(`\nmemory: gateway RSS with ${connections} keep-alive connections (one request every 4 s each) and ${streams} SSE streams`)
  const redis = await startRedis()
  await seed(redis.port)
  const g = await startGateway(redis.port)
  await sleep(1000)
  const rssIdle = rssKiB(g.proc.pid)
  const get = SCENARIOS.find((s) => s.id === 'get-c50')!
  if (get.gateway === 'sdk') throw new Error('unreachable')
  await runWrk(get.gateway(g.base), { connections: 50, durationS: 3, serverPid: g.proc.pid })
  await sleep(6000) // wrk's connections time out (keep-alive 5 s) and close
  const rssWarm = rssKiB(g.proc.pid)
  const keepAlive = await hold(g, 'keepalive', connections)
  const r = new Redis({ port: redis.port, host: '127.0.0.1' })
  let whileOpen = -1
  const sse = await hold(g, 'sse', streams, async () => {
    whileOpen = ((await r.pubsub('CHANNELS', 'bench-sse-*')) as string[]).length
  })
  const afterClose = ((await r.pubsub('CHANNELS', 'bench-sse-*')) as string[]).length
  r.disconnect()
  await g.proc.stop()
  await redis.proc.stop()
  const mib = (k: number): string => `${(k / 1024).toFixed(1)} MiB`
  console.log(`  idle ${mib(rssIdle)}; after a 3 s GET load ${mib(rssWarm)}`)
  console.log(
    `  ${keepAlive.established}/${connections} keep-alive connections (opened in ${keepAlive.openingMs} ms, ${keepAlive.openAtSample} open at sampling): ${mib(keepAlive.rssWithKiB)} (+${mib(keepAlive.rssWithKiB - keepAlive.rssBeforeKiB)}, ${keepAlive.perConnectionKiB.toFixed(1)} KiB each); after they closed ${mib(keepAlive.rssAfterCloseKiB)}${keepAlive.failed ? `; ${keepAlive.failed} failed: ${keepAlive.firstError}` : ''}`,
  )
  console.log(
    `  ${sse.established}/${streams} SSE streams (opened in ${sse.openingMs} ms): ${mib(sse.rssWithKiB)} (+${mib(sse.rssWithKiB - sse.rssBeforeKiB)}, ${sse.perConnectionKiB.toFixed(1)} KiB each); after they closed ${mib(sse.rssAfterCloseKiB)}; Redis channels subscribed while open ${whileOpen}, after close ${afterClose}${sse.failed ? `; ${sse.failed} failed: ${sse.firstError}` : ''}`,
  )
  return {
    rssIdleKiB: rssIdle,
    rssAfterWarmupKiB: rssWarm,
    keepAlive,
    sse: { ...sse, redisChannelsWhileOpen: whileOpen, redisChannelsAfterClose: afterClose },
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: { connections: { type: 'string', default: '10000' }, streams: { type: 'string', default: '1000' }, json: { type: 'boolean', default: false } },
  })
  const r = await runMemory({ connections: Number(values.connections), streams: Number(values.streams) })
  if (values.json) process.stdout.write(`BENCH_JSON ${JSON.stringify(r)}\n`)
  process.exit(0)
}
