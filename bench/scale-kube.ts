// `npm run bench:scale-kube`: Kubernetes discovery at scale, on a real etcd + kube-apiserver
// (test/kubernetes/helpers, built by scripts/kube/tools.sh) and the production build of the gateway
// (dist/src/main.js with the shipped Node options, pinned to the server core, KUBECONFIG to the
// apiserver). Needs root: the Redis endpoints live in a network namespace (EndpointSlice validation
// refuses loopback addresses).
//
// 1. Creates N Services redis-<i> (default 5,000) in redis-system, each with an EndpointSlice
//    (slices first, so the cluster never holds a Service without its slice). Endpoints:
//    - distinct (default): endpoint i has an address of its own, 10.216.x.y:6379, all answered by
//      ONE redis-server in the netns: the netns routes the whole /16 to itself (`ip route add local
//      10.216.0.0/16 dev lo`, AnyIP) and the host routes it via the veth. So the gateway pools,
//      connects and health-checks N endpoints, as with N pods; they all share one redis-server
//      (and its one core) behind them. 127.x aliases would need no netns but are refused by
//      EndpointSlice validation.
//    - shared (--endpoints shared --servers K): K redis-servers (ports 7000..) at the netns address,
//      instance i on server i % K: the routing table and discovery at N, the pool at K.
// 2. Starts the gateway and measures: spawn -> /readyz 200; spawn -> every endpoint up (the Redis
//    servers count the gateway's connections, then scrapes every second confirm endpoint_up); the
//    longest /healthz answer while polling it every 10 ms from spawn to all up + 2 s (or ready + 5 s,
//    the later; the longest event-loop turn, seen from outside); nodejs_eventloop_lag_max_seconds at
//    the gateway's first /healthz answer (module loading and the start turn: a scrape then resets it),
//    at ready (the turns between the first answer and ready) and from ready to all up + 2 s (the
//    largest of the scrapes meanwhile, as each resets it); instance builds (discovery_events_total{outcome="reconciled"}: one per
//    instance build, so builds - N = rebuilds) and the "instance endpoints changed" log lines; the
//    "connect timeout" log lines (to the end of the idle window); the gateway's CPU (utime + stime
//    from /proc/<pid>/stat) over --idle-seconds (30) from all up + 2 s, and how many endpoints are up
//    then; GET /admin/routes (the whole table): bytes and time, 3 times; an annotation change
//    (maintenance: drain, then off) until the routes view of that instance shows it, 3 times each,
//    with /healthz answer times around them (how busy the event loop is meanwhile); and an
//    apiserver outage (--outage-seconds, 20) and restart: the time from the apiserver being ready
//    again to an annotation written then being routed, and the instance builds the recovery made.
// Prints a table; the JSON goes to bench/results/scale-kube-<date>.json. See bench/README.md
// "Discovery at scale". About 3-5 minutes for 5,000 instances on 2 cores.
//
// Options: --instances N  --endpoints distinct|shared  --servers K  --idle-seconds S
//          --outage-seconds S  --no-watch-cache  --config 'yaml line' (more gateway config, repeatable)
//          --json FILE  --gateway-log FILE (a copy of every line the gateway logged)  --log-level L (info)
//          --node-arg ARG (for the gateway's node, repeatable: e.g. --cpu-prof)
//          --late-turns (the gateway logs its own late turns and GC pauses, bench/lib/late-turns.cjs:
//          adds their counts between listening and ready, and from ready to all up)

import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { execFileSync, spawn } from 'node:child_process'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { freePort } from '../test/helpers/ports.js'
import { startCluster, type KubeCluster } from '../test/kubernetes/helpers/cluster.js'
import { createNetns, type Netns } from '../test/kubernetes/helpers/netns.js'
import type { RedisServer } from '../test/helpers/redis-server.js'
import * as procs from './lib/procs.js'

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '5000' },
    endpoints: { type: 'string', default: 'distinct' },
    servers: { type: 'string', default: '10' },
    'idle-seconds': { type: 'string', default: '30' },
    'outage-seconds': { type: 'string', default: '20' },
    'no-watch-cache': { type: 'boolean', default: false },
    config: { type: 'string', multiple: true, default: [] },
    json: { type: 'string' },
    'gateway-log': { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    'late-turns': { type: 'boolean', default: false },
  },
})

const N = Number(values.instances)
const MODE = values.endpoints
const SERVERS = Number(values.servers)
const IDLE_S = Number(values['idle-seconds'])
const OUTAGE_S = Number(values['outage-seconds'])
const NS = 'redis-system'
const ADMIN = 'bench-admin-token'
const WRITER = 'bench-write-token'
if (!(N >= 1 && N <= 60_000)) throw new Error(`--instances: 1..60000, got ${values.instances}`)
if (MODE !== 'distinct' && MODE !== 'shared') throw new Error(`--endpoints: distinct or shared, got ${MODE}`)
if (process.getuid?.() !== 0) throw new Error('bench:scale-kube needs root (ip netns: EndpointSlices refuse loopback addresses)')

const { SERVER_CORE, SHIPPED_NODE_ARGS, ROOT, cpuSeconds, machine, pinned, tmpDir, loadAverage } = procs
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const log = (s: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`)
const fmt = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 0 })
const ms = (n: number): string => (n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`)
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

// ---------------------------------------------------------------------------------------------
// Kubernetes objects through the API (admin token).

async function api(cluster: KubeCluster, method: string, p: string, body?: unknown, contentType?: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const res = await cluster.request(method, p, body, contentType ? { contentType } : {})
    if (res.status < 300) return
    // Priority and fairness may push back on a burst of creates: retry those.
    if (res.status !== 429 || attempt >= 10) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`)
    await sleep(200 * attempt)
  }
}

async function parallel(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++)
    }),
  )
}

/** Endpoint of instance i. */
type Endpoint = { ip: string; port: number }

/** Adds AnyIP for a free 10.X.0.0/16 inside the netns and routes it there from the host; returns X. */
function anyIp(net: Netns): number {
  const routes = execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' }) + execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' })
  const second = [216, 217, 218, 219, 220, 221].find((x) => !routes.includes(`10.${x}.`))
  if (second === undefined) throw new Error('no free 10.X.0.0/16 (216-221) for the endpoint addresses')
  execFileSync('ip', ['-n', net.name, 'route', 'add', 'local', `10.${second}.0.0/16`, 'dev', 'lo'])
  // Goes away with the host side of the veth (net.destroy()).
  execFileSync('ip', ['route', 'add', `10.${second}.0.0/16`, 'via', net.address, 'dev', net.hostIf])
  return second
}

// ---------------------------------------------------------------------------------------------
// The gateway: a production build with a kubeconfig; its log lines counted as they come.

interface Gateway {
  pid: number
  port: number
  opsPort: number
  /** Everything it logged so far. */
  logFile: string
  /** What bench/lib/late-turns.cjs logged (--late-turns), else null. */
  lateTurnsFile: string | null
  stop(): Promise<void>
}

/**
 * --late-turns: the gateway's late turns between its first listen and ready, and from ready to all
 * up, on its own clock (ms since its start, within a few ms of this bench's spawn time).
 */
function lateTurnRows(file: string, readyMs: number, allUpMs: number): [string, string, string, unknown][] {
  const lines = readFileSync(file, 'utf8').split('\n').map((l) => l.split(' '))
  const listen = Number(lines.find((l) => l[0] === 'listen')?.[1] ?? 0)
  const turns = lines.filter((l) => l[0] === 'turn').map((l) => ({ at: Number(l[1]), ms: Number(l[2]) }))
  const stats = (from: number, to: number): { longest: number; over: number[] } => {
    const t = turns.filter((x) => x.at >= from && x.at < to).map((x) => x.ms)
    return { longest: Math.max(0, ...t), over: [30, 50, 100].map((limit) => t.filter((ms) => ms > limit).length) }
  }
  const before = stats(listen, readyMs)
  const after = stats(readyMs, allUpMs)
  const majors = lines.filter((l) => l[0] === 'gc' && l[3] === '4' && Number(l[1]) >= listen && Number(l[1]) < readyMs).map((l) => Math.round(Number(l[2])))
  const fmtStats = (s: { longest: number; over: number[] }): string => `longest ${Math.round(s.longest)} ms; over 30 / 50 / 100 ms: ${s.over.join(' / ')}`
  return [
    ['late turns (gateway clock), first listen -> ready', fmtStats(before), 'lateTurnsBeforeReady', before],
    ['late turns (gateway clock), ready -> all up', fmtStats(after), 'lateTurnsAfterReady', after],
    ['major GC pauses, first listen -> ready', majors.length ? `${majors.join(', ')} ms` : 'none over 5 ms', 'majorGcBeforeReadyMs', majors],
  ]
}

const COUNTED = ['connect timeout', '"msg":"instance added"', '"msg":"instance endpoints changed"', 'discovery watch error', '"msg":"discovery listed"', '(410 Gone); relisting']

async function startGateway(kubeconfig: string): Promise<Gateway> {
  const port = await freePort()
  const opsPort = await freePort()
  const conf = path.join(tmpDir(), `scale-kube-gateway-${port}.yaml`)
  writeFileSync(
    conf,
    [
      `listen: { data: "127.0.0.1:${port}", ops: "127.0.0.1:${opsPort}" }`,
      'discovery:',
      `  kubernetes: { namespaces: ["${NS}"] }`,
      'auth:',
      '  tokens:',
      `    - { name: admin, token: "${ADMIN}", access: admin, targets: ["*"] }`,
      `    - { name: writer, token: "${WRITER}", access: write, targets: ["*"] }`,
      `log: { level: ${values['log-level']} }`,
      'metrics: { enabled: true }',
      ...(values.config ?? []),
      '',
    ].join('\n'),
  )
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_CONFIG: conf, KUBECONFIG: kubeconfig, NODE_ENV: 'production' }
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'GATEWAY_METRICS_ENABLED', 'GATEWAY_LOG_LEVEL']) delete env[k]
  const main = process.env.BENCH_GATEWAY_MAIN ?? path.join(ROOT, 'dist/src/main.js')
  // Its output goes to a file, not a pipe: the gateway logs synchronously (pino), so a pipe that this
  // process, starved of CPU, drains late would stall the gateway's event loop and skew every figure.
  const logFile = path.join(tmpDir(), `scale-kube-gateway-${port}.log`)
  const out = openSync(logFile, 'w')
  // --late-turns: the gateway logs its own late turns and GC pauses (bench/lib/late-turns.cjs).
  const lateTurns = values['late-turns'] ? ['--require', path.join(ROOT, 'bench/lib/late-turns.cjs')] : []
  if (values['late-turns']) env.LATE_TURNS_OUT = path.join(tmpDir(), `scale-kube-late-turns-${port}.txt`)
  const [cmd, ...args] = pinned(SERVER_CORE, [process.execPath, ...SHIPPED_NODE_ARGS, ...lateTurns, ...(values['node-arg'] ?? []), main])
  const child = spawn(cmd!, args, { cwd: ROOT, env, stdio: ['ignore', out, out] })
  closeSync(out)
  const kill = (): void => {
    child.kill('SIGKILL')
  }
  process.on('exit', kill)
  return {
    pid: child.pid ?? -1,
    port,
    opsPort,
    logFile,
    lateTurnsFile: env.LATE_TURNS_OUT ?? null,
    stop: () => {
      process.off('exit', kill)
      return procs.stopChild(child)
    },
  }
}

/** How many of the gateway's log lines so far contain each COUNTED string. */
function logCounts(g: Gateway): Map<string, number> {
  const counts = new Map<string, number>(COUNTED.map((c) => [c, 0]))
  for (const line of readFileSync(g.logFile, 'utf8').split('\n')) for (const c of COUNTED) if (line.includes(c)) counts.set(c, counts.get(c)! + 1)
  return counts
}

/** A scrape; retried, as a gateway whose event loop stalls for many seconds may drop the connection. */
async function metrics(g: Gateway): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await (await fetch(`http://127.0.0.1:${g.opsPort}/metrics`)).text()
    } catch (err) {
      if (attempt >= 5) throw err
      await sleep(1000)
    }
  }
}

/** Sum of a metric's samples whose labels include `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:]+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3])
  }
  return sum
}

const endpointsUp = (text: string): number => (text.match(/^redis_gateway_endpoint_up\{[^}]*\} 1$/gm) ?? []).length

/** An instance's maintenance as the routing table has it (the routes view, that instance only: no Redis involved). */
async function maintenance(g: Gateway, instance: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${g.opsPort}/admin/routes?instance=${instance}&groups=none`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const body = (await res.json()) as { instances?: { maintenance?: string }[] }
  return body.instances?.[0]?.maintenance ?? '?'
}

/** How long /healthz takes to answer, `n` times in a row: how busy the event loop is. */
async function healthzMs(g: Gateway, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const s = performance.now()
    await fetch(`http://127.0.0.1:${g.opsPort}/healthz`).catch(() => null)
    out.push(performance.now() - s)
    await sleep(20)
  }
  return out
}

/** ms until `check` holds, or null when it did not within `timeoutMs` (a figure, not a failure). */
async function within(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 5): Promise<number | null> {
  return until('', check, timeoutMs, intervalMs).catch(() => null)
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, intervalMs = 5): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    if (await check().catch(() => false)) return performance.now() - t0
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(intervalMs)
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = new Date()
  const load0 = loadAverage()
  const rows: [string, string][] = []
  const figures: Record<string, unknown> = { instances: N, endpoints: MODE, servers: MODE === 'shared' ? SERVERS : 1, startedAt: startedAt.toISOString() }
  const row = (what: string, value: string, key?: string, raw?: unknown): void => {
    rows.push([what, value])
    if (key !== undefined) figures[key] = raw
    log(`${what}: ${value}`)
  }

  log(`starting etcd + kube-apiserver (watch cache ${values['no-watch-cache'] ? 'off' : 'on'})`)
  const cluster = await startCluster({ users: ['gateway'], watchCache: !values['no-watch-cache'], startTimeoutMs: 300_000 })
  const net = await createNetns()
  let gw: Gateway | undefined
  try {
    let endpointOf: (i: number) => Endpoint
    const servers: RedisServer[] = []
    if (MODE === 'distinct') {
      const second = anyIp(net)
      servers.push(await net.startRedis({ port: 6379, args: ['--bind', '0.0.0.0', '--maxclients', '60000'] }))
      endpointOf = (i) => ({ ip: `10.${second}.${Math.floor(i / 250)}.${1 + (i % 250)}`, port: 6379 })
    } else {
      for (let k = 0; k < SERVERS; k++) servers.push(await net.startRedis({ port: 7000 + k, args: ['--maxclients', '20000'] }))
      endpointOf = (i) => ({ ip: net.address, port: 7000 + (i % SERVERS) })
    }

    await api(cluster, 'POST', '/api/v1/namespaces', { metadata: { name: NS } })
    const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}`
    await api(cluster, 'POST', `${rbac}/roles`, {
      metadata: { name: 'redis-gateway-discovery' },
      rules: [
        { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    })
    await api(cluster, 'POST', `${rbac}/rolebindings`, {
      metadata: { name: 'redis-gateway-discovery' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'redis-gateway-discovery' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'gateway' }],
    })
    const token = cluster.tokenFor('gateway')
    await until('RBAC grant', async () => (await cluster.request('GET', `/api/v1/namespaces/${NS}/services`, undefined, { token })).status === 200, 30_000, 100)
    const kubeconfig = cluster.kubeconfigFor(token)

    log(`creating ${fmt(N)} EndpointSlices, then ${fmt(N)} Services`)
    let t0 = performance.now()
    await parallel(N, 16, async (i) => {
      const e = endpointOf(i)
      await api(cluster, 'POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
        metadata: { name: `redis-${i}-1`, labels: { 'kubernetes.io/service-name': `redis-${i}` } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [e.ip], conditions: { ready: true } }],
        ports: [{ name: 'redis', port: e.port, protocol: 'TCP' }],
      })
    })
    await parallel(N, 16, (i) =>
      api(cluster, 'POST', `/api/v1/namespaces/${NS}/services`, {
        metadata: { name: `redis-${i}` },
        spec: { type: 'ClusterIP', ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }] },
      }),
    )
    row('objects created (Services + EndpointSlices)', `${fmt(2 * N)} in ${ms(performance.now() - t0)}`, 'createMs', performance.now() - t0)

    // --- start-up ---------------------------------------------------------------------------
    log('starting the gateway')
    t0 = performance.now()
    gw = await startGateway(kubeconfig)
    const g = gw
    let readyAt = 0
    let pollUntil = Number.POSITIVE_INFINITY
    let longest = 0
    let polls = 0
    // The gateway's own view: a scrape at its first answer takes the lag of the start (module
    // loading, the start turn) and resets it, so the scrape at ready has the turns between.
    let lagAtFirstAnswer: number | null = null
    const healthz = (async () => {
      while (performance.now() < pollUntil) {
        const s = performance.now()
        const ok = await fetch(`http://127.0.0.1:${g.opsPort}/healthz`).then((r) => r.ok, () => false)
        const took = performance.now() - s
        if (ok) {
          polls++
          longest = Math.max(longest, took)
          if (lagAtFirstAnswer === null) lagAtFirstAnswer = metric(await metrics(g), 'nodejs_eventloop_lag_max_seconds') * 1000
        }
        await sleep(Math.max(0, 10 - took))
      }
    })()
    await until('/readyz 200', async () => (await fetch(`http://127.0.0.1:${g.opsPort}/readyz`)).status === 200, 300_000, 50)
    readyAt = performance.now()
    row('gateway start -> /readyz 200', ms(readyAt - t0), 'readyMs', readyAt - t0)
    let text = await metrics(g)
    const lagAtReady = metric(text, 'nodejs_eventloop_lag_max_seconds') * 1000
    row('nodejs_eventloop_lag_max_seconds, spawn -> first /healthz answer', lagAtFirstAnswer === null ? 'n/a' : ms(lagAtFirstAnswer), 'eventLoopLagMaxAtFirstAnswerMs', lagAtFirstAnswer)
    row('instances in the routing table at ready', fmt(metric(text, 'redis_gateway_routing_table_instances')), 'instancesAtReady', metric(text, 'redis_gateway_routing_table_instances'))
    row(
      `nodejs_eventloop_lag_max_seconds at ready (${lagAtFirstAnswer === null ? 'since start' : 'since the first /healthz answer'})`,
      ms(lagAtReady),
      'eventLoopLagMaxAtReadyMs',
      lagAtReady,
    )
    // Every endpoint up: first the Redis servers count the gateway's connections (cheap for the
    // gateway, unlike a scrape of 5,000 endpoints' series), then scrapes confirm endpoint_up.
    const pooled = MODE === 'distinct' ? N : SERVERS
    const connected = async (): Promise<number> => {
      let sum = 0
      for (const s of servers) sum += Number(/connected_clients:(\d+)/.exec(await s.info('clients'))?.[1] ?? 0) - 1
      return sum
    }
    await until('the gateway connected to every endpoint', async () => (await connected()) >= pooled, 300_000, 200)
    // The lag max resets at each scrape: the largest of them is the largest since ready.
    let lagSinceReady = 0
    await until(
      'every endpoint up',
      async () => {
        const t = await metrics(g)
        lagSinceReady = Math.max(lagSinceReady, metric(t, 'nodejs_eventloop_lag_max_seconds') * 1000)
        return endpointsUp(t) >= N
      },
      120_000,
      1_000,
    )
    const allUpAt = performance.now()
    row('gateway start -> every endpoint up (endpoint_up = 1)', ms(allUpAt - t0), 'allUpMs', allUpAt - t0)
    pollUntil = Math.max(readyAt + 5_000, allUpAt + 2_000)
    await healthz
    row('longest /healthz answer, polled every 10 ms, spawn -> all up + 2 s', `${ms(longest)} (${fmt(polls)} answers)`, 'healthzMaxMs', longest)
    lagSinceReady = Math.max(lagSinceReady, metric(await metrics(g), 'nodejs_eventloop_lag_max_seconds') * 1000)
    row('nodejs_eventloop_lag_max_seconds, ready -> all up + 2 s', ms(lagSinceReady), 'eventLoopLagMaxStartMs', lagSinceReady)
    if (g.lateTurnsFile !== null) {
      await sleep(1_100) // late-turns.cjs writes once a second
      for (const r of lateTurnRows(g.lateTurnsFile, readyAt - t0, allUpAt - t0)) row(...r)
    }

    // --- idle ---------------------------------------------------------------------------------
    const cpu0 = cpuSeconds(g.pid)
    const w0 = performance.now()
    await sleep(IDLE_S * 1000)
    const cpuPct = (100 * (cpuSeconds(g.pid) - cpu0)) / ((performance.now() - w0) / 1000)
    text = await metrics(g)
    row(`gateway CPU over ${IDLE_S} s from all up + 2 s`, `${cpuPct.toFixed(1)} % of one core`, 'idleCpuPct', cpuPct)
    row('instance endpoints up at the end of that window (endpoint_up = 1)', `${fmt(endpointsUp(text))} / ${fmt(N)}`, 'endpointsUpAfterIdle', endpointsUp(text))
    row('nodejs_eventloop_lag_max_seconds over that window', ms(metric(text, 'nodejs_eventloop_lag_max_seconds') * 1000), 'eventLoopLagMaxIdleMs', metric(text, 'nodejs_eventloop_lag_max_seconds') * 1000)
    const builds = metric(text, 'redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'reconciled' })
    row('instance builds since start (reconciled)', `${fmt(builds)} (rebuilds: ${fmt(builds - N)})`, 'startupBuilds', builds)
    let counts = logCounts(g)
    row("'instance added' / 'instance endpoints changed' log lines", `${fmt(counts.get(COUNTED[1]!)!)} / ${fmt(counts.get(COUNTED[2]!)!)}`, 'endpointChangeLines', counts.get(COUNTED[2]!))
    row("'connect timeout' log lines, start -> end of the window", fmt(counts.get(COUNTED[0]!)!), 'connectTimeoutLines', counts.get(COUNTED[0]!))

    // --- the routes view ----------------------------------------------------------------------
    const views: { ms: number; bytes: number; status: number }[] = []
    for (let i = 0; i < 3; i++) {
      const s = performance.now()
      try {
        const res = await fetch(`http://127.0.0.1:${g.opsPort}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN}` } })
        const bytes = (await res.arrayBuffer()).byteLength
        views.push({ ms: performance.now() - s, bytes, status: res.status })
      } catch {
        views.push({ ms: performance.now() - s, bytes: 0, status: 0 })
      }
    }
    row(
      'GET /admin/routes (whole table), 3 times',
      `${(views[0]!.bytes / 2 ** 20).toFixed(2)} MiB, ${views.map((v) => ms(v.ms)).join(' / ')} (HTTP ${views[0]!.status})`,
      'routesView',
      views,
    )

    // --- an annotation change -------------------------------------------------------------
    const patch = (value: string | null) =>
      api(cluster, 'PATCH', `/api/v1/namespaces/${NS}/services/redis-0`, { metadata: { annotations: { 'redis-gateway.io/maintenance': value } } }, 'application/merge-patch+json')
    const changes: number[] = []
    const loop = await healthzMs(g, 10)
    for (let i = 0; i < 3; i++) {
      let s = performance.now()
      await patch('drain')
      await until('drain in the routing table', async () => (await maintenance(g, '0')) === 'drain', 300_000)
      changes.push(performance.now() - s)
      s = performance.now()
      await patch(null)
      await until('undrain in the routing table', async () => (await maintenance(g, '0')) === 'off', 300_000)
      changes.push(performance.now() - s)
    }
    loop.push(...(await healthzMs(g, 10)))
    row('annotation change (PATCH) -> in the routing table, 6 changes', `median ${ms(median(changes))}, max ${ms(Math.max(...changes))}`, 'annotationMs', changes)
    row('  /healthz answer meanwhile (20 samples)', `median ${ms(median(loop))}, max ${ms(Math.max(...loop))}`, 'healthzDuringAnnotationMs', loop)

    // --- an apiserver outage --------------------------------------------------------------------
    text = await metrics(g)
    counts = logCounts(g)
    const listedBefore = counts.get(COUNTED[4]!)!
    const goneBefore = counts.get(COUNTED[5]!)!
    const buildsBefore = metric(text, 'redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'reconciled' })
    const errorsBefore = metric(text, 'redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' })
    log(`stopping the apiserver for ${OUTAGE_S} s`)
    await cluster.stopApiServer()
    await sleep(OUTAGE_S * 1000)
    t0 = performance.now()
    await cluster.startApiServer()
    const back = performance.now()
    row('apiserver start (after the outage) -> its /readyz 200', ms(back - t0), 'apiserverStartMs', back - t0)
    await patch('drain')
    const shown = await within(async () => (await maintenance(g, '0')) === 'drain', 300_000, 10)
    const recoveryMs = shown === null ? null : performance.now() - back
    row(`annotation written at apiserver ready (after ${OUTAGE_S} s down) -> in the routing table`, recoveryMs === null ? 'not within 300 s' : ms(recoveryMs), 'recoveryMs', recoveryMs)
    await sleep(3_000)
    text = await metrics(g)
    const rebuilt = metric(text, 'redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'reconciled' }) - buildsBefore
    const errors = metric(text, 'redis_gateway_discovery_events_total', { source: 'kubernetes', outcome: 'error' }) - errorsBefore
    row('instance builds after the outage (3 s after the drain showed)', fmt(rebuilt), 'recoveryBuilds', rebuilt)
    row('discovery watch errors during the outage', fmt(errors), 'outageErrors', errors)
    counts = logCounts(g)
    row('relists after the outage (410 Gone / lists)', `${counts.get(COUNTED[5]!)! - goneBefore} / ${counts.get(COUNTED[4]!)! - listedBefore}`, 'outageRelists', counts.get(COUNTED[4]!)! - listedBefore)
    row('nodejs_eventloop_lag_max_seconds, apiserver stop -> 3 s after the drain showed', ms(metric(text, 'nodejs_eventloop_lag_max_seconds') * 1000), 'eventLoopLagMaxOutageMs', metric(text, 'nodejs_eventloop_lag_max_seconds') * 1000)
    await patch(null)

    figures['machine'] = machine()
    figures['loadAverageStart'] = load0
    figures['loadAverageEnd'] = loadAverage()
  } finally {
    await gw?.stop()
    if (gw && values['gateway-log']) copyFileSync(gw.logFile, values['gateway-log'])
    await net.destroy()
    await cluster.stop()
  }

  const width = Math.max(...rows.map(([w]) => w.length))
  console.log(`\nDiscovery at scale: ${fmt(N)} instances, ${MODE === 'distinct' ? `${fmt(N)} distinct endpoint addresses on one redis-server` : `${SERVERS} redis-servers`}`)
  console.log(`${'figure'.padEnd(width)}  value`)
  console.log(`${'-'.repeat(width)}  ${'-'.repeat(40)}`)
  for (const [w, v] of rows) console.log(`${w.padEnd(width)}  ${v}`)
  const l = loadAverage()
  console.log(`\nload average: ${load0.map((x) => x.toFixed(1)).join(' ')} at the start, ${l.map((x) => x.toFixed(1)).join(' ')} at the end`)
  const file = values.json ?? path.join(ROOT, 'bench/results', `scale-kube-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, `${JSON.stringify({ figures, rows }, null, 2)}\n`)
  console.log(`JSON: ${path.relative(ROOT, file)}`)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
