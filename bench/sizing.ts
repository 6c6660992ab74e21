// `npm run bench:sizing`: the figures the chart's resources and its sizing table come from. The
// production build (dist/src/main.js with the shipped Node options, pinned to the server core as in
// `npm run bench`), its VmRSS and VmHWM (peak resident memory, from /proc/<pid>/status; the peak is
// reset before each measurement by writing 5 to /proc/<pid>/clear_refs) and its CPU time (utime +
// stime from /proc/<pid>/stat) in % of one core:
//   1. connections: idle, after a 3 s GET warm-up, then 1,000 and 10,000 keep-alive connections held
//      by bench/conn-holder.ts (one request every ~4 s each, as memory.ts); each level (and 2, 3) on
//      a fresh gateway warmed alike, so that no level fits in the heap an earlier one grew;
//   2. SSE: 1,000 and 5,000 streams, each subscribed to its own channel (conn-holder.ts sse);
//   3. the inflight budget: concurrent SETs of a 9 MiB value, as many as fit in the default
//      limits.inflightBytes (256 MiB), for 4 s: the peak a burst of large bodies reaches within it;
//   4. instances: 10 / 1,000 / 10,000 static instances (generated config), one fresh gateway each,
//      (a) "shared": all on the one redis-server endpoint (one pooled endpoint: the tables only);
//      (b) "own": each on an endpoint of its own, so the gateway holds one connection, health checks
//          (ROLE + INFO replication every 2 s), command table, state and metrics per instance. The
//          endpoints are addresses 127.77.x.y:<port> on loopback, each a listening socket of a
//          forwarder process (bench/lib/forwarder.ts; 2,500 endpoints per process) that pipes
//          every accepted connection to the one real redis-server: every endpoint is a real Redis,
//          reachable on loopback only, that the gateway cannot tell from a separate server.
//      Waits for /readyz, then until every endpoint is up (redis_gateway_endpoint_up) and the
//      redis-server has counted three ROLE calls per endpoint (three rounds of health checks), then
//      samples RSS and CPU over a 10 s window (idle but for the health checks);
//   5. a short soak: the peak GET rate at 50 connections, then --soak-minutes (2) at half of it
//      (SET and GET in turn, calibrated as bench/soak.ts), RSS every 5 s, VmHWM and CPU over the soak.
// Prints the table, the per-1,000 figures and the recommended requests and limits; the JSON goes to
// bench/results/sizing-<date>.json. 7-9 minutes on 2 cores (10,000 own endpoints take 1.5-4 of them).
// See bench/README.md "Sizing".
//
// Options: --only conns,sse,budget,shared,own,soak  --connections 1000,10000  --streams 1000,5000
//          --sizes 10,1000,10000  --soak-minutes 2  --up-timeout S (240: endpoints up)
//          --shipped-timeouts (own endpoints with the default 1 s timeouts)  --config 'yaml line'
//          (more config for the instance gateways, repeatable)  --json FILE

import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { endpointHost, startForwarders } from './lib/forwarder.js'

await main()

// ---------------------------------------------------------------------------------------------
// The benchmark.

async function main(): Promise<void> {
  const procs = await import('./lib/procs.js')
  const { BENCH_DIR, CLIENT_CORE, INSTANCE, ROOT, SERVER_CORE, SHIPPED_NODE_ARGS, TOKEN, cpuSeconds, lineReader, loadAverage, machine, pinned, rssKiB, sleep, start, startGateway, startRedis, tmpDir, versionOf, waitForPort } = procs
  const { GW_HEADERS, SCENARIOS, SMALL, seed } = await import('./lib/scenarios.js')
  const { runWrk } = await import('./lib/wrk.js')
  const { fmtInt, median, table } = await import('./lib/stats.js')
  const { freePort } = await import('../test/helpers/ports.js')
  const { rawRequest } = await import('../test/helpers/raw-http.js')
  const { DEFAULTS } = await import('../src/config/schema.js')
  const { parseSize } = await import('../src/config/duration.js')
  type Proc = import('./lib/procs.js').Proc
  type GatewayServer = import('./lib/procs.js').GatewayServer
  type HttpRequestSpec = import('./lib/wrk.js').HttpRequestSpec

  const { values } = parseArgs({
    options: {
      only: { type: 'string', default: 'conns,sse,budget,shared,own,soak' },
      connections: { type: 'string', default: '1000,10000' },
      streams: { type: 'string', default: '1000,5000' },
      sizes: { type: 'string', default: '10,1000,10000' },
      'soak-minutes': { type: 'string', default: '2' },
      'up-timeout': { type: 'string', default: '240' },
      'shipped-timeouts': { type: 'boolean', default: false },
      config: { type: 'string', multiple: true, default: [] },
      json: { type: 'string' },
    },
  })
  const only = new Set(values.only.split(','))
  const list = (s: string): number[] => s.split(',').map(Number).filter((n) => n > 0)
  const connCounts = list(values.connections)
  const streamCounts = list(values.streams)
  const sizes = list(values.sizes)
  const soakMinutes = Number(values['soak-minutes'])
  const MiB = (k: number): number => k / 1024
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'N/A')

  const status = (pid: number, field: string): number => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : NaN
  }
  const hwmKiB = (pid: number): number => status(pid, 'VmHWM')
  let peakResets = true
  /** Resets VmHWM to the current RSS (Linux >= 4.0, our own child). */
  const resetPeak = (pid: number): void => {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5')
    } catch {
      peakResets = false
    }
  }
  /** Samples RSS every stepMs for ms and the CPU used meanwhile (% of one core). */
  const window = async (pid: number, ms: number, stepMs: number): Promise<{ rss: number[]; cpuPct: number }> => {
    const c0 = cpuSeconds(pid)
    const t0 = performance.now()
    const rss: number[] = []
    while (performance.now() - t0 < ms) {
      await sleep(stepMs)
      rss.push(rssKiB(pid))
    }
    return { rss, cpuPct: (100 * (cpuSeconds(pid) - c0)) / ((performance.now() - t0) / 1000) }
  }

  interface Row {
    phase: string
    what: string
    count: number
    /** RSS at the measurement (the highest sample of the window), and the baseline it adds to. */
    rssKiB: number
    baseKiB: number
    /** Peak RSS of the measurement (since the reset before it; instances: since start). */
    hwmKiB: number
    cpuPct: number | null
    note: string
  }
  const rows: Row[] = []
  const extra: Record<string, unknown> = {}
  const started = new Date()
  const load0 = loadAverage()
  const log = (s: string): void => console.log(s)

  const redis = await startRedis()
  await seed(redis.port)
  const rc = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: false })
  /** Calls of a command the redis-server has counted (INFO commandstats), e.g. `role`, `command|info`. */
  const calls = async (cmd: string): Promise<number> => {
    const info = await rc.info('commandstats')
    const m = new RegExp(`cmdstat_${cmd.replace('|', '\\|')}:calls=(\\d+)`).exec(info)
    return m ? Number(m[1]) : 0
  }
  const roleCalls = (): Promise<number> => calls('role')

  // -------------------------------------------------------------------------------------------
  // 1-3. Connections, SSE streams and the inflight budget, on one gateway (one static instance).

  async function hold(g: GatewayServer, mode: 'keepalive' | 'sse', count: number): Promise<{ established: number; failed: number; firstError: string; openAtEnd: number; before: number; rss: number; hwm: number; cpuPct: number; openingMs: number }> {
    const pid = g.proc.pid
    const before = rssKiB(pid)
    resetPeak(pid)
    const argv = pinned(CLIENT_CORE, [process.execPath, '--import', 'tsx', path.join(BENCH_DIR, 'conn-holder.ts'), mode, String(g.port), String(count), TOKEN, INSTANCE])
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
    const exited = new Promise<void>((r) => child.once('exit', () => r()))
    const nextLine = lineReader(child, 'conn-holder')
    const r = JSON.parse((await nextLine()).slice('READY '.length)) as { ready: number; failed: number; firstError: string; openingMs: number }
    await sleep(1000)
    // 4 s: every keep-alive connection sends its request (every ~3.8 s) once in the window.
    const w = await window(pid, 4000, 500)
    child.stdin.write('count\n')
    const openAtEnd = Number((await nextLine()).split(' ')[1])
    const hwm = hwmKiB(pid)
    child.stdin.end()
    await exited
    return { established: r.ready, failed: r.failed, firstError: r.firstError, openingMs: r.openingMs, openAtEnd, before, rss: Math.max(...w.rss), hwm, cpuPct: w.cpuPct }
  }

  if (only.has('conns') || only.has('sse') || only.has('budget')) {
    log('\nconnections, SSE streams and the inflight budget (one static instance; a fresh gateway for each, warmed alike)')
    const getReq = SCENARIOS.find((s) => s.id === 'get-c50')!.gateway
    if (getReq === 'sdk') throw new Error('unreachable')
    // A fresh gateway, warmed as memory.ts does: a 3 s GET load at 50 connections (the JIT, and the
    // young generation grown to what any load makes it), then 6 s for wrk's connections to close.
    // Each measurement on its own gateway: after one, V8 keeps the heap it grew, and the next
    // would fit in it and look cheaper than it is.
    let first = true
    const warmGateway = async (): Promise<GatewayServer> => {
      const g = await startGateway(redis.port)
      const pid = g.proc.pid
      await sleep(2000)
      if (first) {
        const idle = await window(pid, 5000, 500)
        const idleRss = Math.max(...idle.rss)
        rows.push({ phase: 'idle', what: 'after start, no requests', count: 0, rssKiB: idleRss, baseKiB: idleRss, hwmKiB: hwmKiB(pid), cpuPct: idle.cpuPct, note: '' })
        log(`  idle: RSS ${f1(MiB(idleRss))} MiB, CPU ${f1(idle.cpuPct)} %`)
      }
      resetPeak(pid)
      const warm = await runWrk(getReq(g.base), { connections: 50, durationS: 3, serverPid: pid })
      const warmHwm = hwmKiB(pid)
      await sleep(6000)
      if (first) {
        const warmRss = rssKiB(pid)
        rows.push({ phase: 'idle', what: `after a 3 s GET load (${fmtInt(warm.rps)} req/s, 50 conn)`, count: 0, rssKiB: warmRss, baseKiB: NaN, hwmKiB: warmHwm, cpuPct: warm.serverCpu, note: 'CPU and peak: during the load' })
        log(`  after a 3 s GET load at ${fmtInt(warm.rps)} req/s: RSS ${f1(MiB(warmRss))} MiB (peak during it ${f1(MiB(warmHwm))} MiB, CPU ${f1(warm.serverCpu)} %)`)
      }
      first = false
      return g
    }
    const levels: ['keepalive' | 'sse', number][] = [
      ...(only.has('conns') ? connCounts.map((n): ['keepalive', number] => ['keepalive', n]) : []),
      ...(only.has('sse') ? streamCounts.map((n): ['sse', number] => ['sse', n]) : []),
    ]
    for (const [mode, n] of levels) {
      const g = await warmGateway()
      const h = await hold(g, mode, n)
      const what = mode === 'sse' ? `${fmtInt(n)} SSE streams, one channel each` : `${fmtInt(n)} keep-alive connections (a request every ~4 s each)`
      rows.push({ phase: mode === 'sse' ? 'sse' : 'connections', what, count: h.established, rssKiB: h.rss, baseKiB: h.before, hwmKiB: h.hwm, cpuPct: h.cpuPct, note: `${fmtInt(h.openAtEnd)} open at the end${h.failed ? `, ${h.failed} failed: ${h.firstError}` : ''}` })
      log(`  ${fmtInt(h.established)}/${what} (${h.openingMs} ms to open): RSS ${f1(MiB(h.rss))} MiB (+${f1(MiB(h.rss - h.before))} over ${f1(MiB(h.before))}), peak ${f1(MiB(h.hwm))}, CPU ${f1(h.cpuPct)} %`)
      await g.proc.stop()
    }
    if (only.has('budget')) {
      const g = await warmGateway()
      const pid = g.proc.pid
      const budget = parseSize(DEFAULTS.limits.inflightBytes)
      const valueBytes = 9 * 1024 * 1024
      const k = Math.floor(budget / valueBytes)
      const body = Buffer.from(JSON.stringify(['SET', 'bench:sizing:body', 'b'.repeat(valueBytes)]))
      const req = Buffer.concat([
        Buffer.from(`POST /v1/instances/${INSTANCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`),
        body,
      ])
      const before = rssKiB(pid)
      resetPeak(pid)
      const tally = new Map<string, number>()
      const until = Date.now() + 4000
      let rounds = 0
      const c0 = cpuSeconds(pid)
      const t0 = performance.now()
      do {
        rounds++
        await Promise.all(
          Array.from({ length: k }, () =>
            rawRequest(g.port, req, { timeoutMs: 60_000 }).then(
              (r) => tally.set(String(r.status), (tally.get(String(r.status)) ?? 0) + 1),
              () => tally.set('no reply', (tally.get('no reply') ?? 0) + 1),
            ),
          ),
        )
      } while (Date.now() < until)
      const cpuPct = (100 * (cpuSeconds(pid) - c0)) / ((performance.now() - t0) / 1000)
      const hwm = hwmKiB(pid)
      const answers = [...tally].map(([st, n]) => `${n} x ${st}`).join(', ')
      rows.push({ phase: 'budget', what: `${k} concurrent SETs of a 9 MiB value (${fmtInt((k * valueBytes) / 2 ** 20)} MiB of ${DEFAULTS.limits.inflightBytes} inflightBytes), ${rounds} rounds`, count: k, rssKiB: rssKiB(pid), baseKiB: before, hwmKiB: hwm, cpuPct, note: `${answers}; RSS: after` })
      extra.budget = { budgetBytes: budget, concurrent: k, valueBytes, rounds, answers: Object.fromEntries(tally), beforeKiB: before, hwmKiB: hwm }
      log(`  inflight budget: ${k} x 9 MiB SET at once, ${rounds} rounds: peak ${f1(MiB(hwm))} MiB (from ${f1(MiB(before))}); ${answers}`)
      await g.proc.stop()
    }
  }

  // -------------------------------------------------------------------------------------------
  // 4. Instances: a generated config, one fresh gateway per size.

  async function startInstancesGateway(names: string[], endpointOf: (i: number) => string, more: string[]): Promise<{ proc: Proc; port: number; opsPort: number; readyMs: number }> {
    const port = await freePort()
    const opsPort = await freePort()
    const conf = path.join(tmpDir(), `sizing-gateway-${port}.yaml`)
    writeFileSync(
      conf,
      [
        `listen: { data: "127.0.0.1:${port}", ops: "127.0.0.1:${opsPort}" }`,
        'discovery:',
        '  static:',
        '    instances:',
        ...names.map((n, i) => `      - { name: ${n}, endpoints: ["${endpointOf(i)}"] }`),
        'auth:',
        '  tokens:',
        `    - { name: bench, token: "${TOKEN}", access: write, targets: ["*"] }`,
        'log: { level: warn }',
        'metrics: { enabled: true }',
        ...more,
        ...values.config,
        '',
      ].join('\n'),
    )
    const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_CONFIG: conf, NODE_ENV: 'production' }
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT
    delete env.OTEL_TRACES_EXPORTER
    delete env.GATEWAY_METRICS_ENABLED
    delete env.GATEWAY_LOG_LEVEL
    const t0 = performance.now()
    const mainJs = process.env.BENCH_GATEWAY_MAIN ?? path.join(ROOT, 'dist/src/main.js')
    const proc = start('gateway', pinned(SERVER_CORE, [process.execPath, ...SHIPPED_NODE_ARGS, mainJs]), { env })
    await waitForPort(proc, port, 120_000)
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${opsPort}/readyz`).then((r) => r.ok, () => false)
      if (ok) break
      if (performance.now() - t0 > 120_000 || proc.child.exitCode !== null) throw new Error(`gateway not ready:\n${proc.log()}`)
      await sleep(100)
    }
    return { proc, port, opsPort, readyMs: performance.now() - t0 }
  }

  const metricsText = async (opsPort: number): Promise<string> => (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text()
  const endpointsUp = async (opsPort: number): Promise<number> => ((await metricsText(opsPort)).match(/^redis_gateway_endpoint_up\{[^}]*\} 1$/gm) ?? []).length
  /** V8 heap in use and memory outside it (Buffers), MiB, from the gateway's own metrics. */
  const heapMiB = (text: string): { used: number; external: number } => {
    const v = (name: string): number => Number(new RegExp(`^nodejs_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20
    return { used: v('heap_size_used_bytes'), external: v('external_memory_bytes') }
  }

  async function instancesRun(kind: 'shared' | 'own', n: number): Promise<void> {
    const names = Array.from({ length: n }, (_, i) => `inst-${String(i).padStart(5, '0')}`)
    // Own endpoints: forwarder processes on 127.77.x.y (bench/lib/forwarder.ts).
    const fwd = kind === 'own' ? await startForwarders(redis.port, n) : null
    const forwarders = fwd?.procs ?? []
    const fwdPort = fwd?.port ?? 0
    const endpointOf = kind === 'shared' ? (): string => `redis://127.0.0.1:${redis.port}` : (i: number): string => `redis://${endpointHost(i)}:${fwdPort}`
    const endpoints = kind === 'shared' ? 1 : n
    const learned0 = await calls('command|info')
    const t0 = performance.now()
    // Own endpoints: every one of them is the same redis-server (and the forwarders) on the client
    // core, so the start-up's per-endpoint work (ready check, INFO cluster, COMMAND INFO's 90 KB,
    // the ACL users) queues there for all endpoints at once; with the shipped 1 s timeouts 10,000
    // endpoints reset each other's connections without end. Longer timeouts let them come up; the
    // steady state measured after that is the same (--shipped-timeouts: the defaults).
    const relaxed = kind === 'own' && !values['shipped-timeouts'] ? ['redis: { connectTimeout: 30s, commandTimeout: 30s }', 'health: { timeout: 10s }'] : []
    const g = await startInstancesGateway(names, endpointOf, relaxed)
    const pid = g.proc.pid
    // Every instance's endpoint series reports up (a ready connection and a passed health check).
    let up = 0
    let peakDuringStart = 0
    const upTimeoutMs = Math.max(60_000, Number(values['up-timeout']) * 1000)
    for (;;) {
      if (g.proc.child.exitCode !== null || g.proc.child.signalCode !== null) {
        const what = kind === 'shared' ? `${fmtInt(n)} instances, all on one endpoint` : `${fmtInt(n)} instances, an endpoint each (forwarded)`
        const tail = g.proc.log().split('\n').slice(-3).join(' | ').slice(0, 400)
        rows.push({ phase: `instances (${kind})`, what, count: n, rssKiB: NaN, baseKiB: NaN, hwmKiB: peakDuringStart, cpuPct: null, note: `the gateway EXITED (${g.proc.child.exitCode ?? g.proc.child.signalCode}) after ${f1((performance.now() - t0) / 1000)} s with ${fmtInt(up)} up: ${tail}` })
        log(`  ${what}: the gateway exited after ${f1((performance.now() - t0) / 1000)} s, ${fmtInt(up)} up, peak RSS ${f1(MiB(peakDuringStart))} MiB: ${tail}`)
        for (const p of forwarders) await p.stop()
        return
      }
      peakDuringStart = Math.max(peakDuringStart, hwmKiB(pid))
      up = await endpointsUp(g.opsPort).catch(() => up)
      if (up >= n || performance.now() - t0 > upTimeoutMs) break
      if (up === 0 && performance.now() - t0 > 60_000) throw new Error(`no endpoint up after 60 s:\n${g.proc.log()}`)
      await sleep(1000)
    }
    const upMs = performance.now() - t0
    const startCpuS = cpuSeconds(pid)
    const learned = (await calls('command|info')) - learned0
    // Three rounds of health checks after that: the redis-server counts the ROLE calls.
    const r0 = await roleCalls()
    const t1 = performance.now()
    while ((await roleCalls()) < r0 + 3 * endpoints && performance.now() - t1 < 60_000) await sleep(500)
    const roundsMs = performance.now() - t1
    await sleep(1000)
    const ra = await roleCalls()
    const w = await window(pid, 10_000, 1000)
    const checksPerS = ((await roleCalls()) - ra) / 10
    const hwm = hwmKiB(pid)
    const text = await metricsText(g.opsPort)
    const upAfter = (text.match(/^redis_gateway_endpoint_up\{[^}]*\} 1$/gm) ?? []).length
    const heap = heapMiB(text)
    const rss = median(w.rss)
    const what = kind === 'shared' ? `${fmtInt(n)} instances, all on one endpoint` : `${fmtInt(n)} instances, an endpoint each (forwarded)`
    rows.push({
      phase: `instances (${kind})`,
      what,
      count: n,
      rssKiB: rss,
      baseKiB: NaN,
      hwmKiB: hwm,
      cpuPct: w.cpuPct,
      note: `ready ${f1(g.readyMs / 1000)} s, ${fmtInt(up)}/${fmtInt(n)} up at ${f1(upMs / 1000)} s (${fmtInt(upAfter)} after), ${fmtInt(learned)} COMMAND INFO (${f1(learned / endpoints)} per endpoint: reconnects); ${f1(startCpuS)} s CPU to start;${relaxed.length ? ' timeouts 30 s / health 10 s;' : ''} 3 check rounds in ${f1(roundsMs / 1000)} s; ${fmtInt(checksPerS)} ROLE/s; V8 heap used ${f1(heap.used)} MiB, external ${f1(heap.external)} MiB; peak: since start`,
    })
    log(`  ${what}: ready in ${f1(g.readyMs / 1000)} s, ${fmtInt(up)} up at ${f1(upMs / 1000)} s (${fmtInt(learned)} COMMAND INFO, ${f1(startCpuS)} s of gateway CPU), 3 health rounds in ${f1(roundsMs / 1000)} s; RSS ${f1(MiB(rss))} MiB (window ${f1(MiB(Math.min(...w.rss)))}-${f1(MiB(Math.max(...w.rss)))}), peak since start ${f1(MiB(hwm))} MiB, CPU ${f1(w.cpuPct)} % (${fmtInt(checksPerS)} ROLE/s); V8 heap used ${f1(heap.used)} MiB, external ${f1(heap.external)} MiB`)
    await g.proc.stop()
    for (const p of forwarders) await p.stop()
  }

  for (const kind of ['shared', 'own'] as const) {
    if (!only.has(kind)) continue
    log(`\ninstances, ${kind === 'shared' ? 'all on one endpoint (the routing table only)' : 'each on its own endpoint (127.77.x.y, forwarded to the redis-server)'}`)
    for (const n of sizes) await instancesRun(kind, n)
  }

  // -------------------------------------------------------------------------------------------
  // 5. A short soak at half the peak rate (as bench/soak.ts).

  if (only.has('soak')) {
    const g = await startGateway(redis.port)
    const pid = g.proc.pid
    const get = SCENARIOS.find((s) => s.id === 'get-c50')!
    if (get.gateway === 'sdk') throw new Error('unreachable')
    resetPeak(pid)
    await runWrk(get.gateway(g.base), { connections: 50, durationS: 2, serverPid: pid })
    const peak = await runWrk(get.gateway(g.base), { connections: 50, durationS: 5, serverPid: pid })
    const peakHwm = hwmKiB(pid)
    const target = peak.rps * 0.5
    const spec: HttpRequestSpec = {
      method: 'POST',
      url: g.base,
      headers: GW_HEADERS,
      bodies: [JSON.stringify(['set', 'bench:soak', SMALL]), JSON.stringify(['get', 'bench:soak'])],
    }
    let conns = 50
    const delayMs = Math.max(1, Math.round((conns * 1000) / target))
    for (let k = 0; k < 3; k++) {
      const r = await runWrk(spec, { connections: conns, durationS: 4, serverPid: pid, delayMs })
      conns = Math.min(1000, Math.max(1, Math.round(conns * (target / Math.max(1, r.rps)))))
    }
    log(`\nsoak: peak ${fmtInt(peak.rps)} req/s (GET, 50 conn; gateway CPU ${f1(peak.serverCpu)} %, peak RSS ${f1(MiB(peakHwm))} MiB); ${soakMinutes} min at ~${fmtInt(target)} req/s (SET/GET, ${conns} conn, ${delayMs} ms between requests)`)
    resetPeak(pid)
    const samples: number[] = []
    let done = false
    const load = runWrk(spec, { connections: conns, durationS: soakMinutes * 60, serverPid: pid, delayMs }).finally(() => (done = true))
    const t0 = performance.now()
    while (!done) {
      await sleep(5000)
      if (!done) samples.push(rssKiB(pid))
      if (samples.length % 6 === 0 && !done) log(`  t=${Math.round((performance.now() - t0) / 1000)} s RSS ${f1(MiB(samples[samples.length - 1]!))} MiB`)
    }
    const r = await load
    const hwm = hwmKiB(pid)
    const errors = r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout
    const steady = samples.slice(2) // after the first 10 s
    rows.push({
      phase: 'load',
      what: `peak GET rate, 50 conn, 7 s`,
      count: Math.round(peak.rps),
      rssKiB: NaN,
      baseKiB: NaN,
      hwmKiB: peakHwm,
      cpuPct: peak.serverCpu,
      note: `${fmtInt(peak.rps)} req/s; peak: warm-up and peak runs`,
    })
    rows.push({
      phase: 'soak',
      what: `${soakMinutes} min at half the peak: ${fmtInt(r.rps)} req/s (${conns} conn)`,
      count: Math.round(r.rps),
      rssKiB: median(steady),
      baseKiB: NaN,
      hwmKiB: hwm,
      cpuPct: r.serverCpu,
      note: `RSS median of ${steady.length} samples, ${f1(MiB(Math.min(...steady)))}-${f1(MiB(Math.max(...steady)))} MiB; p50 ${fmtInt(r.latencyUs.p50)} us, p99 ${fmtInt(r.latencyUs.p99)} us, ${errors} errors`,
    })
    extra.soak = { peakRps: peak.rps, peakCpuPct: peak.serverCpu, targetRps: target, achievedRps: r.rps, connections: conns, delayMs, minutes: soakMinutes, samplesKiB: samples, hwmKiB: hwm, cpuPct: r.serverCpu, p50Us: r.latencyUs.p50, p99Us: r.latencyUs.p99, errors }
    log(`  achieved ${fmtInt(r.rps)} req/s, p50 ${fmtInt(r.latencyUs.p50)} us, p99 ${fmtInt(r.latencyUs.p99)} us, ${errors} errors; gateway CPU ${f1(r.serverCpu)} %; RSS ${f1(MiB(Math.min(...steady)))}-${f1(MiB(Math.max(...steady)))} MiB (median ${f1(MiB(median(steady)))}), peak ${f1(MiB(hwm))} MiB`)
    await g.proc.stop()
  }

  rc.disconnect()
  await redis.proc.stop()

  // -------------------------------------------------------------------------------------------
  // The table, the per-1,000 figures and the recommendation.

  const cell = (k: number): string => (Number.isFinite(k) ? f1(MiB(k)) : '')
  console.log(`\nsizing: ${started.toISOString()}, load average ${load0.map((x) => x.toFixed(2)).join(' / ')} at the start, ${loadAverage().map((x) => x.toFixed(2)).join(' / ')} at the end${peakResets ? '' : ' (VmHWM could not be reset: peaks are since start)'}\n`)
  console.log(
    table([
      ['phase', 'what', 'RSS MiB', '+ MiB', 'peak MiB', 'CPU %', 'note'],
      ...rows.map((r) => [r.phase, r.what, cell(r.rssKiB), Number.isFinite(r.baseKiB) && r.phase !== 'idle' ? `+${f1(MiB(r.rssKiB - r.baseKiB))}` : '', cell(r.hwmKiB), r.cpuPct === null ? '' : f1(r.cpuPct), r.note]),
    ]),
  )

  const find = (phase: string, count?: number): Row | undefined => {
    const c = rows.filter((r) => r.phase === phase && (count === undefined || r.count >= count * 0.99))
    return c.sort((a, b) => b.count - a.count)[0]
  }
  const perK = (r: Row | undefined): number => (r && r.count > 0 ? MiB(r.rssKiB - r.baseKiB) / (r.count / 1000) : NaN)
  const instPerK = (kind: string): { mib: number; cpu: number } => {
    const rs = rows.filter((r) => r.phase === `instances (${kind})`).sort((a, b) => a.count - b.count)
    if (rs.length < 2) return { mib: NaN, cpu: NaN }
    const lo = rs[0]!
    const hi = rs[rs.length - 1]!
    const k = (hi.count - lo.count) / 1000
    return { mib: MiB(hi.rssKiB - lo.rssKiB) / k, cpu: ((hi.cpuPct ?? NaN) - (lo.cpuPct ?? NaN)) / k }
  }
  const conn = find('connections')
  const sse = find('sse')
  const shared = instPerK('shared')
  const own = instPerK('own')
  const soak = rows.find((r) => r.phase === 'soak')
  const per = {
    connectionsMiBPer1000: perK(conn),
    connectionsCpuPctPer1000: conn ? ((conn.cpuPct ?? NaN) - (rows.find((r) => r.phase === 'idle')?.cpuPct ?? 0)) / (conn.count / 1000) : NaN,
    sseMiBPer1000: perK(sse),
    instancesSharedMiBPer1000: shared.mib,
    instancesOwnMiBPer1000: own.mib,
    instancesOwnCpuPctPer1000: own.cpu,
    cpuPctPer1000Rps: soak ? (soak.cpuPct ?? NaN) / (soak.count / 1000) : NaN,
  }
  console.log('\nper 1,000:')
  console.log(`  keep-alive connections  ${f1(per.connectionsMiBPer1000)} MiB  (${conn ? fmtInt(conn.count) : '-'} held; their requests every ~4 s: +${f1(per.connectionsCpuPctPer1000)} % CPU per 1,000)`)
  console.log(`  SSE streams             ${f1(per.sseMiBPer1000)} MiB  (${sse ? fmtInt(sse.count) : '-'} held)`)
  console.log(`  instances, shared endpoint  ${f1(per.instancesSharedMiBPer1000)} MiB`)
  console.log(`  instances, own endpoint     ${f1(per.instancesOwnMiBPer1000)} MiB, ${f1(per.instancesOwnCpuPctPer1000)} % CPU idle (health checks)`)
  console.log(`  requests per second         ${f1(per.cpuPctPer1000Rps * 10)} millicores per 1,000 req/s (soak, SET/GET)`)

  // Requests: memory = typical steady use under moderate load (the soak's median RSS), rounded up
  // to 64 Mi; CPU = the soak's CPU, rounded up to 100m. Limit: the highest peak of the rows at the
  // chart's scale (load, soak, connections, streams, instances on shared endpoints), or the soak's
  // peak plus what 10,000 connections, 5,000 streams and 10,000 shared-endpoint instances add (the
  // table's largest such rows together), whichever is larger, plus 20 %, to the next usual size.
  // Then the same for a burst that fills the default inflight budget, which the gateway admits.
  const ceilTo = (x: number, step: number): number => Math.ceil(x / step) * step
  const SIZES = [512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192]
  const sizeFor = (mib: number): number => SIZES.find((x) => x >= mib) ?? ceilTo(mib, 1024)
  const atScale = rows.filter((r) => ['idle', 'load', 'soak', 'connections', 'sse', 'instances (shared)'].includes(r.phase))
  const peakAtScale = Math.max(...atScale.map((r) => MiB(r.hwmKiB)).filter(Number.isFinite))
  const soakPeak = soak ? MiB(soak.hwmKiB) : NaN
  const combined = soakPeak + 10 * (per.connectionsMiBPer1000 || 0) + 5 * (per.sseMiBPer1000 || 0) + 10 * (per.instancesSharedMiBPer1000 || 0)
  const limitAtScale = sizeFor(Math.max(peakAtScale, Number.isFinite(combined) ? combined : 0) * 1.2)
  const budget = rows.find((r) => r.phase === 'budget')
  const budgetPeak = budget ? MiB(budget.hwmKiB) : NaN
  const limitBudget = Number.isFinite(budgetPeak) ? sizeFor(budgetPeak * 1.1) : NaN
  // RSS per byte admitted by the budget, and the budget that fits under limitAtScale beside the soak's peak.
  const perInflightByte = budget ? (budget.hwmKiB - budget.baseKiB) / 1024 / ((budget.count * 9 * 2 ** 20) / 2 ** 20) : NaN
  const budgetFits = Number.isFinite(perInflightByte) ? Math.floor((limitAtScale / 1.1 - (Number.isFinite(soakPeak) ? soakPeak : budget!.baseKiB / 1024)) / perInflightByte / 16) * 16 : NaN
  const ownRows = rows.filter((r) => r.phase === 'instances (own)' && Number.isFinite(r.rssKiB))
  const rec = {
    requestMemoryMi: soak ? ceilTo(MiB(soak.rssKiB), 64) : NaN,
    requestCpuMillicores: soak ? ceilTo((soak.cpuPct ?? 0) * 10, 100) : NaN,
    limitMemoryAtScaleMi: limitAtScale,
    limitMemoryWithBudgetMi: Number.isFinite(limitBudget) ? Math.max(limitAtScale, limitBudget) : limitAtScale,
    peakAtScaleMiB: peakAtScale,
    combinedMiB: combined,
    budgetPeakMiB: budgetPeak,
    rssMiBPerInflightMiB: perInflightByte,
    inflightBytesForLimitAtScaleMiB: budgetFits,
  }
  console.log('\nrecommended resources:')
  console.log(`  requests: memory ${rec.requestMemoryMi}Mi (the soak's median RSS ${soak ? f1(MiB(soak.rssKiB)) : '-'} MiB, rounded up), cpu ${rec.requestCpuMillicores}m (the soak's ${soak ? f1(soak.cpuPct ?? NaN) : '-'} % of a core at ${soak ? fmtInt(soak.count) : '-'} req/s)`)
  console.log(`  limits:   memory ${rec.limitMemoryAtScaleMi}Mi for load, connections, streams and shared-endpoint instances (highest peak ${f1(peakAtScale)} MiB; the soak's peak + 10,000 connections + 5,000 streams + 10,000 shared-endpoint instances ${f1(combined)} MiB; + 20 %)`)
  if (budget) {
    console.log(`            memory ${rec.limitMemoryWithBudgetMi}Mi to also survive a burst that fills limits.inflightBytes (${DEFAULTS.limits.inflightBytes}): it peaked at ${f1(budgetPeak)} MiB (+10 %);`)
    console.log(`            RSS grew ${f1(perInflightByte)} MiB per MiB admitted, so under ${rec.limitMemoryAtScaleMi}Mi limits.inflightBytes should be at most ~${budgetFits}MiB`)
  }
  if (ownRows.length > 0) {
    const hi = ownRows.sort((x, y) => y.count - x.count)[0]!
    console.log(`  instances on endpoints of their own: ${f1(per.instancesOwnMiBPer1000)} MiB and ${f1(per.instancesOwnCpuPctPer1000 * 10)} millicores per 1,000 endpoints; ${fmtInt(hi.count)} of them: ${f1(MiB(hi.rssKiB))} MiB (peak ${f1(MiB(hi.hwmKiB))}), far above the defaults: size by the table`)
  }

  const file = values.json ?? path.join(BENCH_DIR, 'results', `sizing-${started.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(
    file,
    JSON.stringify({ started: started.toISOString(), machine: { ...machine(), loadAverageStart: load0, loadAverageEnd: loadAverage() }, redis: versionOf('redis-server', ['--version']), peakResets, rows, per, recommended: rec, ...extra }, null, 2),
  )
  console.log(`\nresults: ${path.relative(process.cwd(), file)}`)
  process.exit(0)
}
