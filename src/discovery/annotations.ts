// Parses `redis-gateway.io/*` annotations (README "Annotations") into an InstancePolicy. Shared by
// Kubernetes and static discovery. A bad value never drops the instance: that key falls back to its
// default and the problem is returned as an AnnotationError for logs, metrics and the admin view.
import { parseDuration, parseSize } from '../config/duration.js'
import { didYouMean } from '../config/suggest.js'
import {
  NAME_RE,
  type AnnotationError,
  type InstancePolicy,
  type Maintenance,
  type ReadPolicy,
  type ServingMode,
  type Strategy,
} from '../core/topology.js'

export const ANNOTATION_PREFIX = 'redis-gateway.io/'

export const DEFAULT_POLICY: InstancePolicy = Object.freeze({
  maintenance: 'off',
  weight: 100,
  groups: Object.freeze([]) as readonly string[],
  readPolicy: 'primary',
  maxReplicaLagBytes: 1_048_576,
  strategy: 'least-request',
  hedgeAfterMs: null,
  port: null,
  mode: 'auto',
})

const MAINTENANCE = ['drain', 'read-only', 'off'] as const satisfies readonly Maintenance[]
const READ_POLICIES = ['primary', 'prefer-replica', 'replica', 'any'] as const satisfies readonly ReadPolicy[]
const STRATEGIES = ['least-request', 'round-robin', 'random', 'weighted', 'maglev'] as const satisfies readonly Strategy[]
const MODES = ['auto', 'cluster', 'standalone'] as const satisfies readonly ServingMode[]
const MAX_WEIGHT = 10_000

// A bad value: the message says what was wrong, without the key (added by the caller).
class BadValue extends Error {}

interface KeySpec<K extends keyof InstancePolicy = keyof InstancePolicy> {
  readonly field: K
  /** Returns the value, or throws BadValue; `report` notes a problem that still leaves a usable value. */
  readonly parse: (value: string, report: (message: string) => void) => InstancePolicy[K]
}

const spec = <K extends keyof InstancePolicy>(field: K, parse: KeySpec<K>['parse']): KeySpec => ({ field, parse }) as KeySpec

function keyword<T extends string>(allowed: readonly T[]): (v: string) => T {
  return (v) => {
    if ((allowed as readonly string[]).includes(v)) return v as T
    // Keywords are lower-case only, as Kubernetes users write them; a capitalised one is a likely slip.
    const lower = v.toLowerCase()
    const hint = (allowed as readonly string[]).includes(lower) ? lower : didYouMean(v, allowed)
    throw new BadValue(`${JSON.stringify(v)} is not one of ${allowed.join(', ')}${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`)
  }
}

const KEYS: Readonly<Record<string, KeySpec>> = {
  maintenance: spec('maintenance', keyword(MAINTENANCE)),
  weight: spec('weight', (v) => {
    if (!/^\d+$/.test(v) || Number(v) > MAX_WEIGHT) throw new BadValue(`${JSON.stringify(v)} is not an integer 0..${MAX_WEIGHT}`)
    return Number(v)
  }),
  groups: spec('groups', (v, report) => {
    const groups: string[] = []
    for (const name of v.split(',').map((s) => s.trim())) {
      if (name === '' || groups.includes(name)) continue
      // One bad name must not cost the instance its other groups.
      if (NAME_RE.test(name)) groups.push(name)
      else report(`${JSON.stringify(name)} is not a valid group name (lower-case letters, digits and "-", at most 63 characters); ignoring it`)
    }
    return groups
  }),
  'read-policy': spec('readPolicy', keyword(READ_POLICIES)),
  'max-replica-lag': spec('maxReplicaLagBytes', (v) => {
    try {
      return parseSize(v)
    } catch {
      throw new BadValue(`${JSON.stringify(v)} is not a byte count (e.g. 1048576 or 1MiB)`)
    }
  }),
  strategy: spec('strategy', keyword(STRATEGIES)),
  mode: spec('mode', keyword(MODES)),
  'hedge-after': spec('hedgeAfterMs', (v) => {
    if (v === 'off') return null
    let ms: number
    try {
      ms = parseDuration(v)
    } catch {
      const hint = v.toLowerCase() === 'off' ? ' (did you mean "off"?)' : ''
      throw new BadValue(`${JSON.stringify(v)} is not a duration (e.g. 15ms) or off${hint}`)
    }
    if (ms <= 0) throw new BadValue(`${JSON.stringify(v)} must be greater than 0 (use off to disable hedging)`)
    return ms
  }),
  port: spec('port', (v) => {
    if (/^\d+$/.test(v)) {
      const n = Number(v)
      if (n < 1 || n > 65535) throw new BadValue(`${JSON.stringify(v)} is not a port number 1..65535`)
      return n
    }
    if (!NAME_RE.test(v)) throw new BadValue(`${JSON.stringify(v)} is not a port name (a DNS label) or number 1..65535`)
    return v
  }),
}

const KNOWN_KEYS = Object.keys(KEYS).map((k) => ANNOTATION_PREFIX + k)

// How each default reads in "using ..." messages.
function shownDefault(field: keyof InstancePolicy): string {
  const v = DEFAULT_POLICY[field]
  if (v === null) return field === 'port' ? 'the port named redis, else the first' : 'off'
  if (Array.isArray(v)) return 'none'
  return String(v)
}

/** The policy the annotations ask for, and every problem found in them (each key's default stands in for a bad value). */
export function parseAnnotations(a: Readonly<Record<string, string>>): { policy: InstancePolicy; errors: AnnotationError[] } {
  const policy: { -readonly [K in keyof InstancePolicy]: InstancePolicy[K] } = { ...DEFAULT_POLICY }
  const errors: AnnotationError[] = []
  // Sorted so errors come out in the same order whatever order the source listed keys in.
  for (const key of Object.keys(a).sort()) {
    if (!key.startsWith(ANNOTATION_PREFIX)) continue
    const value = a[key] as string
    const report = (message: string): void => {
      errors.push({ key, value, message: `${key}: ${message}` })
    }
    const name = key.slice(ANNOTATION_PREFIX.length)
    const known = Object.hasOwn(KEYS, name) ? KEYS[name] : undefined
    if (known === undefined) {
      const hint = didYouMean(key, KNOWN_KEYS)
      report(`unknown annotation${hint === undefined ? '' : ` (did you mean ${hint}?)`}`)
      continue
    }
    try {
      Object.assign(policy, { [known.field]: known.parse(value.trim(), report) })
    } catch (err) {
      if (!(err instanceof BadValue)) throw err
      report(`${err.message}; using ${shownDefault(known.field)}`)
    }
  }
  return { policy, errors }
}
