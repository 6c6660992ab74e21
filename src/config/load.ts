// Loads the gateway config: YAML file, then environment overrides, validated into a GatewayConfig.
// This is the only module in the project that reads process.env; everything else gets values from here.
//
// Environment variables (an empty value counts as unset):
//   GATEWAY_CONFIG           path of the config file (default: gateway.yaml in the working directory)
//   GATEWAY_LISTEN_DATA      overrides listen.data
//   GATEWAY_LISTEN_OPS       overrides listen.ops
//   GATEWAY_LOG_LEVEL        overrides log.level
//   GATEWAY_REDIS_USERNAME   overrides redis.username
//   GATEWAY_REDIS_PASSWORD   the Redis password; wins over redis.passwordFile
//   GATEWAY_COMMAND_TIMEOUT  overrides redis.commandTimeout
//   GATEWAY_CONNECT_TIMEOUT  overrides redis.connectTimeout
//   GATEWAY_MAX_BODY         overrides limits.maxBody
//   GATEWAY_MAX_REPLY        overrides limits.maxReply
//   GATEWAY_HTTP_FAST_LANE   overrides http.fastLane
//   GATEWAY_SHUTDOWN_DELAY   overrides shutdown.delay
//   GATEWAY_SHUTDOWN_TIMEOUT overrides shutdown.timeout
//   GATEWAY_ZONE             this gateway's zone (loadRuntimeEnv), not part of the config file
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { LineCounter, parseDocument, isNode, type Document } from 'yaml'
import { z } from 'zod'
import { configSchema, describeValue, secretFilePaths, sha256Hex, type ConfigSchema, type GatewayConfig, type SecretFiles } from './schema.js'
import { didYouMean } from './suggest.js'

export interface ConfigIssue {
  /** Dotted key path (`redis.commandTimeout`, `auth.tokens[0].name`), an env var name, or '' for the file as a whole. */
  readonly path: string
  readonly message: string
  /** 1-based line in the file, when the problem can be placed there. */
  readonly line?: number
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  constructor(
    /** What was being loaded, e.g. `gateway.yaml`. */
    readonly source: string,
    readonly issues: readonly ConfigIssue[],
  ) {
    super(formatIssues(source, issues))
  }
}

function formatIssues(source: string, issues: readonly ConfigIssue[]): string {
  const lines = issues.map((i) => `${i.path === '' ? '' : `${i.path}: `}${i.message}${i.line === undefined ? '' : ` (line ${i.line})`}`)
  if (lines.length === 1) return `config ${source}: ${lines[0]}`
  return `config ${source}: ${lines.length} problems:\n${lines.map((l) => `  ${l}`).join('\n')}`
}

export interface EnvVar {
  readonly name: string
  /** The config key it overrides, or null when it is not a config key. */
  readonly key: string | null
  readonly description: string
}

/** Every environment variable the gateway reads itself, for the README. */
export const ENV_VARS: readonly EnvVar[] = [
  { name: 'GATEWAY_CONFIG', key: null, description: 'Path of the config file. Default: gateway.yaml in the working directory.' },
  { name: 'GATEWAY_LISTEN_DATA', key: 'listen.data', description: 'Data-plane listen address, host:port ([::]:8080 for IPv6).' },
  { name: 'GATEWAY_LISTEN_OPS', key: 'listen.ops', description: 'Ops-plane (metrics, health, admin) listen address, host:port.' },
  { name: 'GATEWAY_LOG_LEVEL', key: 'log.level', description: 'fatal, error, warn, info, debug, trace or silent.' },
  { name: 'GATEWAY_REDIS_USERNAME', key: 'redis.username', description: 'Redis ACL user name.' },
  {
    name: 'GATEWAY_REDIS_PASSWORD',
    key: null,
    description: 'Redis password. Takes precedence over redis.passwordFile; the config file never holds the password itself.',
  },
  { name: 'GATEWAY_COMMAND_TIMEOUT', key: 'redis.commandTimeout', description: 'Per-command timeout, a duration such as 2s or 500ms.' },
  { name: 'GATEWAY_CONNECT_TIMEOUT', key: 'redis.connectTimeout', description: 'Connect timeout, a duration such as 1s.' },
  { name: 'GATEWAY_MAX_BODY', key: 'limits.maxBody', description: 'Largest accepted request body, a size such as 10MiB.' },
  { name: 'GATEWAY_MAX_REPLY', key: 'limits.maxReply', description: 'Largest reply kept for one request, a size such as 10MiB.' },
  {
    name: 'GATEWAY_HTTP_FAST_LANE',
    key: 'http.fastLane',
    description: 'true or false: serve plain HTTP/1.1 requests in the fast lane (default true); false sends all through node:http.',
  },
  { name: 'GATEWAY_METRICS_ENABLED', key: 'metrics.enabled', description: 'true or false: keep and serve Prometheus metrics (default true).' },
  {
    name: 'GATEWAY_SHUTDOWN_DELAY',
    key: 'shutdown.delay',
    description: 'After SIGTERM, how long to keep serving while /readyz fails (endpoints update), e.g. 5s; 0s for none.',
  },
  {
    name: 'GATEWAY_SHUTDOWN_TIMEOUT',
    key: 'shutdown.timeout',
    description: 'How long in-flight requests may take once the gateway stops accepting, e.g. 20s; then they are cut.',
  },
  { name: 'GATEWAY_ZONE', key: null, description: "This gateway's zone (e.g. the node's topology.kubernetes.io/zone), for zone-aware routing." },
  { name: 'KUBECONFIG', key: null, description: 'Kubeconfig file for Kubernetes discovery; without it the in-cluster service account is used.' },
]

// Overrides go into the document before validation so env values get exactly the file's checks.
const OVERRIDES = ENV_VARS.filter((v) => v.key !== null).map((v) => ({ name: v.name, path: (v.key as string).split('.') }))

export interface LoadOptions {
  /** Config file path; default GATEWAY_CONFIG, else gateway.yaml. Relative secret files resolve against its directory. */
  path?: string
  /** Environment; default process.env. */
  env?: NodeJS.ProcessEnv
  /** Config text to use instead of reading `path` (which then only names it and anchors relative paths). */
  text?: string
  /** Told about every file read (config and secret files) with a SHA-256 of its content, or null if unreadable. */
  onFileRead?: (absolutePath: string, contentSha256: string | null) => void
}

/** The config file path: GATEWAY_CONFIG, else `gateway.yaml` in the working directory. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return nonEmpty(env.GATEWAY_CONFIG) ?? 'gateway.yaml'
}

/** Reads, validates and returns the configuration; throws ConfigError naming every bad key. */
export function loadConfig(opts: LoadOptions = {}): GatewayConfig {
  const env = opts.env ?? process.env
  const file = opts.path ?? configPath(env)
  const baseDir = path.dirname(path.resolve(file))

  const readTracked = (abs: string): string => {
    try {
      const text = readFileSync(abs, 'utf8')
      opts.onFileRead?.(abs, sha256Hex(text))
      return text
    } catch (err) {
      opts.onFileRead?.(abs, null)
      throw new Error(errorText(err))
    }
  }
  // Secret files named in the config resolve against the config file's directory, like Prometheus.
  const readSecret = (p: string): { text: string } | { error: string } => {
    const abs = path.resolve(baseDir, p)
    try {
      return { text: readTracked(abs) }
    } catch (err) {
      return { error: `cannot read ${JSON.stringify(p)}${abs === p ? '' : ` (${abs})`}: ${(err as Error).message}` }
    }
  }

  let text: string
  if (opts.text !== undefined) text = opts.text
  else {
    try {
      text = readTracked(path.resolve(file))
    } catch (err) {
      throw new ConfigError(file, [{ path: '', message: `cannot read the file: ${(err as Error).message}; GATEWAY_CONFIG sets its path` }])
    }
  }

  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0])
        return { path: '', message: `line ${pos.line}, column ${pos.col}: ${e.message}` }
      }),
    )
  }
  let raw: unknown
  try {
    raw = doc.toJS() ?? {}
  } catch (err) {
    // e.g. alias bombs: yaml refuses excessive alias expansion.
    throw new ConfigError(file, [{ path: '', message: (err as Error).message }])
  }
  if (!isPlainObject(raw)) {
    throw new ConfigError(file, [{ path: '', message: `expected a mapping of config keys at the top level, got ${describeValue(raw)}` }])
  }
  emptySectionsToDefaults(raw)

  const fromEnv = new Map<string, string>()
  for (const o of OVERRIDES) {
    const value = nonEmpty(env[o.name])
    if (value !== undefined && setIn(raw, o.path, value)) fromEnv.set(o.path.join('.'), o.name)
  }

  // Read here so the schema stays free of I/O; it reports a file's problem where the file is named.
  const secrets: SecretFiles = new Map(secretFilePaths(raw).map((p) => [p, readSecret(p)]))
  const schema = configSchema(secrets)
  const result = schema.safeParse(raw, { reportInput: true })
  if (!result.success) {
    const issues = result.error.issues.flatMap((iss) => toConfigIssues(iss, schema))
    throw new ConfigError(
      file,
      issues.map((i) => {
        const envName = fromEnv.get(i.keys.join('.'))
        if (envName !== undefined) return { path: envName, message: i.message }
        const line = lineOf(doc, lineCounter, i.keys)
        return { path: formatPath(i.keys), message: i.message, ...(line === undefined ? {} : { line }) }
      }),
    )
  }
  const cfg = result.data
  // Not trimmed: unlike a file's trailing newline, spaces in an env value are deliberate.
  const password = env.GATEWAY_REDIS_PASSWORD
  if (password !== undefined && password !== '') return { ...cfg, redis: { ...cfg.redis, password } }
  return cfg
}

export interface RuntimeEnv {
  /** GATEWAY_ZONE: the zone this gateway runs in, or null when unknown. */
  readonly zone: string | null
  /** KUBECONFIG: kubeconfig file for Kubernetes discovery; null = the in-cluster service account. */
  readonly kubeconfig: string | null
  /**
   * OpenTelemetry tracing: on when an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or a trace exporter (OTEL_TRACES_EXPORTER other than
   * `none`) is set, unless OTEL_SDK_DISABLED=true. Every other OTEL_* variable is read by the
   * OpenTelemetry SDK itself.
   */
  readonly tracing: { readonly enabled: boolean; readonly serviceNameSet: boolean }
}

/** Process-level settings that are not part of the config file. */
export function loadRuntimeEnv(env: NodeJS.ProcessEnv = process.env): RuntimeEnv {
  return {
    zone: nonEmpty(env.GATEWAY_ZONE) ?? null,
    kubeconfig: nonEmpty(env.KUBECONFIG) ?? null,
    tracing: tracingEnv(env),
  }
}

function tracingEnv(env: NodeJS.ProcessEnv): RuntimeEnv['tracing'] {
  const exporter = nonEmpty(env.OTEL_TRACES_EXPORTER)?.trim().toLowerCase()
  const disabled = nonEmpty(env.OTEL_SDK_DISABLED)?.trim().toLowerCase() === 'true' || exporter === 'none'
  const wanted =
    nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT) !== undefined ||
    nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) !== undefined ||
    exporter !== undefined
  return { enabled: wanted && !disabled, serviceNameSet: nonEmpty(env.OTEL_SERVICE_NAME) !== undefined }
}

// ---------------------------------------------------------------------------------------------

type Key = string | number

interface RawIssue {
  keys: Key[]
  message: string
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
}

// Replaces zod's generic wording with messages that say what was expected and what was found.
function toConfigIssues(iss: z.core.$ZodIssue, schema: ConfigSchema): RawIssue[] {
  const keys = iss.path.map((k) => (typeof k === 'symbol' ? String(k) : k))
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return [{ keys, message: 'required' }]
      // Never echo what was written where a secret belongs.
      const got = keys.at(-1) === 'token' ? kindOf(iss.input) : describeValue(iss.input)
      return [{ keys, message: `expected ${TYPE_NAMES[iss.expected] ?? iss.expected}, got ${got}` }]
    }
    case 'unrecognized_keys': {
      const known = knownKeys(schema, keys)
      return iss.keys.map((k) => ({ keys: [...keys, k], message: `unknown key${unknownKeyHint(keys, k, known)}` }))
    }
    case 'invalid_value': {
      const values = iss.values.map((v) => JSON.stringify(v))
      const hint = typeof iss.input === 'string' ? didYouMean(iss.input, iss.values.map(String)) : undefined
      return [
        {
          keys,
          message: `expected one of ${values.join(', ')}, got ${describeValue(iss.input)}${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`,
        },
      ]
    }
    default:
      return [{ keys, message: iss.message }]
  }
}

function unknownKeyHint(parent: Key[], key: string, known: string[]): string {
  if (parent.join('.') === 'redis' && key === 'password') {
    return ': put the password in a file named by redis.passwordFile, or in GATEWAY_REDIS_PASSWORD'
  }
  const guess = didYouMean(key, known)
  if (guess !== undefined) return ` (did you mean "${guess}"?)`
  return known.length > 0 ? ` (known keys: ${known.join(', ')})` : ''
}

// The keys the object at `keys` accepts, found through the schema's public API: each object's
// `shape`, an array's `element`, a record's `valueType`, and what defaults and pipes wrap.
function knownKeys(schema: ConfigSchema, keys: Key[]): string[] {
  let s: z.ZodType | undefined = schema
  let i = 0
  while (s !== undefined) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) {
      s = s.unwrap() as z.ZodType
      continue
    }
    if (s instanceof z.ZodPipe) {
      // A transform is a pipe into a ZodTransform, a preprocess a pipe out of one; the shape is on the other side.
      s = (s.in instanceof z.ZodTransform ? s.out : s.in) as z.ZodType
      continue
    }
    if (i === keys.length) return s instanceof z.ZodObject ? Object.keys(s.shape) : []
    const k = keys[i++] as Key
    if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodType>)[k]
    else if (s instanceof z.ZodArray) s = s.element as z.ZodType
    else if (s instanceof z.ZodRecord) s = s.valueType as z.ZodType
    else return []
  }
  return []
}

/** `discovery.static.instances[1].endpoints[0]`, `groups.sessions`, `annotations["redis-gateway.io/weight"]`. */
export function formatPath(keys: readonly Key[]): string {
  let out = ''
  for (const k of keys) {
    if (typeof k === 'number') out += `[${k}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k)) out += out === '' ? k : `.${k}`
    else out += `[${JSON.stringify(k)}]`
  }
  return out === '' ? '(top level)' : out
}

// The line of the deepest node along `keys` that the file has, so defaults point at their parent.
function lineOf(doc: Document, lc: LineCounter, keys: Key[]): number | undefined {
  for (let n = keys.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true)
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line
  }
  return undefined
}

// A section with every key commented out is YAML null; it means "this section, with its defaults"
// (so an empty `kubernetes:` turns Kubernetes discovery on, as its author meant).
function emptySectionsToDefaults(raw: Record<string, unknown>): void {
  const fill = (obj: Record<string, unknown>): void => {
    for (const [k, v] of Object.entries(obj)) if (v === null) obj[k] = {}
  }
  fill(raw)
  if (isPlainObject(raw.discovery)) fill(raw.discovery)
  if (isPlainObject(raw.groups)) fill(raw.groups)
}

function setIn(obj: Record<string, unknown>, keys: string[], value: string): boolean {
  let cur = obj
  for (const k of keys.slice(0, -1)) {
    const next = cur[k]
    if (next === undefined || next === null) cur[k] = {}
    // A section that is not a mapping is already an error the schema will report.
    else if (!isPlainObject(next)) return false
    cur = cur[k] as Record<string, unknown>
  }
  cur[keys.at(-1) as string] = value
  return true
}

function kindOf(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `a ${typeof v}`
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ENOENT') return 'no such file'
  if (e.code === 'EACCES') return 'permission denied'
  if (e.code === 'EISDIR') return 'is a directory'
  return e.message
}
