// A counter and a histogram for the metrics updated on every request, registered on the same
// prom-client Registry and printed by it in the same format. prom-client's own inc()/observe()
// validate and hash a label object on every call (and observe() allocates a closure): about 2 us
// of a 24 us GET (bench/README.md). Here a label combination is found through one Map per label,
// keyed by the label strings themselves (long-lived names whose hashes V8 caches), and updated
// in place; the label objects for printing are built once per combination.

import type { Registry } from 'prom-client'

interface MetricData {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'histogram'
  readonly values: { labels: Record<string, string | number>; value: number; metricName?: string }[]
  readonly aggregator: 'sum'
}

type Node<L> = Map<string, Node<L> | L>

abstract class HotMetric<L> {
  private root: Node<L> = new Map()
  readonly aggregator = 'sum' as const

  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    if (labelNames.length < 1 || labelNames.length > 5) throw new Error(`${name}: 1 to 5 labels`)
    registry.registerMetric(this as never)
  }

  protected abstract create(labels: Record<string, string>): L
  abstract get(): Promise<MetricData>

  /**
   * The last series found and its label values: consecutive requests mostly carry the same labels
   * (one instance, endpoint, class and outcome), and five string comparisons cost less than the
   * up to five Map lookups below (~1,000 instructions per request over three metrics).
   */
  private last: { a: string; b: string; c: string; d: string; e: string; leaf: L } | null = null

  /** The series for these label values (in labelNames order; extra arguments are ignored). */
  protected find(a: string, b = '', c = '', d = '', e = ''): L {
    const last = this.last
    if (last !== null && last.a === a && last.b === b && last.c === c && last.d === d && last.e === e) return last.leaf
    const leaf = this.lookup(a, b, c, d, e)
    this.last = { a, b, c, d, e, leaf }
    return leaf
  }

  private lookup(a: string, b: string, c: string, d: string, e: string): L {
    const n = this.labelNames.length
    let m: Node<L> = this.root
    for (let i = 0; i < n - 1; i++) {
      const k = i === 0 ? a : i === 1 ? b : i === 2 ? c : d
      let next = m.get(k) as Node<L> | undefined
      if (next === undefined) {
        next = new Map()
        m.set(k, next)
      }
      m = next
    }
    const k = n === 1 ? a : n === 2 ? b : n === 3 ? c : n === 4 ? d : e
    let leaf = m.get(k) as L | undefined
    if (leaf === undefined) {
      const values = [a, b, c, d, e]
      const labels: Record<string, string> = {}
      for (let i = 0; i < n; i++) labels[this.labelNames[i]!] = values[i]!
      leaf = this.create(labels)
      m.set(k, leaf)
    }
    return leaf
  }

  protected *leaves(): Generator<L> {
    const walk = function* (m: Node<L>, depth: number, n: number): Generator<L> {
      for (const v of m.values()) {
        if (depth === n - 1) yield v as L
        else yield* walk(v as Node<L>, depth + 1, n)
      }
    }
    yield* walk(this.root, 0, this.labelNames.length)
  }

  /** Drops every series whose first label has value `a` (e.g. an instance that left). */
  removeFirst(a: string): void {
    this.root.delete(a)
    this.last = null
  }

  reset(): void {
    this.root = new Map()
    this.last = null
  }
}

interface CounterSeries {
  readonly labels: Record<string, string>
  value: number
}

export class HotCounter extends HotMetric<CounterSeries> {
  readonly type = 'counter' as const

  constructor(o: { name: string; help: string; labelNames: readonly string[]; registry: Registry }) {
    super(o.name, o.help, o.labelNames, o.registry)
  }

  protected create(labels: Record<string, string>): CounterSeries {
    return { labels, value: 0 }
  }

  /** Adds one to the series with these label values. */
  inc(a: string, b?: string, c?: string, d?: string, e?: string): void {
    this.find(a, b, c, d, e).value++
  }

  /** Creates the series with these label values at 0 when it does not exist yet (keeps its value if it does). */
  touch(a: string, b?: string, c?: string, d?: string, e?: string): void {
    this.find(a, b, c, d, e)
  }

  async get(): Promise<MetricData> {
    const values: MetricData['values'] = []
    for (const s of this.leaves()) values.push({ labels: { ...s.labels }, value: s.value })
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}

interface HistogramSeries {
  readonly labels: Record<string, string>
  /** Observations per bucket (not cumulative); the last slot is above the largest bound. */
  readonly counts: Float64Array
  sum: number
  count: number
}

export class HotHistogram extends HotMetric<HistogramSeries> {
  readonly type = 'histogram' as const
  private readonly bounds: readonly number[]

  constructor(o: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[]; registry: Registry }) {
    super(o.name, o.help, o.labelNames, o.registry)
    this.bounds = [...o.buckets].sort((x, y) => x - y)
  }

  protected create(labels: Record<string, string>): HistogramSeries {
    return { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }
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

  async get(): Promise<MetricData> {
    const values: MetricData['values'] = []
    const bucket = `${this.name}_bucket`
    for (const s of this.leaves()) {
      let acc = 0
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!
        values.push({ labels: { le: this.bounds[i]!, ...s.labels }, value: acc, metricName: bucket })
      }
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket })
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}
