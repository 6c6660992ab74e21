// The Grafana dashboard shipped with the chart (charts/redis-gateway/dashboards/redis-gateway.json)
// must query what the gateway really exports: every PromQL expression may
// name only metrics registered in src/telemetry/metrics.ts (read from its registry, not a copied
// list; Node.js's default process_* and nodejs_* metrics included), and only labels those metrics
// carry, or that Prometheus adds when it scrapes a pod. It must also be right under stress: counts
// of endpoints count each once, ratios read 0 without traffic, and the incident panels are there.
// test/prometheus/ runs every query against a real Prometheus scraping a real gateway.

import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { GatewayMetrics } from '../src/telemetry/metrics.js'

const dashboardFile = new URL('../charts/redis-gateway/dashboards/redis-gateway.json', import.meta.url)
const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as Dashboard

interface Target {
  expr?: string
  legendFormat?: string
  refId?: string
  datasource?: { type?: string; uid?: string }
}
interface Panel {
  id?: number
  type: string
  title?: string
  description?: string
  datasource?: { type?: string; uid?: string }
  gridPos?: { h: number; w: number; x: number; y: number }
  targets?: Target[]
  panels?: Panel[]
}
interface Dashboard {
  uid?: string
  title?: string
  schemaVersion?: number
  panels: Panel[]
  templating: { list: { name: string; type: string; query?: string | { query: string }; definition?: string }[] }
}

/**
 * Labels Prometheus attaches to every series it scrapes from a pod (job and the Prometheus
 * Operator's target labels). `instance` and `endpoint` are target labels too, but they are left
 * out on purpose: before 0.2 the gateway's own labels had those names (now redis_instance and
 * redis_endpoint), so a query still grouping by them is the old contract and must fail here.
 */
const TARGET_LABELS = new Set(['job', 'namespace', 'pod', 'service', 'container'])
/** Names a scrape (Prometheus or the Prometheus Operator) sets on a target: no gateway label may use one. */
const SCRAPE_LABELS = new Set([...TARGET_LABELS, 'instance', 'endpoint'])

interface MetricInfo {
  type: string
  labels: Set<string>
}

/** name -> type and label names, from the gateway's real registry. */
function registeredMetrics(): Map<string, MetricInfo> {
  const m = new GatewayMetrics()
  const out = new Map<string, MetricInfo>()
  for (const metric of m.registry.getMetricsAsArray()) {
    const { name, type, labelNames } = metric as unknown as { name: string; type: string; labelNames?: string[] }
    out.set(name, { type, labels: new Set(labelNames ?? []) })
  }
  return out
}

/** A metric name the gateway registers: its own, or Node.js's default ones. */
const METRIC_NAME = /\b((?:redis_gateway|process|nodejs)_[a-zA-Z0-9_]*)\b/g

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless'])

/** One PromQL expression's problems (empty when it only uses real metrics and labels). */
function checkExpr(expr: string, metrics: Map<string, MetricInfo>): { problems: string[]; metrics: string[]; labels: Set<string> } {
  const problems: string[] = []
  const used: { name: string; series: string; info: MetricInfo }[] = []
  // Grafana's interval variables are durations; the rest of $vars only appear inside strings.
  const text = expr.replace(/\$__(rate_interval|interval|range)/g, '5m')

  // Every identifier with the gateway's prefix (or Node's) must be a registered metric (or a histogram series).
  for (const m of text.matchAll(METRIC_NAME)) {
    const series = m[1] as string
    let name = series
    let info = metrics.get(series)
    if (!info) {
      const base = /^(.*)_(bucket|sum|count)$/.exec(series)
      const baseInfo = base ? metrics.get(base[1] as string) : undefined
      if (base && baseInfo && (baseInfo.type === 'histogram' || baseInfo.type === 'summary')) {
        if (base[2] === 'bucket' && baseInfo.type !== 'histogram') problems.push(`${series}: a summary has no buckets`)
        name = base[1] as string
        info = baseInfo
      }
    } else if (info.type === 'histogram') {
      problems.push(`${series} is a histogram: query ${series}_bucket, _sum or _count`)
    }
    if (!info) {
      problems.push(`${series} is not a metric the gateway registers`)
      continue
    }
    used.push({ name, series, info })
  }
  if (!used.some((u) => u.name.startsWith('redis_gateway_'))) problems.push('names no redis_gateway_ metric')

  const labelsOf = (u: (typeof used)[number]): Set<string> =>
    new Set([...u.info.labels, ...TARGET_LABELS, ...(u.series.endsWith('_bucket') ? ['le'] : [])])

  // Matchers inside each selector's braces must be labels of that metric.
  for (const m of text.matchAll(/\b((?:redis_gateway|process|nodejs)_[a-zA-Z0-9_]*)\s*\{([^}]*)\}/g)) {
    const u = used.find((x) => x.series === m[1])
    if (!u) continue
    for (const lm of (m[2] as string).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"/g)) {
      const label = lm[1] as string
      if (!labelsOf(u).has(label)) problems.push(`${u.series}{${label}=...}: ${u.name} has no label "${label}" (it has: ${[...u.info.labels].join(', ') || 'none'})`)
    }
  }
  // Labels in by/without/on/ignoring/group_* must exist on every metric of the expression.
  const grouped = new Set<string>()
  for (const m of text.matchAll(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const raw of (m[2] as string).split(',')) {
      const label = raw.trim()
      if (!label) continue
      grouped.add(label)
      // Vector matching on the scrape target itself (job, instance) is what ties a pod's
      // process_* series to its gateway series; grouping by the target's instance is not.
      if ((m[1] === 'on' || m[1] === 'ignoring') && (label === 'job' || label === 'instance')) continue
      for (const u of used) {
        if (!labelsOf(u).has(label)) problems.push(`${m[1]} (${label}): ${u.name} has no label "${label}"`)
      }
    }
  }
  // Bare identifiers that are neither functions, keywords, metrics nor labels would be metrics Prometheus does not know.
  const stripped = text.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}').replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
  for (const m of stripped.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w.])(\s*\()?/g)) {
    const id = m[1] as string
    if (m[2] !== undefined || PROMQL_KEYWORDS.has(id) || metrics.has(id) || id.startsWith('redis_gateway_') || /^[0-9]/.test(id)) continue
    if (/^\d+[smhdwy]$/.test(id)) continue
    problems.push(`"${id}" is not a gateway metric`)
  }
  return { problems, metrics: [...new Set(used.map((u) => u.name))], labels: grouped }
}

/** Whether `where` ("panel \"<title>\" A") names a stat panel. */
function isStat(where: string): boolean {
  return queryPanels.some((p) => p.type === 'stat' && where.startsWith(`panel "${p.title}"`))
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
}

const metrics = registeredMetrics()
const panels = allPanels(dashboard.panels)
const queryPanels = panels.filter((p) => p.type !== 'row')
const exprs: { where: string; expr: string; legend?: string }[] = [
  ...queryPanels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId ?? ''}`, expr: t.expr ?? '', ...(t.legendFormat ? { legend: t.legendFormat } : {}) })),
  ),
  ...dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => {
      const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '')
      // label_values(<selector>, <label>): the selector must be valid and the label must be on its metric.
      const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q)
      return { where: `variable $${v.name}`, expr: m ? `count by (${m[2]}) (${m[1]})` : q }
    }),
]

describe('Grafana dashboard', () => {
  test('the checker finds unknown metrics, unknown labels and bare histograms (so passing means something)', () => {
    const bad = [
      ['rate(redis_gateway_request_total[5m])', 'not a metric the gateway registers'],
      ['sum by (pod) (rate(redis_gateway_requests_total{shard="a"}[5m]))', 'no label "shard"'],
      ['sum by (endpoint) (rate(redis_gateway_requests_total[5m]))', 'no label "endpoint"'],
      ['histogram_quantile(0.9, rate(redis_gateway_request_duration_seconds[5m]))', 'is a histogram'],
      ['sum(redis_gateway_inflight_requests{instance="orders"})', 'no label "instance"'],
      ['sum(rate(http_requests_total[5m]))', 'not a gateway metric'],
    ] as const
    for (const [expr, message] of bad) {
      expect(checkExpr(expr, metrics).problems.join('\n'), expr).toContain(message)
    }
    expect(checkExpr('sum by (redis_instance, le) (rate(redis_gateway_request_duration_seconds_bucket{namespace=~"$ns"}[$__rate_interval]))', metrics).problems).toEqual([])
    expect(checkExpr('sum by (instance, le) (rate(redis_gateway_request_duration_seconds_bucket[5m]))', metrics).problems.join('\n')).toContain('no label "instance"')
  })

  test('no metric has a label a scrape overwrites (instance, job, endpoint, pod, namespace, service, container)', () => {
    const clashes = [...metrics].flatMap(([name, info]) => [...info.labels].filter((l) => SCRAPE_LABELS.has(l)).map((l) => `${name}{${l}}`))
    expect(clashes).toEqual([])
  })

  test('every expression names only registered metrics and labels they have', () => {
    expect(exprs.length).toBeGreaterThan(20)
    const problems = exprs.flatMap((e) => checkExpr(e.expr, metrics).problems.map((p) => `${e.where}: ${p}\n  ${e.expr}`))
    expect(problems).toEqual([])
  })

  test('legends only name labels the query keeps', () => {
    const problems: string[] = []
    for (const e of exprs) {
      if (!e.legend) continue
      const { labels } = checkExpr(e.expr, metrics)
      for (const m of e.legend.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) {
        if (!labels.has(m[1] as string)) problems.push(`${e.where}: legend {{${m[1]}}} but the query keeps only (${[...labels].join(', ')})`)
      }
    }
    expect(problems).toEqual([])
  })

  test('shows every metric the README lists', () => {
    // The metric names of the README's "Ops plane" section; the registry check above keeps them real.
    const listed = [
      'requests_total', // request rate, error rate
      'request_duration_seconds', // latency percentiles per instance
      'upstream_duration_seconds',
      'inflight_requests',
      'endpoint_up', // endpoint health
      'breaker_state', // breaker states
      'retries_total', // retries
      'hedges_total', // hedges
      'replica_lag_bytes', // replica lag
      'discovery_events_total', // discovery health
      'discovery_last_sync_timestamp_seconds',
      'routing_table_instances',
    ].map((n) => `redis_gateway_${n}`)
    for (const name of listed) expect(metrics.has(name), `${name} is registered`).toBe(true)
    const shown = new Set(exprs.flatMap((e) => checkExpr(e.expr, metrics).metrics))
    expect(listed.filter((n) => !shown.has(n))).toEqual([])
    // Latency percentiles per instance: quantiles grouped by redis_instance.
    const perInstance = exprs.filter((e) => /histogram_quantile\(0\.99, sum by \(redis_instance, le\) \(rate\(redis_gateway_request_duration_seconds_bucket/.test(e.expr))
    expect(perInstance.length).toBeGreaterThan(0)
    // Breaker panel maps 0/1/2 to closed/half-open/open as the breaker_state gauge defines them.
    const breaker = JSON.stringify(queryPanels.find((p) => (p.targets ?? []).some((t) => t.expr?.includes('breaker_state{')) && p.type === 'state-timeline'))
    for (const text of ['"0":{"text":"closed"', '"1":{"text":"half-open"', '"2":{"text":"open"']) expect(breaker).toContain(text)
  })

  test('counts each endpoint once and reads 0 where a ratio or count could have no data', () => {
    const problems: string[] = []
    for (const e of exprs) {
      // An endpoint shared by two instances, or seen by every gateway pod, is one endpoint.
      if (/\bcount\(/.test(e.expr) && !/\bcount\(max by \(redis_endpoint\)/.test(e.expr)) problems.push(`${e.where} counts without deduplicating endpoints`)
      // A division with no fallback shows "No data" (or NaN) for no traffic instead of 0.
      if (/\s\/\s/.test(e.expr) && !/> 0\)\)\s*or\s/.test(e.expr)) problems.push(`${e.where} divides without a fallback for an empty denominator`)
      if (/^(count|sum)\(/.test(e.expr) && e.where.startsWith('panel') && isStat(e.where) && !/ or (vector\(0\)|\()/.test(e.expr)) {
        problems.push(`${e.where} has no "or vector(0)" for when nothing matches`)
      }
    }
    expect(problems).toEqual([])
  })

  test('has the panels an operator asks for during an incident', () => {
    const shown = (re: RegExp): string[] => exprs.filter((e) => re.test(e.expr)).map((e) => e.where)
    const wanted: Record<string, RegExp> = {
      'error ratio by instance': /sum by \(redis_instance\) \(rate\(redis_gateway_requests_total\{[^}]*outcome="server_error"/,
      'p99 by instance': /histogram_quantile\(0\.99, sum by \(redis_instance, le\)/,
      'overload rejections': /code="OVERLOADED"/,
      'retry and hedge budget exhaustion': /redis_gateway_budget_exhausted_total/,
      'open SSE streams': /redis_gateway_sse_streams/,
      'slow-client disconnects': /redis_gateway_slow_client_disconnects_total/,
      failovers: /redis_gateway_role_changes_total\{[^}]*to="primary"/,
      'breaker opens between scrapes': /increase\(redis_gateway_breaker_transitions_total/,
      'event-loop lag': /nodejs_eventloop_lag_p99_seconds/,
      CPU: /rate\(process_cpu_seconds_total/,
      memory: /process_resident_memory_bytes/,
    }
    const missing = Object.entries(wanted).filter(([, re]) => shown(re).length === 0).map(([what]) => what)
    expect(missing).toEqual([])
  })

  test('is a well-formed dashboard for the Grafana sidecar', () => {
    expect(dashboard.uid).toBe('redis-gateway')
    expect(dashboard.title).toBeTruthy()
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36)
    const ids = panels.map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    const variables = new Set(dashboard.templating.list.map((v) => v.name))
    expect([...variables].sort()).toEqual(['datasource', 'instance', 'namespace'])
    for (const p of queryPanels) {
      // The data source is a variable: no uid of someone's Grafana baked in.
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' })
      expect(p.description, `panel "${p.title}" has a description`).toBeTruthy()
      expect((p.targets ?? []).length, p.title).toBeGreaterThan(0)
      const g = p.gridPos
      expect(g && g.x >= 0 && g.w > 0 && g.x + g.w <= 24, `panel "${p.title}" fits the 24-column grid`).toBe(true)
    }
    for (const e of exprs) {
      for (const m of e.expr.matchAll(/\$\{?([a-zA-Z_][a-zA-Z0-9_]*)/g)) {
        const v = m[1] as string
        if (!v.startsWith('__')) expect(variables.has(v), `${e.where} uses $${v}`).toBe(true)
      }
    }
  })
})
