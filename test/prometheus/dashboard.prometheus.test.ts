// The Grafana dashboard and the alert rules the chart ships, run against a real Prometheus that
// scrapes a real gateway the way the Prometheus Operator would, during traffic and a replica stall.
//
// Set-up (all real processes): redis-server primary P, replica R (--replicaof P) and a lone server
// L; the gateway (`node --import tsx src/main.ts`) with four static instances: `orders` (P+R, reads
// prefer the replica, hedged after 20 ms), `sessions` (P+R, reads prefer the replica, not hedged:
// a stalled read is retried on the primary), `cache` (R only: a stalled read is a 504) and `lone`
// (L only, killed during the run: 503 NOENDPOINT; it also carries one bad annotation so discovery
// counts a `bad_annotation` event); and Debian's `prometheus` binary, twice, both scraping the
// gateway's ops port every second with plain static_configs (no honor_labels) and the target
// labels the Operator adds:
// - as the chart's ServiceMonitor: job = the ops Service's name, namespace, service, pod,
//   container, endpoint = the port's name; the shipped PrometheusRule loaded as it is rendered;
// - as the chart's PodMonitor: job = <namespace>/<PodMonitor name> (the Operator's default), the
//   same labels without service; the rules as the chart renders them with metrics.podMonitor.enabled.
// One Prometheus per job, because the chart enables one of the two, and so that a dashboard
// query is known to work under each job (the dashboard has no job variable to pick one with).
//
// Names, namespace, ports and jobs come from the rendered manifests (manifests/*.yaml: the chart
// with release name and namespace redis-gateway) and the chart's templates, not from this file.
//
// Traffic for the whole run: single commands (reads and writes, path and JSON forms), pipelines,
// MULTI/EXEC, PUBLISH, group requests, Redis error replies (400), one Server-Sent Events stream
// kept open, requests to the dead instance, one request over limits.inflightBytes (503 OVERLOADED)
// and one client that never reads its replies (closed after limits.writeTimeout). In the middle,
// R is SIGSTOPped until both Prometheus servers have recorded it as down, plus a few seconds, then
// SIGCONTed; the scenario goes on until both have recorded its recovery.
//
// Then every panel query and every templating variable query of
// charts/redis-gateway/dashboards/redis-gateway.json (read now, whatever it holds) runs on each
// Prometheus with Grafana's variables substituted, and must return data; no series may carry an
// `exported_*` label; the rules must evaluate without error and their selectors must match the
// scraped series.

import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { execFile } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments, stringify } from 'yaml'
import { GatewayMetrics } from '../../src/telemetry/metrics.js'
import { REPO_ROOT, spawnGateway, type GatewayProcess } from '../helpers/gateway-process.js'
import { freePort } from '../helpers/ports.js'
import { guardChild } from '../helpers/process-guard.js'
import { findPrometheus, startPrometheus, type PrometheusServer, type PromSample } from '../helpers/prometheus.js'
import { head, RawConnection } from '../helpers/raw-http.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { readEventLines, type EventLines } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'

const DASHBOARD = path.join(REPO_ROOT, 'charts/redis-gateway/dashboards/redis-gateway.json')
const A = 'redis-gateway.io/'
const WRITE_TOKEN = 'prom-test-write-token'
const ADMIN_TOKEN = 'prom-test-admin-token'
const MiB = 1024 * 1024

/** What Grafana would put for its built-in interval variables with a 1 s scrape interval (rounded up). */
const GRAFANA_BUILTINS: Record<string, string> = {
  __rate_interval: '15s',
  __interval: '5s',
  __interval_ms: '5000',
  __range: '1m',
  __range_s: '60',
  __range_ms: '60000',
}
/** The replica stays stopped at least this long, so that several scrapes and rule evaluations see it. */
const STALL_MIN_MS = 6_000

// ---------------------------------------------------------------------------------------------
// What the chart renders: the jobs and target labels the Operator would give the gateway's series.

type K8sDoc = {
  kind?: string
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> }
  spec?: Record<string, unknown>
}

function manifest(file: string): K8sDoc[] {
  return parseAllDocuments(readFileSync(path.join(REPO_ROOT, file), 'utf8'))
    .map((d) => d.toJS() as K8sDoc | null)
    .filter((d): d is K8sDoc => d !== null)
}

interface ScrapeSetup {
  /** ServiceMonitor or PodMonitor. */
  readonly kind: string
  /** The Operator's scrape config name for it. */
  readonly jobName: string
  /** Target labels: job, namespace, pod, container, endpoint (+ service). */
  readonly labels: Record<string, string>
}

interface ChartFacts {
  readonly namespace: string
  readonly serviceMonitor: ScrapeSetup
  readonly podMonitor: ScrapeSetup
  readonly metricsPath: string
  /** spec.groups of manifests/prometheusrule.yaml. */
  readonly ruleGroups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[]
}

function chartFacts(): ChartFacts {
  const install = manifest('manifests/install.yaml')
  const ops = install.find((d) => d.kind === 'Service' && d.metadata?.labels?.['app.kubernetes.io/component'] === 'ops')
  const deployment = install.find((d) => d.kind === 'Deployment')
  const sm = manifest('manifests/servicemonitor.yaml').find((d) => d.kind === 'ServiceMonitor')
  const rule = manifest('manifests/prometheusrule.yaml').find((d) => d.kind === 'PrometheusRule')
  if (!ops?.metadata?.name || !deployment?.metadata?.name || !sm?.metadata?.name || !rule?.spec) {
    throw new Error('manifests/: expected the ops Service and the Deployment in install.yaml, a ServiceMonitor and a PrometheusRule')
  }
  const namespace = ops.metadata.namespace ?? 'default'
  const endpoints = (sm.spec as { endpoints: { port: string; path?: string }[] }).endpoints
  const smPort = endpoints[0]?.port
  if (!smPort) throw new Error('manifests/servicemonitor.yaml: no endpoint port')
  // The ServiceMonitor names a Service port; the container port behind it (targetPort) is what a PodMonitor names.
  const servicePort = (ops.spec as { ports: { name: string; targetPort: string | number }[] }).ports.find((p) => p.name === smPort)
  const podSpec = (deployment.spec as { template: { spec: { containers: { name: string; ports?: { name: string }[] }[] } } }).template.spec
  const container = podSpec.containers.find((c) => c.ports?.some((p) => p.name === servicePort?.targetPort))
  if (!servicePort || !container) throw new Error(`manifests/install.yaml: no container port behind Service port ${smPort}`)
  // podmonitor.yaml is not rendered into manifests/ (it is off by default): read its endpoint from the template.
  const pmTemplate = readFileSync(path.join(REPO_ROOT, 'charts/redis-gateway/templates/podmonitor.yaml'), 'utf8')
  const pmPort = /podMetricsEndpoints:\s*\n\s*- port: (\S+)/.exec(pmTemplate)?.[1]
  if (!pmPort) throw new Error('charts/redis-gateway/templates/podmonitor.yaml: no podMetricsEndpoints port')
  // A made-up pod of the Deployment (ReplicaSet hash and pod suffix).
  const pod = `${deployment.metadata.name}-6c9d8f7b5d-q2x7v`
  // The PodMonitor is named like the ServiceMonitor (both redis-gateway.fullname), in the release
  // namespace; the Operator's job for it is <its namespace>/<its name> (no jobLabel in the chart).
  const podMonitorName = sm.metadata.name
  return {
    namespace,
    metricsPath: endpoints[0]?.path ?? '/metrics',
    serviceMonitor: {
      kind: 'ServiceMonitor',
      jobName: `serviceMonitor/${sm.metadata.namespace}/${sm.metadata.name}/0`,
      // The Operator's job for a ServiceMonitor target is the Service's name (no jobLabel in the chart).
      labels: { job: ops.metadata.name, namespace, service: ops.metadata.name, pod, container: container.name, endpoint: smPort },
    },
    podMonitor: {
      kind: 'PodMonitor',
      jobName: `podMonitor/${namespace}/${podMonitorName}/0`,
      labels: { job: `${namespace}/${podMonitorName}`, namespace, pod, container: container.name, endpoint: pmPort },
    },
    ruleGroups: (rule.spec as { groups: ChartFacts['ruleGroups'] }).groups,
  }
}

/** A Prometheus scrape config as the Operator generates it for one monitor: static target, labels added, honor_labels false. */
function scrapeConfig(setup: ScrapeSetup, target: string, metricsPath: string): Record<string, unknown> {
  const { job, ...targetLabels } = setup.labels
  return {
    job_name: setup.jobName,
    honor_labels: false,
    metrics_path: metricsPath,
    scheme: 'http',
    static_configs: [{ targets: [target], labels: targetLabels }],
    // As the Operator does: job from the Service name, or <namespace>/<name> of the PodMonitor.
    relabel_configs: [{ target_label: 'job', replacement: job }],
  }
}

/** The rule groups with the job selector the chart renders for this setup. */
function rulesFor(groups: ChartFacts['ruleGroups'], shippedJob: string, job: string): ChartFacts['ruleGroups'] {
  const from = `job="${shippedJob}"`
  return groups.map((g) => ({
    ...g,
    name: g.name,
    rules: g.rules.map((r) => {
      if (!r.expr.includes(from)) throw new Error(`rule ${r.alert ?? r.record}: expected the selector ${from} in ${r.expr}`)
      return { ...r, expr: r.expr.split(from).join(`job="${job}"`) }
    }),
  }))
}

// ---------------------------------------------------------------------------------------------
// The dashboard: every target expr and variable query, Grafana variables substituted.

interface Panel {
  type?: string
  title?: string
  targets?: { expr?: string; refId?: string; hide?: boolean }[]
  panels?: Panel[]
}
interface Variable {
  name: string
  type: string
  query?: string | { query?: string }
  definition?: string
  allValue?: string | null
  current?: { value?: unknown }
  options?: { value?: unknown }[]
}
interface Dashboard {
  panels?: Panel[]
  templating?: { list?: Variable[] }
}

interface DashboardQuery {
  /** Panel title and refId, or `variable <name>`. */
  readonly where: string
  readonly raw: string
  /** PromQL to run; undefined when it cannot be built (then `problem` says why). */
  readonly promql: string | undefined
  readonly problem?: string
  /** Variable queries: the label whose values Grafana would list. */
  readonly label?: string
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function variableValues(vars: Variable[], namespace: string): Map<string, string> {
  const values = new Map<string, string>(Object.entries(GRAFANA_BUILTINS))
  for (const v of vars) {
    if (v.name === 'namespace') values.set(v.name, escapeRegex(namespace))
    else if (v.type === 'datasource') values.set(v.name, 'prometheus')
    else if (v.type === 'constant' || v.type === 'textbox') values.set(v.name, typeof v.query === 'string' ? v.query : String(v.current?.value ?? ''))
    else if (v.type === 'interval') values.set(v.name, String(v.current?.value ?? v.options?.[0]?.value ?? '1m').replace(/^\$__auto.*|^auto$/, '1m'))
    else values.set(v.name, v.allValue || '.*')
  }
  return values
}

/** Replaces $var, ${var}, ${var:format} and [[var]]; returns the unknown names too. */
function substitute(text: string, values: Map<string, string>): { text: string; unknown: string[] } {
  const unknown: string[] = []
  const out = text.replace(/\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c) as string
    const value = values.get(name)
    if (value === undefined) {
      unknown.push(whole)
      return whole
    }
    return value
  })
  return { text: out, unknown }
}

function dashboardQueries(dashboard: Dashboard, namespace: string): DashboardQuery[] {
  const vars = dashboard.templating?.list ?? []
  const values = variableValues(vars, namespace)
  const out: DashboardQuery[] = []
  const build = (where: string, raw: string, toPromql: (s: string) => { promql?: string; problem?: string; label?: string }): void => {
    const { text, unknown } = substitute(raw, values)
    if (unknown.length > 0) {
      out.push({ where, raw, promql: undefined, problem: `unknown Grafana variable(s) ${unknown.join(', ')}` })
      return
    }
    const r = toPromql(text)
    out.push({ where, raw, promql: r.promql, ...(r.problem ? { problem: r.problem } : {}), ...(r.label ? { label: r.label } : {}) })
  }
  for (const v of vars) {
    if (v.type !== 'query') continue
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? v.definition ?? '')
    build(`variable $${v.name}`, q, (s) => {
      const lv = /^\s*label_values\(\s*([\s\S]+?)\s*,\s*(\w+)\s*\)\s*$/.exec(s)
      if (lv) return { promql: `count by (${lv[2]}) (${lv[1]})`, label: lv[2] as string }
      const lvOnly = /^\s*label_values\(\s*(\w+)\s*\)\s*$/.exec(s)
      if (lvOnly) return { promql: `count by (${lvOnly[1]}) ({${lvOnly[1]}!=""})`, label: lvOnly[1] as string }
      const qr = /^\s*query_result\(([\s\S]+)\)\s*$/.exec(s)
      if (qr) return { promql: qr[1] as string }
      const mt = /^\s*metrics\(([\s\S]*)\)\s*$/.exec(s)
      if (mt) return { promql: `count by (__name__) ({__name__=~"${mt[1]?.trim() || '.+'}"})`, label: '__name__' }
      return { problem: `variable query form not understood: ${s}` }
    })
  }
  const walk = (panels: Panel[] | undefined): void => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr !== 'string' || t.expr.trim() === '') continue
        build(`panel "${p.title ?? '(untitled)'}" [${t.refId ?? '?'}]`, t.expr, (s) => ({ promql: s }))
      }
      walk(p.panels)
    }
  }
  walk(dashboard.panels)
  return out
}

const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'start', 'end'])

/** Metric names a query selects (a rough scan, for explaining an empty result only). */
function metricNamesIn(promql: string): string[] {
  const s = promql
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = new Set<string>()
  for (const m of s.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)) {
    const name = m[1] as string
    if (!PROMQL_WORDS.has(name.toLowerCase())) names.add(name)
  }
  return [...names]
}

// ---------------------------------------------------------------------------------------------
// The running processes.

const facts = chartFacts()
const SETUPS = [facts.serviceMonitor, facts.podMonitor]
const proms = new Map<string, PrometheusServer>()
let primary: RedisServer
let replica: RedisServer
let lone: RedisServer
let gateway: GatewayProcess | undefined
let releaseGateway: (() => void) | undefined
let configDir: string | undefined
let dataPort: number
let opsPort: number
let gatewayMetricsText = ''
let traffic: Traffic | undefined
let sse: { lines: EventLines; abort: AbortController } | undefined
const endpointOf = (s: RedisServer): string => `127.0.0.1:${s.port}`
let INSTANCES: Record<string, RedisServer[]>

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function opsMetrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text()
}

function gaugeValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    const close = line.lastIndexOf('}')
    const body = line.slice(name.length + 1, close)
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(close + 1).trim())
  }
  return undefined
}

/** Waits until `expr` returns at least one series on every Prometheus. */
async function seenByAll(expr: string, message: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      for (const p of proms.values()) if ((await p.samples(expr)).length === 0) return false
      return true
    },
    { timeoutMs, intervalMs: 250, message: `${message} (every Prometheus: ${expr})` },
  )
}

// ---------------------------------------------------------------------------------------------
// Traffic.

interface Tally {
  [statusAndCode: string]: number
}

class Traffic {
  private stopped = false
  private readonly loops: Promise<void>[] = []
  readonly tally: Tally = {}
  constructor(private readonly base: string) {}

  private async send(path: string, body: unknown): Promise<number> {
    let key: string
    let status = 0
    try {
      const res = await fetch(`${this.base}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      })
      status = res.status
      const text = await res.text()
      const code = status >= 400 ? (/"error":"([A-Z]+)/.exec(text)?.[1] ?? '') : ''
      key = `${status}${code ? ` ${code}` : ''}`
    } catch (error) {
      key = `failed: ${(error as Error).name}`
    }
    this.tally[key] = (this.tally[key] ?? 0) + 1
    return status
  }

  /** Runs `step(i)` in a loop until stop(); a little pause between steps, a longer one after an error. */
  loop(step: (i: number) => Promise<number[]>): void {
    this.loops.push(
      (async () => {
        for (let i = 0; !this.stopped; i++) {
          const statuses = await step(i)
          await sleep(statuses.every((s) => s > 0 && s < 500) ? 5 : 20)
        }
      })(),
    )
  }

  /** A mix on a P+R instance: writes, reads, pipelines, MULTI/EXEC, PUBLISH, group reads, Redis errors. */
  mixed(instance: string, worker: number): void {
    const base = `/v1/instances/${instance}`
    this.loop(async (i) => {
      const key = `${instance}:${worker}:${i % 50}`
      const out = [await this.send(base, ['SET', key, `v${i}`]), await this.send(base, ['GET', key])]
      if (i % 3 === 0) out.push(await this.send(`${base}/pipeline`, [['SET', `${key}:p`, 'x'], ['GET', `${key}:p`], ['INCR', `${instance}:n`]]))
      if (i % 5 === 0) out.push(await this.send(`${base}/multi-exec`, [['INCR', `${instance}:m`], ['GET', `${instance}:m`]]))
      if (i % 7 === 0) out.push(await this.send(base, ['PUBLISH', 'news', `${instance} ${i}`]))
      if (i % 4 === 0) out.push(await this.send('/v1/groups/web', ['GET', key]))
      // A Redis error reply (WRONGTYPE): a 400, outcome client_error.
      if (i % 11 === 0) out.push(await this.send(base, ['LPUSH', key, 'x']))
      return out
    })
  }

  reads(instance: string): void {
    this.loop(async (i) => [await this.send(`/v1/instances/${instance}`, ['GET', `orders:0:${i % 50}`])])
  }

  readsAndWrites(instance: string): void {
    this.loop(async (i) => [await this.send(`/v1/instances/${instance}`, ['SET', `lone:${i % 10}`, 'x']), await this.send(`/v1/instances/${instance}`, ['GET', `lone:${i % 10}`])])
  }

  /** One request whose body is bigger than limits.inflightBytes: 503 OVERLOADED (the connection is closed). */
  async overload(instance: string, bytes: number): Promise<void> {
    await this.send(`/v1/instances/${instance}`, ['SET', 'too-big', 'x'.repeat(bytes)])
  }

  async stop(): Promise<Tally> {
    this.stopped = true
    await Promise.all(this.loops)
    return this.tally
  }
}

/** The gateway's side of these connections still open (ss), as test/security/big-replies.test.ts reads it. */
async function gatewaySideOpen(clients: RawConnection[]): Promise<number> {
  const out = await new Promise<string>((resolve, reject) =>
    execFile('ss', ['-Htn', 'state', 'established', `( sport = :${dataPort} )`], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  )
  const ports = new Set(clients.map((c) => c.socket.localPort))
  return out
    .split('\n')
    .map((l) => Number(/:(\d+)\s*$/.exec(l.trim())?.[1]))
    .filter((p) => ports.has(p)).length
}

/**
 * A client that asks for 32 replies of 1 MiB and reads none: more than loopback socket buffers hold,
 * so the gateway closes it after limits.writeTimeout.
 */
async function slowClient(): Promise<void> {
  const c = await RawConnection.open(dataPort)
  try {
    c.socket.pause()
    // Seen open first, so that "closed" below is not a connection ss never listed.
    await waitFor(async () => (await gatewaySideOpen([c])) === 1, { timeoutMs: 5_000, intervalMs: 50, message: 'the non-reading client connected' })
    const request = head('GET', '/v1/instances/orders/get/big', { Connection: 'keep-alive', Authorization: `Bearer ${WRITE_TOKEN}` })
    for (let i = 0; i < 32; i++) c.write(request)
    await waitFor(async () => (await gatewaySideOpen([c])) === 0, { timeoutMs: 20_000, intervalMs: 100, message: 'the gateway to close the non-reading client' })
  } finally {
    c.close()
  }
}

// ---------------------------------------------------------------------------------------------

// A missing binary fails the file when it is collected (not a skip), before anything is started.
findPrometheus()

beforeAll(async () => {
  const t0 = performance.now()
  const phases: string[] = []
  const phase = (name: string): void => void phases.push(`${name} ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  primary = await startRedis()
  ;[replica, lone] = await Promise.all([startRedis({ replicaOf: primary }), startRedis()])
  await replica.waitForSync()
  await primary.client().set('big', 'x'.repeat(MiB))
  phase('redis')
  INSTANCES = { orders: [primary, replica], sessions: [primary, replica], cache: [replica], lone: [lone] }

  // The gateway, as a process.
  ;[dataPort, opsPort] = [await freePort(), await freePort()]
  configDir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-prom-test-'))
  const configFile = path.join(configDir, 'gateway.yaml')
  const url = (s: RedisServer): string => `redis://127.0.0.1:${s.port}`
  await writeFile(
    configFile,
    stringify({
      listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` },
      discovery: {
        static: {
          instances: [
            { name: 'orders', endpoints: [url(primary), url(replica)], annotations: { [`${A}read-policy`]: 'prefer-replica', [`${A}hedge-after`]: '20ms', [`${A}groups`]: 'web' } },
            { name: 'sessions', endpoints: [url(primary), url(replica)], annotations: { [`${A}read-policy`]: 'prefer-replica', [`${A}groups`]: 'web' } },
            { name: 'cache', endpoints: [url(replica)], annotations: { [`${A}read-policy`]: 'replica' } },
            // A bad value on purpose: discovery_events_total{outcome="bad_annotation"} (the weight falls back to 100).
            { name: 'lone', endpoints: [url(lone)], annotations: { [`${A}weight`]: 'heavy' } },
          ],
        },
      },
      groups: { web: { strategy: 'round-robin' } },
      auth: {
        tokens: [
          { name: 'admin', token: ADMIN_TOKEN, access: 'admin', targets: ['*'] },
          { name: 'writer', token: WRITE_TOKEN, access: 'write', targets: ['*'] },
        ],
      },
      redis: { commandTimeout: '500ms', connectTimeout: '300ms' },
      health: { interval: '500ms', timeout: '1s' },
      limits: { inflightBytes: '8MiB', writeTimeout: '1s' },
      log: { level: 'warn' },
      shutdown: { delay: '0s', timeout: '2s' },
    }),
  )
  const gw = spawnGateway(configFile)
  gateway = gw
  const pid = gw.child.pid
  if (pid !== undefined) {
    const killNowSync = (): void => {
      try {
        if (!gw.done) process.kill(pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    releaseGateway = guardChild({ killNowSync }, pid)
    void gw.exited.then(() => releaseGateway?.())
  }
  await waitFor(
    async () => {
      if (gw.done) throw new Error(`the gateway exited\nstdout: ${gw.stdout().slice(-3000)}\nstderr: ${gw.stderr().slice(-3000)}`)
      return (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status === 200
    },
    { timeoutMs: 30_000, intervalMs: 100, message: 'the gateway to be ready' },
  )
  await waitFor(
    async () => {
      const text = await opsMetrics()
      return Object.entries(INSTANCES).every(([instance, servers]) =>
        servers.every((s) => gaugeValue(text, 'redis_gateway_endpoint_up', { redis_instance: instance, redis_endpoint: endpointOf(s) }) === 1),
      )
    },
    { timeoutMs: 15_000, intervalMs: 100, message: 'every endpoint of every instance up in the gateway' },
  )
  phase('gateway')

  // Prometheus, once per scrape set-up.
  const target = `127.0.0.1:${opsPort}`
  await Promise.all(
    SETUPS.map(async (setup) => {
      const job = setup.labels['job'] as string
      const prom = await startPrometheus({
        config: {
          global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
          scrape_configs: [scrapeConfig(setup, target, facts.metricsPath)],
        },
        rules: { 'rules.yaml': { groups: rulesFor(facts.ruleGroups, facts.serviceMonitor.labels['job'] as string, job) } },
      })
      proms.set(setup.kind, prom)
    }),
  )
  await waitFor(
    async () => {
      for (const p of proms.values()) {
        const targets = await p.targets()
        if (targets.length !== 1 || targets[0]?.health !== 'up') return false
      }
      return true
    },
    { timeoutMs: 15_000, intervalMs: 200, message: 'each Prometheus to scrape the gateway successfully' },
  )
  phase('prometheus')
  // The scenario below waits on gateway labels in Prometheus: with labels renamed by the scrape
  // (exported_*), it would only time out; say why at once instead (the label test has the details).
  for (const [kind, p] of proms) {
    const renamed = new Set((await p.samples('{__name__=~"redis_gateway_.+"}')).flatMap((s) => Object.keys(s.metric).filter((l) => l.startsWith('exported_'))))
    if (renamed.size > 0) throw new Error(`${kind}: Prometheus renamed gateway labels that clash with target labels: ${[...renamed].join(', ')}`)
  }
  const started = performance.now()

  // Traffic, an SSE stream kept open, a request over the in-flight budget, a client that never reads.
  traffic = new Traffic(`http://127.0.0.1:${dataPort}`)
  for (let w = 0; w < 3; w++) traffic.mixed('orders', w)
  for (let w = 0; w < 2; w++) traffic.mixed('sessions', w)
  for (let w = 0; w < 2; w++) traffic.reads('cache')
  traffic.readsAndWrites('lone')
  const abort = new AbortController()
  const res = await fetch(`http://127.0.0.1:${dataPort}/v1/instances/orders/subscribe/news`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE_TOKEN}`, accept: 'text/event-stream' },
    signal: abort.signal,
  })
  expect(res.status).toBe(200)
  sse = { lines: readEventLines(res.body as ReadableStream<Uint8Array>, abort.signal), abort }
  // Awaited below; its failure is kept until then rather than left unhandled meanwhile.
  const slow = slowClient().then(
    () => undefined,
    (error: unknown) => error,
  )
  await seenByAll('sum(increase(redis_gateway_requests_total{redis_instance="orders", outcome="success"}[5s])) > 0', 'traffic')
  phase('traffic seen')

  // The lone instance's only Redis goes away: NOENDPOINT from then on.
  await lone.kill('SIGKILL')
  await seenByAll(`redis_gateway_endpoint_up{redis_instance="lone"} == 0`, 'the lone endpoint down')
  phase('lone down')

  // The replica stall.
  const stalledAt = performance.now()
  replica.pause()
  const r = endpointOf(replica)
  await seenByAll(`redis_gateway_endpoint_up{redis_endpoint="${r}"} == 0`, 'the stalled replica down')
  const remaining = STALL_MIN_MS - (performance.now() - stalledAt)
  if (remaining > 0) await sleep(remaining)
  const stallMs = performance.now() - stalledAt
  replica.resume()
  phase('resumed')
  await seenByAll(`min(redis_gateway_endpoint_up{redis_endpoint="${r}"}) == 1`, 'the replica up again')
  await seenByAll(`max(redis_gateway_breaker_state{redis_endpoint="${r}"}) == 0`, 'the replica breaker closed')
  await seenByAll('sum(increase(redis_gateway_requests_total{redis_instance="cache", outcome="success"}[5s])) > 0', 'cache reads served again')
  const slowFailed = await slow
  if (slowFailed !== undefined) throw slowFailed
  // After the slow client: its replies and this body must not compete for limits.inflightBytes.
  await traffic.overload('sessions', 9 * MiB)
  await waitFor(() => sse?.lines.events.some((e) => e.startsWith('message,news,')), { message: 'a published message on the SSE stream' })
  gatewayMetricsText = await opsMetrics()
  // What the scenario made happen, by counter (printed, not asserted: the queries below are the test).
  const counted = (name: string): number =>
    gatewayMetricsText.split('\n').filter((l) => l.startsWith(`${name}{`)).reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
  const counters = ['retries_total', 'hedges_total', 'budget_exhausted_total', 'breaker_transitions_total', 'endpoint_transitions_total', 'slow_client_disconnects_total']
  console.log(`[prometheus] gateway counters: ${counters.map((c) => `${c} ${counted(`redis_gateway_${c}`)}`).join(', ')}`)
  console.log(
    `[prometheus] set-up ${((started - t0) / 1000).toFixed(1)} s, scenario ${((performance.now() - started) / 1000).toFixed(1)} s ` +
      `(replica stopped ${(stallMs / 1000).toFixed(1)} s; ${phases.join(', ')}); traffic so far ${JSON.stringify(traffic.tally)}`,
  )
}, 120_000)

afterAll(async () => {
  const tally = await traffic?.stop()
  if (tally) console.log(`[prometheus] traffic: ${JSON.stringify(tally)}`)
  sse?.abort.abort()
  if (gateway && !gateway.done) {
    gateway.child.kill('SIGKILL')
    await gateway.exited
  }
  releaseGateway?.()
  await Promise.all([...proms.values()].map((p) => p.stop()))
  if (replica?.isPaused) replica.resume()
  await Promise.all([primary, replica, lone].filter(Boolean).map((s) => s.stop()))
  if (configDir) await rm(configDir, { recursive: true, force: true })
}, 30_000)

// ---------------------------------------------------------------------------------------------

interface Row {
  readonly where: string
  readonly query: string
  readonly outcome: string
}

/**
 * The metrics a query names that have no series in this Prometheus, each with whether the gateway
 * exports it at all. Checked for every query, not only empty ones: `... or vector(0)` returns data
 * even when the metric before it is misspelled or never appears.
 */
async function metricsWithoutSeries(prom: PrometheusServer, promql: string): Promise<string[]> {
  const notes: string[] = []
  for (const name of metricNamesIn(promql)) {
    if ((await prom.samples(`count({__name__="${name}"})`)).length > 0) continue
    const declared = new RegExp(`^# (HELP|TYPE) ${escapeRegex(name.replace(/_(bucket|sum|count)$/, ''))} `, 'm').test(gatewayMetricsText)
    notes.push(`${name}: ${declared ? 'declared by the gateway but no series yet (no event)' : 'not exported by this gateway'}`)
  }
  return notes
}

function valueOf(s: PromSample): string | undefined {
  return s.value?.[1] ?? s.values?.at(-1)?.[1]
}

describe.each(SETUPS.map((s) => ({ kind: s.kind, job: s.labels['job'] as string, setup: s })))(
  'Prometheus scraping the gateway as the chart\'s $kind (job $job)',
  ({ kind, job, setup }) => {
    const prom = (): PrometheusServer => {
      const p = proms.get(kind)
      if (!p) throw new Error(`no Prometheus for ${kind}`)
      return p
    }

    it('every panel and variable query of the shipped dashboard returns data, from series of every metric it names', async () => {
      const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
      const queries = dashboardQueries(dashboard, facts.namespace)
      expect(queries.filter((q) => !q.where.startsWith('variable')).length, 'panel queries found in the dashboard').toBeGreaterThan(0)
      const rows: Row[] = []
      const notes: string[] = []
      for (const q of queries) {
        let outcome: string
        if (q.promql === undefined) outcome = `not run: ${q.problem}`
        else {
          const r = await prom().query(q.promql)
          if (r.status !== 'success') outcome = `error: ${r.errorType}: ${r.error}`
          else {
            const missing = await metricsWithoutSeries(prom(), q.promql)
            if (r.result.length === 0) {
              outcome = `no data (${missing.length > 0 ? missing.join('; ') : 'every metric it names has series: its selectors or arithmetic leave nothing'})`
            } else if (missing.length > 0) outcome = `data only from a fallback such as "or vector(0)": no series of ${missing.join('; ')}`
            else if (q.label && !r.result.some((s) => (s.metric[q.label as string] ?? '') !== '')) outcome = `no value for label ${q.label}`
            else outcome = 'ok'
          }
          if (outcome === 'ok') {
            const vals = r.result.map(valueOf)
            if (vals.every((v) => v === 'NaN')) notes.push(`${q.where}: only NaN`)
            else if (vals.every((v) => v === '0' || v === 'NaN')) notes.push(`${q.where}: only 0`)
          }
        }
        rows.push({ where: q.where, query: q.promql ?? q.raw, outcome })
      }
      console.log(`[prometheus ${kind}] ${rows.filter((r) => r.outcome === 'ok').length}/${rows.length} dashboard queries returned data`)
      if (notes.length > 0) console.log(`[prometheus ${kind}] data, but nothing happening (fine, noted): ${notes.join('; ')}`)
      for (const row of rows) expect.soft(row.outcome, `${kind} job="${job}": ${row.where}: ${row.query}`).toBe('ok')
    })

    it('series carry the target labels the Operator sets, never an exported_ label, and redis_instance / redis_endpoint where declared', async () => {
      const series = await prom().samples(`{job="${job}"}`)
      expect(series.length).toBeGreaterThan(100)
      const exported = [...new Set(series.flatMap((s) => Object.keys(s.metric).filter((l) => l.startsWith('exported_')).map((l) => `${s.metric['__name__']}: ${l}`)))]
      expect(exported, 'labels renamed by Prometheus because the gateway sent a label it sets itself').toEqual([])
      const expected = { ...setup.labels, instance: `127.0.0.1:${opsPort}` }
      const wrongTargetLabels = [
        ...new Set(
          series.flatMap((s) =>
            Object.entries(expected)
              .filter(([k, v]) => s.metric[k] !== v)
              .map(([k, v]) => `${s.metric['__name__']}: ${k}=${JSON.stringify(s.metric[k])}, expected ${JSON.stringify(v)}`),
          ),
        ),
      ]
      expect(wrongTargetLabels).toEqual([])
      if (!('service' in setup.labels)) expect(series.filter((s) => 'service' in s.metric).map((s) => s.metric['__name__'])).toEqual([])

      // From the gateway's registry: which metrics declare redis_instance / redis_endpoint.
      const declared = new Map<string, Set<string>>()
      for (const m of new GatewayMetrics({ defaultMetrics: false }).registry.getMetricsAsArray()) {
        const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames?: string[] }
        for (const n of type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name]) declared.set(n, new Set(labelNames ?? []))
      }
      const instances = new Set(Object.keys(INSTANCES))
      const endpoints = new Set(Object.values(INSTANCES).flat().map(endpointOf))
      const problems: string[] = []
      for (const s of series) {
        const name = s.metric['__name__'] as string
        const labels = declared.get(name)
        const inst = s.metric['redis_instance']
        const ep = s.metric['redis_endpoint']
        if (inst !== undefined && !instances.has(inst)) problems.push(`${name}: redis_instance=${inst} is no configured instance`)
        if (ep !== undefined && !endpoints.has(ep)) problems.push(`${name}: redis_endpoint=${ep} is no configured endpoint`)
        if (labels?.has('redis_endpoint') && (ep === undefined || inst === undefined)) problems.push(`${name}: no redis_endpoint/redis_instance on ${JSON.stringify(s.metric)}`)
        if ((inst !== undefined || ep !== undefined) && labels !== undefined && !labels.has(inst !== undefined ? 'redis_instance' : 'redis_endpoint')) {
          problems.push(`${name}: carries a label its registry entry does not declare`)
        }
      }
      expect([...new Set(problems)]).toEqual([])
      // Every instance and endpoint pair has its series.
      for (const [instance, servers] of Object.entries(INSTANCES)) {
        expect.soft(series.some((s) => s.metric['__name__'] === 'redis_gateway_requests_total' && s.metric['redis_instance'] === instance), `requests_total for ${instance}`).toBe(true)
        for (const srv of servers) {
          const found = series.some((s) => s.metric['__name__'] === 'redis_gateway_endpoint_up' && s.metric['redis_instance'] === instance && s.metric['redis_endpoint'] === endpointOf(srv))
          expect.soft(found, `endpoint_up for ${instance} ${endpointOf(srv)}`).toBe(true)
        }
      }
    })

    it('the chart\'s alert rules for this job evaluate without error, and their selectors match the scraped series', async () => {
      const rules = await waitFor(
        async () => {
          const all = (await prom().rules()).flatMap((g) => g.rules)
          return all.length > 0 && all.every((r) => r.health !== 'unknown' && !r.lastEvaluation.startsWith('0001-')) ? all : null
        },
        { timeoutMs: 15_000, intervalMs: 250, message: 'every rule evaluated once' },
      )
      const shipped = facts.ruleGroups.flatMap((g) => g.rules)
      expect(rules.map((r) => r.name).sort()).toEqual(shipped.map((r) => r.alert ?? r.record).sort())
      for (const r of rules) expect.soft({ rule: r.name, health: r.health, lastError: r.lastError ?? '' }).toEqual({ rule: r.name, health: 'ok', lastError: '' })

      // Each vector selector of each rule, run alone, finds this job's series.
      for (const r of rules) {
        const selectors = [...r.query.matchAll(/\b([a-zA-Z_:][\w:]*)\{([^}]*)\}/g)].map((m) => `${m[1]}{${m[2]}}`)
        expect(selectors.length, `${r.name}: no selector found in ${r.query}`).toBeGreaterThan(0)
        for (const sel of selectors) {
          expect.soft(/\bjob="([^"]*)"/.exec(sel)?.[1], `${r.name}: job of ${sel}`).toBe(job)
          expect.soft(/\bnamespace="([^"]*)"/.exec(sel)?.[1], `${r.name}: namespace of ${sel}`).toBe(facts.namespace)
          expect.soft((await prom().samples(sel)).length, `${r.name}: ${sel} selects no series`).toBeGreaterThan(0)
        }
      }
    })
  },
)

describe('the rule selectors of the shipped PrometheusRule', () => {
  it('name the ops Service the chart renders (the ServiceMonitor job) and the release namespace', () => {
    const jobs = new Set(facts.ruleGroups.flatMap((g) => g.rules).flatMap((r) => [...r.expr.matchAll(/\bjob="([^"]*)"/g)].map((m) => m[1])))
    const namespaces = new Set(facts.ruleGroups.flatMap((g) => g.rules).flatMap((r) => [...r.expr.matchAll(/\bnamespace="([^"]*)"/g)].map((m) => m[1])))
    expect([...jobs]).toEqual([facts.serviceMonitor.labels['job']])
    expect([...namespaces]).toEqual([facts.namespace])
  })
})
