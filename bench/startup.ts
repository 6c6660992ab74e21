// `npm run bench:startup`: the cold start and the idle cost of a gateway with many static instances,
// each on an endpoint of its own (bench/README.md "Start-up and health checks at scale").
//
// The production build (dist/src/main.js, or BENCH_GATEWAY_MAIN, with the shipped Node options,
// pinned to the server core, log level info as shipped, metrics on) gets a generated config with
// --instances (5,000) static instances, instance i on endpoint 127.77.x.y:<port> (one loopback
// address each, as bench/sizing.ts). The endpoints are listening sockets of helper processes (this
// file, `endpoints` mode; 2,500 per process, on the client core) that speak RESP and answer every
// command with the reply one real redis-server gave to the same command: the first time a command
// arrives (same bytes) the helper asks the redis-server, then replays its reply to every endpoint.
// So the gateway gets exactly what a fleet of identical Redis servers (same version, same command
// table) would send it, COMMAND INFO's ~90 KB included, while the servers' own work costs nothing:
// the figures are the gateway's. (A fleet of real servers would also answer each endpoint's
// start-up commands in parallel; sizing.ts's forwarders to one redis-server queue them on one core.)
//
// Measured, from the gateway's spawn:
//   - time to /readyz 200 (polled every 10 ms), and a data request (PING to a random instance) right
//     after it, then one every 100 ms until every endpoint is up: latency and status;
//   - the longest event-loop turn during start-up: /healthz polled every 10 ms from here (the
//     slowest answer, after the ops listener is up), and the gateway's own
//     nodejs_eventloop_lag_max_seconds (since start: read once, at the end of start-up);
//   - time until every endpoint is up (the helpers see a ROLE on every endpoint's open connection;
//     checked against redis_gateway_endpoint_up at the end);
//   - log lines: in all, at warn and above, `connect timeout`, per message (top ones); reconnects:
//     connections the helpers accepted beyond one per endpoint, less those of token users (their
//     first command is AUTH: the probes open them); endpoint down transitions;
//   - then, idle: the gateway's CPU (utime + stime from /proc/<pid>/stat) over --idle-seconds (30),
//     ROLE and INFO per second the endpoints answered, the slowest /healthz (one a second) and the
//     event-loop lag max, RSS and VmHWM.
// Prints a summary; JSON to bench/results/startup-<date>.json.
//
// Options: --instances 5000  --idle-seconds 30  --up-timeout 180 (s)  --config 'yaml line'
//          (more config, repeatable)  --json FILE  --label TEXT (printed and stored with the figures)
//          --node-arg ARG (for the gateway's node, repeatable: e.g. --cpu-prof)  --log-file FILE (the
//          gateway's stdout and stderr, e.g. with --node-arg=--trace-gc)
//          --idle-poll-ms 1000 (/healthz while idle, ~0.14 ms of gateway CPU each: every 100 ms is
//          1.4 % of a core; 0: none)

import { spawn } from 'node:child_process'
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** Endpoint i's loopback address: 127.77.0.1 ... (250 per third octet), as bench/sizing.ts. */
function endpointHost(i: number): string {
  return `127.77.${Math.floor(i / 250)}.${1 + (i % 250)}`
}

// ---------------------------------------------------------------------------------------------
// Endpoints mode (a child process): `startup.ts endpoints <redisPort> <port> <first> <count>`.

/** End of the RESP value that starts at `pos`, or -1 when it is not all there yet. */
function respEnd(buf: Buffer, pos: number): number {
  if (pos >= buf.length) return -1
  const eol = buf.indexOf('\r\n', pos)
  if (eol < 0) return -1
  const type = String.fromCharCode(buf[pos]!)
  const n = Number(buf.toString('latin1', pos + 1, eol))
  switch (type) {
    case '$':
      if (n < 0) return eol + 2
      return eol + 2 + n + 2 <= buf.length ? eol + 2 + n + 2 : -1
    case '*': {
      let p = eol + 2
      for (let i = 0; i < n; i++) {
        p = respEnd(buf, p)
        if (p < 0) return -1
      }
      return p
    }
    default:
      return eol + 2
  }
}

interface Stats {
  accepted: number
  /** Connections by their first command: the gateway's own start with the ready check (INFO persistence), a token user's with AUTH. */
  firsts: Record<string, number>
  closed: number
  commands: Record<string, number>
  /** Endpoints whose open connection has answered a ROLE. */
  up: number
  fetched: number
}

async function endpoints(redisPort: number, port: number, first: number, count: number): Promise<void> {
  const stats: Stats = { accepted: 0, firsts: {}, closed: 0, commands: {}, up: 0, fetched: 0 }
  const cache = new Map<string, Buffer>()
  const waiting = new Map<string, ((b: Buffer) => void)[]>()
  const asked: string[] = []
  const upstream = net.connect({ port: redisPort, host: '127.0.0.1' })
  let upBuf: Buffer = Buffer.alloc(0)
  upstream.on('data', (b: Buffer) => {
    upBuf = upBuf.length === 0 ? b : Buffer.concat([upBuf, b])
    for (;;) {
      const end = respEnd(upBuf, 0)
      if (end < 0) break
      const reply = Buffer.from(upBuf.subarray(0, end))
      upBuf = upBuf.subarray(end)
      const key = asked.shift()!
      cache.set(key, reply)
      stats.fetched++
      for (const w of waiting.get(key) ?? []) w(reply)
      waiting.delete(key)
    }
  })
  const reply = (key: string, raw: Buffer, deliver: (b: Buffer) => void): void => {
    const hit = cache.get(key)
    if (hit !== undefined) return deliver(hit)
    const w = waiting.get(key)
    if (w !== undefined) return void w.push(deliver)
    waiting.set(key, [deliver])
    asked.push(key)
    upstream.write(raw)
  }
  const serve = (i: number): net.Server =>
    net.createServer((c) => {
      stats.accepted++
      let buf: Buffer = Buffer.alloc(0)
      let roleSeen = false
      let first = true
      // Replies in the order of the commands, whichever is fetched first.
      const slots: { b: Buffer | null }[] = []
      const flush = (): void => {
        while (slots.length > 0 && slots[0]!.b !== null) c.write(slots.shift()!.b!)
      }
      c.setNoDelay(true)
      c.on('data', (b: Buffer) => {
        buf = buf.length === 0 ? b : Buffer.concat([buf, b])
        for (;;) {
          const end = respEnd(buf, 0)
          if (end < 0) break
          const raw = Buffer.from(buf.subarray(0, end))
          buf = buf.subarray(end)
          // The command's name (and subcommand) for the counts: the first bulk strings.
          const text = raw.toString('latin1', 0, Math.min(raw.length, 200)).split('\r\n')
          const name = `${text[2] ?? '?'}${text[4] !== undefined && /^(INFO|COMMAND|ACL|CLIENT)$/i.test(text[2] ?? '') ? ` ${text[4]}` : ''}`.toUpperCase()
          stats.commands[name] = (stats.commands[name] ?? 0) + 1
          if (first) {
            first = false
            stats.firsts[name] = (stats.firsts[name] ?? 0) + 1
          }
          if (!roleSeen && name === 'ROLE') {
            roleSeen = true
            stats.up++
          }
          const slot: { b: Buffer | null } = { b: null }
          slots.push(slot)
          reply(raw.toString('latin1'), raw, (r) => {
            slot.b = r
            flush()
          })
        }
      })
      c.on('error', () => {})
      c.on('close', () => {
        stats.closed++
        if (roleSeen) stats.up--
      })
    }).listen({ host: endpointHost(i), port, backlog: 1024 })
  const servers: net.Server[] = []
  for (let i = first; i < first + count; i++) servers.push(serve(i))
  await Promise.all(servers.map((s) => (s.listening ? null : new Promise((r, j) => s.once('listening', r).once('error', j)))))
  process.stdout.write(`LISTENING ${count}\n`)
  let input = ''
  process.stdin.on('data', (b: Buffer) => {
    input += b.toString('utf8')
    let nl: number
    while ((nl = input.indexOf('\n')) >= 0) {
      input = input.slice(nl + 1)
      process.stdout.write(`STATS ${JSON.stringify(stats)}\n`)
    }
  })
  process.stdin.on('end', () => process.exit(0))
}

if (process.argv[2] === 'endpoints') {
  const [redisPort, port, first, count] = process.argv.slice(3).map(Number)
  await endpoints(redisPort!, port!, first!, count!)
} else {
  await main()
}

// ---------------------------------------------------------------------------------------------
// The benchmark.

async function main(): Promise<void> {
  const { BENCH_DIR, CLIENT_CORE, ROOT, SERVER_CORE, SHIPPED_NODE_ARGS, TOKEN, cpuSeconds, lineReader, loadAverage, machine, pinned, rssKiB, sleep, startRedis, tmpDir, versionOf } = await import('./lib/procs.js')
  const { fmtInt } = await import('./lib/stats.js')
  const { freePort } = await import('../test/helpers/ports.js')

  const { values } = parseArgs({
    options: {
      instances: { type: 'string', default: '5000' },
      'idle-seconds': { type: 'string', default: '30' },
      'up-timeout': { type: 'string', default: '180' },
      config: { type: 'string', multiple: true, default: [] },
      json: { type: 'string' },
      label: { type: 'string', default: '' },
      'node-arg': { type: 'string', multiple: true, default: [] },
      'log-file': { type: 'string' },
      'idle-poll-ms': { type: 'string', default: '1000' },
    },
  })
  const n = Number(values.instances)
  const idleS = Number(values['idle-seconds'])
  const upTimeoutMs = Number(values['up-timeout']) * 1000
  const SELF = fileURLToPath(import.meta.url)
  const PER_HELPER = 2500
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'N/A')
  const started = new Date()
  const load0 = loadAverage()
  const log = (s: string): void => console.log(s)

  const redis = await startRedis()

  // The endpoint helpers, each with its own line reader (LISTENING, then STATS per request).
  interface Helper {
    stats(): Promise<Stats>
    stop(): void
  }
  const port = await freePort()
  const helpers: Helper[] = []
  for (let first = 0; first < n; first += PER_HELPER) {
    const count = Math.min(PER_HELPER, n - first)
    const argv = pinned(CLIENT_CORE, [process.execPath, '--import', 'tsx', SELF, 'endpoints', String(redis.port), String(port), String(first), String(count)])
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
    const next = lineReader(child, 'endpoint helper')
    const ready = await next()
    if (!ready.startsWith('LISTENING')) throw new Error(`endpoint helper: ${ready}`)
    helpers.push({
      stats: async () => {
        child.stdin.write('stats\n')
        return JSON.parse((await next()).slice('STATS '.length)) as Stats
      },
      stop: () => child.stdin.end(),
    })
  }
  const allStats = async (): Promise<Stats> => {
    const total: Stats = { accepted: 0, firsts: {}, closed: 0, commands: {}, up: 0, fetched: 0 }
    for (const s of await Promise.all(helpers.map((h) => h.stats()))) {
      total.accepted += s.accepted
      for (const [k, v] of Object.entries(s.firsts)) total.firsts[k] = (total.firsts[k] ?? 0) + v
      total.closed += s.closed
      total.up += s.up
      total.fetched += s.fetched
      for (const [k, v] of Object.entries(s.commands)) total.commands[k] = (total.commands[k] ?? 0) + v
    }
    return total
  }
  log(`${fmtInt(n)} endpoints listening (127.77.x.y:${port}, ${helpers.length} helper process(es) on core ${CLIENT_CORE}), replaying redis-server ${versionOf('redis-server', ['--version'])}'s replies`)

  // The gateway.
  const dataPort = await freePort()
  const opsPort = await freePort()
  const conf = path.join(tmpDir(), `startup-gateway-${dataPort}.yaml`)
  writeFileSync(
    conf,
    [
      `listen: { data: "127.0.0.1:${dataPort}", ops: "127.0.0.1:${opsPort}" }`,
      'discovery:',
      '  static:',
      '    instances:',
      ...Array.from({ length: n }, (_, i) => `      - { name: inst-${String(i).padStart(5, '0')}, endpoints: ["redis://${endpointHost(i)}:${port}"] }`),
      'auth:',
      '  tokens:',
      `    - { name: bench, token: "${TOKEN}", access: write, targets: ["*"] }`,
      'log: { level: info }',
      'metrics: { enabled: true }',
      ...values.config,
      '',
    ].join('\n'),
  )
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_CONFIG: conf, NODE_ENV: 'production' }
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'GATEWAY_METRICS_ENABLED', 'GATEWAY_LOG_LEVEL']) delete env[k]
  const mainJs = process.env.BENCH_GATEWAY_MAIN ?? path.join(ROOT, 'dist/src/main.js')
  const argv = pinned(SERVER_CORE, [process.execPath, ...SHIPPED_NODE_ARGS, ...values['node-arg'], mainJs])
  const t0 = performance.now()
  const gw = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const pid = gw.pid!
  const since = (): number => performance.now() - t0
  let exited = false
  gw.once('exit', () => (exited = true))

  // Its log: counted as it streams (the gateway's stdout is a pipe, as under Kubernetes).
  const logs = { lines: 0, bytes: 0, warnOrWorse: 0, connectTimeout: 0, byMsg: new Map<string, number>(), last: [] as string[] }
  let logBuf = ''
  const logFile = values['log-file'] === undefined ? null : createWriteStream(values['log-file'])
  const onLog = (b: Buffer): void => {
    logFile?.write(b)
    logs.bytes += b.length
    logBuf += b.toString('utf8')
    let i: number
    while ((i = logBuf.indexOf('\n')) >= 0) {
      const line = logBuf.slice(0, i)
      logBuf = logBuf.slice(i + 1)
      if (line.trim() === '') continue
      logs.lines++
      if (line.includes('connect timeout')) logs.connectTimeout++
      logs.last.push(line)
      if (logs.last.length > 20) logs.last.shift()
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string }
        if ((j.level ?? 0) >= 40) logs.warnOrWorse++
        const key = `${j.level ?? '?'} ${(j.msg ?? '').replace(/\d+/g, 'N').slice(0, 90)}`
        logs.byMsg.set(key, (logs.byMsg.get(key) ?? 0) + 1)
      } catch {
        logs.byMsg.set('(not JSON)', (logs.byMsg.get('(not JSON)') ?? 0) + 1)
      }
    }
  }
  gw.stdout.on('data', onLog)
  gw.stderr.on('data', onLog)

  // Keep-alive connections: one per poller on the ops plane, one for the data plane.
  const healthzAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const opsAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const dataAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const get = (p: string, timeoutMs = 60_000, agent = opsAgent): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: opsPort, path: p, agent, timeout: timeoutMs }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        res.on('error', reject)
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', reject)
    })
  const ping = (instance: string): Promise<{ status: number; ms: number }> =>
    new Promise((resolve) => {
      const t = performance.now()
      const body = JSON.stringify(['PING'])
      const req = http.request(
        {
          host: '127.0.0.1',
          port: dataPort,
          path: `/v1/instances/${instance}`,
          method: 'POST',
          agent: dataAgent,
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t }))
        },
      )
      req.on('error', () => resolve({ status: 0, ms: performance.now() - t }))
      req.end(body)
    })
  const randomInstance = (): string => `inst-${String(Math.floor(Math.random() * n)).padStart(5, '0')}`

  // /healthz every 10 ms, from when the ops listener answers until the end of start-up.
  let polling = true
  const healthz = { count: 0, maxMs: 0, maxAtMs: 0, over50: 0, over100: 0, firstAtMs: NaN }
  const healthzLoop = (async () => {
    while (polling && !exited) {
      const t = performance.now()
      const ok = await get('/healthz', 120_000, healthzAgent).then(
        () => true,
        () => false,
      )
      const ms = performance.now() - t
      if (ok) {
        if (healthz.count === 0) healthz.firstAtMs = since()
        healthz.count++
        if (ms > healthz.maxMs) {
          healthz.maxMs = ms
          healthz.maxAtMs = since()
        }
        if (ms > 50) healthz.over50++
        if (ms > 100) healthz.over100++
      }
      await sleep(Math.max(1, 10 - ms))
    }
  })()

  // /readyz every 10 ms.
  let readyMs = NaN
  while (!exited && since() < upTimeoutMs) {
    const r = await get('/readyz', 120_000).catch(() => null)
    if (r?.status === 200) {
      readyMs = since()
      break
    }
    await sleep(10)
  }
  if (!Number.isFinite(readyMs)) throw new Error(`gateway not ready:\n${logs.last.join('\n')}`)
  const firstProbe = await ping(randomInstance())
  log(`ready at ${f1(readyMs / 1000)} s; a PING right after: ${firstProbe.status} in ${fmtInt(firstProbe.ms)} ms`)

  // Probes every 100 ms until every endpoint is up (by the helpers' count).
  const probes: { status: number; ms: number }[] = [firstProbe]
  let upMs = NaN
  let lastUp = 0
  let nextReport = 5000
  while (!exited && since() < upTimeoutMs) {
    probes.push(await ping(randomInstance()))
    const s = await allStats()
    lastUp = s.up
    if (s.up >= n) {
      upMs = since()
      break
    }
    if (since() > nextReport) {
      log(`  ${f1(since() / 1000)} s: ${fmtInt(s.up)} endpoints up, ${fmtInt(s.accepted)} connections accepted`)
      nextReport += 5000
    }
    await sleep(100)
  }
  log(`all ${fmtInt(n)} endpoints up at ${f1(upMs / 1000)} s${Number.isFinite(upMs) ? '' : ` (only ${fmtInt(lastUp)})`}`)
  // A few seconds more: the start-up's last checks and logs.
  await sleep(3000)
  polling = false
  await healthzLoop
  const startStats = await allStats()
  const startCpuS = cpuSeconds(pid)
  const metrics0 = (await get('/metrics')).body
  const metric = (text: string, re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN)
  const lagStartS = metric(metrics0, /^nodejs_eventloop_lag_max_seconds (\S+)$/m)
  const upSeries = (metrics0.match(/^redis_gateway_endpoint_up\{[^}]*\} 1$/gm) ?? []).length
  const downTransitions = [...metrics0.matchAll(/^redis_gateway_endpoint_transitions_total\{[^}]*to="down"[^}]*\} (\S+)$/gm)].reduce((a, m) => a + Number(m[1]), 0)
  const logsAtStart = { lines: logs.lines, bytes: logs.bytes, warnOrWorse: logs.warnOrWorse, connectTimeout: logs.connectTimeout }

  // Idle: after the scrape above has settled, CPU over the window, /healthz every --idle-poll-ms
  // (the slowest answer), no /metrics scrape until the window is over (at 5,000 instances a scrape
  // is itself a long turn; the lag max read after the window covers the window and the end of that
  // scrape).
  await sleep(5000)
  log(`idle for ${idleS} s ...`)
  const s0 = await allStats()
  const c0 = cpuSeconds(pid)
  const w0 = performance.now()
  const rssSamples: number[] = []
  let idleHealthzMaxMs = 0
  let nextRss = 1000
  const idlePollMs = Number(values['idle-poll-ms'])
  while (performance.now() - w0 < idleS * 1000) {
    const t = performance.now()
    if (idlePollMs > 0) await get('/healthz', 60_000, healthzAgent).catch(() => null)
    idleHealthzMaxMs = Math.max(idleHealthzMaxMs, performance.now() - t)
    if (performance.now() - w0 > nextRss) {
      rssSamples.push(rssKiB(pid))
      nextRss += 1000
    }
    await sleep(idlePollMs > 0 ? idlePollMs : 1000)
  }
  const idleCpuPct = (100 * (cpuSeconds(pid) - c0)) / ((performance.now() - w0) / 1000)
  const s1 = await allStats()
  const wS = (performance.now() - w0) / 1000
  const per = (k: string): number => ((s1.commands[k] ?? 0) - (s0.commands[k] ?? 0)) / wS
  const metrics1 = (await get('/metrics')).body
  const lagIdleS = metric(metrics1, /^nodejs_eventloop_lag_max_seconds (\S+)$/m)
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN)
  const rss = rssSamples[rssSamples.length - 1] ?? NaN
  const heapUsed = metric(metrics1, /^nodejs_heap_size_used_bytes (\S+)$/m) / 2 ** 20

  gw.kill('SIGTERM')
  await new Promise((r) => (exited ? r(null) : gw.once('exit', r)))
  for (const h of helpers) h.stop()
  await redis.proc.stop()

  const probeMs = probes.map((p) => p.ms)
  const probeFails = probes.filter((p) => p.status !== 200)
  const result = {
    label: values.label,
    started: started.toISOString(),
    machine: { ...machine(), loadAverageStart: load0, loadAverageEnd: loadAverage() },
    gateway: mainJs,
    config: values.config,
    instances: n,
    readyMs,
    firstProbe,
    probes: { count: probes.length, maxMs: Math.max(...probeMs), failed: probeFails.length, statuses: [...new Set(probeFails.map((p) => p.status))] },
    upMs,
    healthz,
    eventLoopLagMaxStartMs: lagStartS * 1000,
    startCpuS,
    logs: { ...logsAtStart, total: { lines: logs.lines, bytes: logs.bytes, warnOrWorse: logs.warnOrWorse, connectTimeout: logs.connectTimeout }, top: [...logs.byMsg].sort((a, b) => b[1] - a[1]).slice(0, 12) },
    connections: {
      acceptedAtStart: startStats.accepted,
      reconnectsAtStart: startStats.accepted - (startStats.firsts['AUTH'] ?? 0) - n,
      tokenUserConnections: startStats.firsts['AUTH'] ?? 0,
      acceptedAtEnd: s1.accepted,
    },
    endpointDownTransitions: downTransitions,
    upSeriesAtStart: upSeries,
    commandsAtStart: startStats.commands,
    idle: {
      seconds: wS,
      cpuPct: idleCpuPct,
      rolePerS: per('ROLE'),
      infoReplicationPerS: per('INFO REPLICATION'),
      pingPerS: per('PING'),
      eventLoopLagMaxMs: lagIdleS * 1000,
      healthzMaxMs: idleHealthzMaxMs,
      rssMiB: rss / 1024,
      hwmMiB: hwm / 1024,
      heapUsedMiB: heapUsed,
    },
  }

  log('')
  log(`startup: ${started.toISOString()}${values.label ? ` [${values.label}]` : ''}, ${fmtInt(n)} instances, an endpoint each; load average ${load0.map((x) => x.toFixed(2)).join(' / ')} at the start, ${loadAverage().map((x) => x.toFixed(2)).join(' / ')} at the end`)
  log(`  /readyz 200 after               ${f1(readyMs / 1000)} s`)
  log(`  PING right after /readyz        ${firstProbe.status} in ${fmtInt(firstProbe.ms)} ms; ${probes.length} probes until all up: max ${fmtInt(result.probes.maxMs)} ms, ${probeFails.length} not 200${probeFails.length ? ` (${result.probes.statuses.join(', ')})` : ''}`)
  log(`  all endpoints up after          ${f1(upMs / 1000)} s (${fmtInt(upSeries)} endpoint_up series at 1 at the end of start-up); ${f1(startCpuS)} s of gateway CPU`)
  log(`  longest event-loop turn         /healthz ${fmtInt(healthz.maxMs)} ms (at ${f1(healthz.maxAtMs / 1000)} s; ${healthz.over50} answers > 50 ms, ${healthz.over100} > 100 ms, of ${fmtInt(healthz.count)}; first answer at ${f1(healthz.firstAtMs / 1000)} s); nodejs_eventloop_lag_max ${fmtInt(result.eventLoopLagMaxStartMs)} ms`)
  log(`  log lines at start-up           ${fmtInt(logsAtStart.lines)} (${f1(logsAtStart.bytes / 2 ** 20)} MiB), ${fmtInt(logsAtStart.warnOrWorse)} at warn or above, ${fmtInt(logsAtStart.connectTimeout)} with "connect timeout"; over the whole run (a blocked gateway writes late): ${fmtInt(logs.lines)}, ${fmtInt(logs.warnOrWorse)}, ${fmtInt(logs.connectTimeout)}`)
  log(`  reconnects at start-up          ${fmtInt(result.connections.reconnectsAtStart)} (connections accepted beyond one per endpoint, less ${fmtInt(result.connections.tokenUserConnections)} token-user connections the probes opened); ${fmtInt(downTransitions)} endpoint down transitions`)
  log(`  commands at start-up            ${Object.entries(startStats.commands).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ')}`)
  log(`  idle ${fmtInt(wS)} s                      CPU ${f1(idleCpuPct)} % of a core; ${fmtInt(result.idle.rolePerS)} ROLE/s, ${fmtInt(result.idle.infoReplicationPerS)} INFO replication/s; /healthz every ${idlePollMs} ms: slowest ${fmtInt(idleHealthzMaxMs)} ms (event-loop lag max since the scrape before: ${fmtInt(result.idle.eventLoopLagMaxMs)} ms)`)
  log(`                                  RSS ${f1(result.idle.rssMiB)} MiB (peak ${f1(result.idle.hwmMiB)}), heap used ${f1(heapUsed)} MiB; ${fmtInt(s1.accepted - s0.accepted)} connections accepted meanwhile`)
  log('  top log lines over the run (level, message):')
  for (const [k, v] of result.logs.top) log(`    ${String(v).padStart(7)}  ${k}`)

  const file = values.json ?? path.join(BENCH_DIR, 'results', `startup-${started.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(result, null, 2))
  log(`\nresults: ${path.relative(process.cwd(), file)}`)
  process.exit(0)
}
