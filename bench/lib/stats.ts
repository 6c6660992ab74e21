// Small helpers for the benchmark's figures and its text table.

export function median(xs: readonly number[]): number {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
}

export function fmtInt(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'N/A' : String(x)
  return Math.round(x).toLocaleString('en-US')
}

export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : 'N/A'
}

/** Least-squares slope of y over x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length
  if (n < 2) return NaN
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my)
    den += (xs[i]! - mx) ** 2
  }
  return den === 0 ? NaN : num / den
}

/** Left-aligned first column(s), right-aligned numbers; the last column is free text. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)))
  const last = widths.length - 1
  const line = (r: readonly string[]): string =>
    r
      .map((c, i) => (i === last ? c : i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd()
  const sep = widths.map((w, i) => (i === last ? '-'.repeat(Math.min(w, 20)) : '-'.repeat(w))).join('  ')
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n')
}
