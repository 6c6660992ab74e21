// Human-friendly durations ("150ms", "2s", "1m30s") and byte sizes ("10MiB", "100kb") for the
// config file, environment variables and annotations, so every place accepts the same spellings.

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }

const DURATION_ACCEPTS =
  'a non-negative number of milliseconds, or numbers with units ms, s, m, h (e.g. "150ms", "2s", "1.5s", "1m30s")'

// One or more number+unit parts, like Go's time.ParseDuration, so "1m30s" reads as expected.
const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h)/g
const PLAIN_NUMBER_RE = /^\d+(?:\.\d+)?$/

/** Parses a duration into milliseconds. A plain number (or numeric string) is milliseconds. */
export function parseDuration(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isFinite(s) || s < 0) throw new Error(`invalid duration ${s}: expected ${DURATION_ACCEPTS}`)
    return s
  }
  const text = s.trim()
  if (PLAIN_NUMBER_RE.test(text)) return Number(text)
  if (!DURATION_RE.test(text)) throw new Error(`invalid duration ${JSON.stringify(s)}: expected ${DURATION_ACCEPTS}`)
  let ms = 0
  for (const [, num, unit] of text.matchAll(DURATION_PART_RE)) {
    ms += Number(num) * (DURATION_UNITS_MS[unit as string] as number)
  }
  if (!Number.isFinite(ms)) throw new Error(`invalid duration ${JSON.stringify(s)}: too large`)
  return ms
}

// Decimal units are powers of 1000 and binary units powers of 1024 (IEC), as in Kubernetes
// quantities; the short Ki/Mi/Gi/Ti forms are accepted because Kubernetes users write them.
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  ki: 2 ** 10,
  mi: 2 ** 20,
  gi: 2 ** 30,
  ti: 2 ** 40,
}

const SIZE_ACCEPTS =
  'a non-negative whole number of bytes, or a number with unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. "10MiB", "512KiB", "100kb"'

const SIZE_RE = /^(\d+(?:\.\d+)?)([a-z]+)?$/i

/** Parses a byte size. A plain number (or numeric string) is bytes; fractional results round down. */
export function parseSize(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isSafeInteger(s) || s < 0) throw new Error(`invalid size ${s}: expected ${SIZE_ACCEPTS}`)
    return s
  }
  const m = SIZE_RE.exec(s.trim())
  const num = m?.[1]
  const unit = m?.[2]
  if (num === undefined) throw new Error(`invalid size ${JSON.stringify(s)}: expected ${SIZE_ACCEPTS}`)
  if (unit === undefined) {
    // Without a unit a fraction of a byte means nothing, so only whole numbers are bytes.
    if (!/^\d+$/.test(num)) throw new Error(`invalid size ${JSON.stringify(s)}: expected ${SIZE_ACCEPTS}`)
    const n = Number(num)
    if (!Number.isSafeInteger(n)) throw new Error(`invalid size ${JSON.stringify(s)}: too large`)
    return n
  }
  const factor = Object.hasOwn(SIZE_UNITS, unit.toLowerCase()) ? SIZE_UNITS[unit.toLowerCase()] : undefined
  if (factor === undefined) throw new Error(`invalid size ${JSON.stringify(s)}: expected ${SIZE_ACCEPTS}`)
  const bytes = Math.floor(Number(num) * factor)
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size ${JSON.stringify(s)}: too large`)
  return bytes
}
