// Counters, gauges and a histogram for the metrics with many series: the three updated on every
// request and every metric with a series per instance or per endpoint (~160,000 series at 5,000
// instances, most of them 0). They sit on the gateway's prom-client Registry like its own metrics,
// but keep and print their series themselves, because prom-client's cost grows with them: it
// validates and hashes a label object on every update (~2 us of a 24 us GET, bench/README.md),
// takes ~3 us and ~350 bytes per series created, and ~4 us per series printed, a whole scrape in one
// turn (issue 21). Here:
//  - a series is found through one Map per label, keyed by the label strings themselves
//    (long-lived names whose hashes V8 caches), and updated in place;
//  - the series that exist at 0 from the moment an instance or endpoint appears ("zero series":
//    alerts divide by them, rate() counts their first event) are not stored until they count
//    something: start() marks the instance or endpoint, and the printer lists them from the
//    metric's fixed list (`zeros`);
//  - exposition() prints in chunks, so a scrape (metrics-registry.ts) can yield to the event loop
//    between them, building each label pair once per Map it keys rather than keeping every series'
//    text (16 MB at 5,000 instances).
// get() gives prom-client the same content (getMetricsAsJSON(), its own metrics()).

import type { Registry } from 'prom-client'

interface MetricData {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram'
  readonly values: { labels: Record<string, string | number>; value: number; metricName?: string }[]
  readonly aggregator: 'sum'
}

type Node<S> = Map<string, Node<S> | S>

/**
 * Where a start (an instance, or an instance and an endpoint) has no series stored yet: one shared
 * empty Map, so a start costs one Map entry, not a Map. Never written to: the first series stored
 * under it gets a Map of its own. (Plain Maps throughout, this one told apart by identity: marking
 * starts with a Map subclass made the lookups of inc() and observe() polymorphic, 1.5x slower.)
 */
const NOTHING_STORED: Node<never> = new Map()

/** One series as the printer walks them; the same object each time (copy `values` to keep them). */
interface Visit<S> {
  series: S
  /** Its label pairs as printed: `a="x",b="y"`. */
  labels: string
  /** Its label values, in labelNames order. */
  readonly values: string[]
}

export interface HotMetricOptions {
  name: string
  help: string
  labelNames: readonly string[]
  registry: Registry
  /**
   * The zero series: label values after the ones start() takes, one array per series, e.g.
   * [['open'], ['closed']] for start(instance, endpoint) of a metric labelled instance, endpoint, to.
   */
  zeros?: readonly (readonly string[])[]
}

export abstract class HotMetric<S extends object = object> {
  readonly name: string
  readonly help: string
  readonly labelNames: readonly string[]
  readonly aggregator = 'sum' as const
  /** `# HELP` and `# TYPE` lines as prom-client prints them. */
  readonly header: string
  private root: Node<S> = new Map()
  /** The Maps of starts that have series stored (those with none are NOTHING_STORED). */
  private started = new WeakSet<Node<S>>()
  private readonly zeros: readonly (readonly string[])[]
  /** Per zero series, its label pairs after the started ones: `,to="open"`. */
  private readonly zeroLabels: readonly string[]
  /** How many label values start() takes. */
  private readonly startDepth: number
  /** What a zero series not stored prints (never updated). */
  private zeroSeries: S | null = null

  constructor(
    o: HotMetricOptions,
    readonly type: MetricData['type'],
  ) {
    this.name = o.name
    this.help = o.help
    this.labelNames = o.labelNames
    const n = o.labelNames.length
    if (n < 1 || n > 5) throw new Error(`${o.name}: 1 to 5 labels`)
    this.zeros = o.zeros ?? []
    const given = this.zeros[0]?.length ?? 0
    this.startDepth = n - given
    if (this.zeros.length > 0 && (given < 1 || this.startDepth < 1 || this.startDepth > 2 || this.zeros.some((z) => z.length !== given))) {
      throw new Error(`${o.name}: every zero series gives the same labels, all but the first one or two`)
    }
    this.zeroLabels = this.zeros.map((z) => z.map((v, i) => `,${pair(o.labelNames[this.startDepth + i]!, v)}`).join(''))
    this.header = `# HELP ${escape(o.name)} ${escape(o.help)}\n# TYPE ${escape(o.name)} ${type}\n`
    o.registry.registerMetric(this as never)
  }

  protected abstract create(): S
  /** Appends the series' exposition lines (each ending in '\n') to `out`; returns how many. `labels`: its label pairs as printed. */
  protected abstract print(s: S, labels: string, out: string[]): number
  /** The series' values as prom-client's get() gives them. */
  protected abstract values(s: S, labels: Record<string, string>, out: MetricData['values']): void

  private get zero(): S {
    return (this.zeroSeries ??= this.create())
  }

  /**
   * The last series found and its label values: consecutive requests mostly carry the same labels
   * (one instance, endpoint, class and outcome), and five string comparisons cost less than the
   * up to five Map lookups below (~1,000 instructions per request over three metrics).
   */
  private last: { a: string; b: string; c: string; d: string; e: string; leaf: S } | null = null

  /** The series for these label values (in labelNames order; extra arguments are ignored). */
  protected find(a: string, b = '', c = '', d = '', e = ''): S {
    const last = this.last
    if (last !== null && last.a === a && last.b === b && last.c === c && last.d === d && last.e === e) return last.leaf
    const leaf = this.lookup(a, b, c, d, e)
    this.last = { a, b, c, d, e, leaf }
    return leaf
  }

  private lookup(a: string, b: string, c: string, d: string, e: string): S {
    const n = this.labelNames.length
    let m: Node<S> = this.root
    for (let i = 0; i < n - 1; i++) {
      const k = i === 0 ? a : i === 1 ? b : i === 2 ? c : d
      let next = m.get(k) as Node<S> | undefined
      if (next === undefined || next === NOTHING_STORED) {
        const fresh: Node<S> = new Map()
        if (next === NOTHING_STORED) this.started.add(fresh)
        m.set(k, fresh)
        next = fresh
      }
      m = next
    }
    const k = n === 1 ? a : n === 2 ? b : n === 3 ? c : n === 4 ? d : e
    let leaf = m.get(k) as S | undefined
    if (leaf === undefined) {
      leaf = this.create()
      m.set(k, leaf)
    }
    return leaf
  }

  /**
   * The zero series of these label values (as many as the metric's zeros leave out: an instance,
   * or an instance and an endpoint) exist from now on, until removeWhere() drops them. Cheap: one
   * Map entry, where prom-client created every series (5,000 instances: ~10 MB, not 56).
   */
  start(a: string, b?: string): void {
    const given = b === undefined ? 1 : 2
    if (given !== this.startDepth || this.zeros.length === 0) throw new Error(`${this.name}: start() takes ${this.startDepth} label values`)
    let m = this.root
    if (b !== undefined) {
      let next = m.get(a) as Node<S> | undefined
      if (next === undefined) {
        next = new Map()
        m.set(a, next)
      }
      m = next
    }
    const last = b ?? a
    const node = m.get(last) as Node<S> | undefined
    if (node === undefined) m.set(last, NOTHING_STORED)
    // Series stored before the start (an event came first) stay.
    else if (node !== NOTHING_STORED) this.started.add(node)
  }

  /**
   * Drops the series whose first labels have these values: one series when every label is given,
   * else all under them (removeWhere('a') drops every series of instance a, its zero series too).
   * Maps left empty go too, so churning endpoints leave nothing behind. (A zero series is printed
   * while its start lasts: dropping only it sets it back to 0.)
   */
  removeWhere(...values: string[]): void {
    const k = Math.min(values.length, this.labelNames.length)
    if (k === 0) return
    const path: Node<S>[] = [this.root]
    for (let i = 0; i < k - 1; i++) {
      const next = path[i]!.get(values[i]!) as Node<S> | undefined
      if (next === undefined) return
      path.push(next)
    }
    for (let i = k - 1; i >= 0; i--) {
      path[i]!.delete(values[i]!)
      if (i === 0 || path[i]!.size > 0 || this.isStarted(path[i]!)) break
    }
    this.last = null
  }

  private isStarted(node: Node<S>): boolean {
    return node === NOTHING_STORED || this.started.has(node)
  }

  reset(): void {
    this.root = new Map()
    this.started = new WeakSet()
    this.last = null
  }

  /**
   * The series lines (each ending in '\n', without the header), in chunks of `maxLines` lines or a
   * few more (a histogram series is never split). Series added or removed while the caller waits
   * between chunks may or may not be printed; a series is printed whole.
   */
  *exposition(maxLines: number): Generator<string> {
    let out: string[] = []
    let lines = 0
    for (const v of this.walk(this.root, 0, '')) {
      lines += this.print(v.series, v.labels, out)
      if (lines >= maxLines) {
        yield out.join('')
        out = []
        lines = 0
      }
    }
    if (out.length > 0) yield out.join('')
  }

  /** What prom-client's Registry reads (metrics(), getMetricsAsJSON()); the scrape uses exposition(). */
  async get(): Promise<MetricData> {
    const values: MetricData['values'] = []
    const names = this.labelNames
    for (const v of this.walk(this.root, 0, '')) {
      const labels: Record<string, string> = {}
      for (let i = 0; i < names.length; i++) labels[names[i]!] = v.values[i]!
      this.values(v.series, labels, values)
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  /**
   * The series under `node` (at `depth`, whose label pairs so far are `labels`), depth first, each
   * Map in insertion order: an instance's series together, in the order they were created; under a
   * start, its zero series first, in the order of `zeros`.
   */
  private *walk(node: Node<S>, depth: number, labels: string, visit?: Visit<S>): Generator<Visit<S>> {
    const n = this.labelNames.length
    const v = visit ?? { series: this.zero, labels: '', values: [] }
    const texts: string[] = []
    texts[depth] = labels
    const stack: Iterator<[string, Node<S> | S]>[] = [node.entries()]
    while (stack.length > 0) {
      const next = stack[stack.length - 1]!.next()
      if (next.done === true) {
        stack.pop()
        continue
      }
      const [key, child] = next.value
      const d = depth + stack.length - 1
      v.values[d] = key
      const text = `${texts[d]}${d === 0 ? '' : ','}${pair(this.labelNames[d]!, key)}`
      if (d === n - 1) {
        v.series = child as S
        v.labels = text
        yield v
      } else if (d + 1 === this.startDepth && this.isStarted(child as Node<S>)) {
        yield* this.walkStarted(child as Node<S>, text, v)
      } else {
        texts[d + 1] = text
        stack.push((child as Node<S>).entries())
      }
    }
  }

  /** A start's zero series (stored or not), then its other series. */
  private *walkStarted(node: Node<S>, labels: string, v: Visit<S>): Generator<Visit<S>> {
    const depth = this.startDepth
    const stored: S[] = []
    for (let z = 0; z < this.zeros.length; z++) {
      const zero = this.zeros[z]!
      let s: Node<S> | S | undefined = node
      for (let i = 0; i < zero.length; i++) {
        s = (s as Node<S> | undefined)?.get(zero[i]!)
        v.values[depth + i] = zero[i]!
      }
      if (s !== undefined) stored.push(s as S)
      v.series = (s as S | undefined) ?? this.zero
      v.labels = labels + this.zeroLabels[z]!
      yield v
    }
    for (const w of this.walk(node, depth, labels, v)) if (!stored.includes(w.series)) yield w
  }
}

interface ValueSeries {
  value: number
}

/** A counter's or gauge's series: one number each, one line. */
abstract class HotValueMetric extends HotMetric<ValueSeries> {
  protected create(): ValueSeries {
    return { value: 0 }
  }

  protected print(s: ValueSeries, labels: string, out: string[]): number {
    out.push(`${this.name}{${labels}} ${valueText(s.value)}\n`)
    return 1
  }

  protected values(s: ValueSeries, labels: Record<string, string>, out: MetricData['values']): void {
    out.push({ labels, value: s.value })
  }
}

export class HotCounter extends HotValueMetric {
  constructor(o: HotMetricOptions) {
    super(o, 'counter')
  }

  /** Adds one to the series with these label values. */
  inc(a: string, b?: string, c?: string, d?: string, e?: string): void {
    this.find(a, b, c, d, e).value++
  }

  /** Creates the series with these label values at 0 when it does not exist yet (keeps its value if it does). */
  touch(a: string, b?: string, c?: string, d?: string, e?: string): void {
    this.find(a, b, c, d, e)
  }
}

export class HotGauge extends HotValueMetric {
  constructor(o: HotMetricOptions) {
    super(o, 'gauge')
  }

  /** Sets the series with these label values to `value` (creating it). */
  set(value: number, a: string, b?: string, c?: string, d?: string, e?: string): void {
    this.find(a, b, c, d, e).value = value
  }
}

interface HistogramSeries {
  /** Observations per bucket (not cumulative); the last slot is above the largest bound. */
  readonly counts: Float64Array
  sum: number
  count: number
}

export class HotHistogram extends HotMetric<HistogramSeries> {
  private readonly bounds: readonly number[]
  /** `name_bucket{le="<bound>",` per bound, then +Inf: prom-client puts le first. */
  private readonly bucketHeads: readonly string[]

  constructor(o: Omit<HotMetricOptions, 'zeros'> & { buckets: readonly number[] }) {
    super(o, 'histogram')
    this.bounds = [...o.buckets].sort((x, y) => x - y)
    this.bucketHeads = [...this.bounds.map(String), '+Inf'].map((le) => `${this.name}_bucket{le="${le}",`)
  }

  /** Records `value` in the series with these label values. */
  observe(value: number, a: string, b?: string, c?: string, d?: string, e?: string): void {
    if (!Number.isFinite(value)) return
    const s = this.find(a, b, c, d, e)
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    s.counts[i]!++
    s.sum += value
    s.count++
  }

  protected create(): HistogramSeries {
    return { counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }
  }

  protected print(s: HistogramSeries, labels: string, out: string[]): number {
    const tail = `${labels}} `
    let acc = 0
    for (let i = 0; i < this.bounds.length; i++) {
      acc += s.counts[i]!
      out.push(`${this.bucketHeads[i]}${tail}${valueText(acc)}\n`)
    }
    out.push(`${this.bucketHeads[this.bounds.length]}${tail}${valueText(s.count)}\n`)
    out.push(`${this.name}_sum{${tail}${valueText(s.sum)}\n`)
    out.push(`${this.name}_count{${tail}${valueText(s.count)}\n`)
    return this.bounds.length + 3
  }

  protected values(s: HistogramSeries, labels: Record<string, string>, out: MetricData['values']): void {
    const bucket = `${this.name}_bucket`
    let acc = 0
    for (let i = 0; i < this.bounds.length; i++) {
      acc += s.counts[i]!
      out.push({ labels: { le: this.bounds[i]!, ...labels }, value: acc, metricName: bucket })
    }
    out.push({ labels: { le: '+Inf', ...labels }, value: s.count, metricName: bucket })
    out.push({ labels, value: s.sum, metricName: `${this.name}_sum` })
    out.push({ labels, value: s.count, metricName: `${this.name}_count` })
  }
}

// Text as prom-client 15 prints it (lib/registry.js, lib/util.js): a metric name and help escape
// backslash and newline, a label value the double quote too; NaN is `Nan`.

function escape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

const NEEDS_ESCAPE = /[\\\n"]/

function pair(name: string, value: string): string {
  return `${name}="${NEEDS_ESCAPE.test(value) ? escape(value).replace(/"/g, '\\"') : value}"`
}

function valueText(v: number): string {
  if (Number.isNaN(v)) return 'Nan'
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf'
  return `${v}`
}
