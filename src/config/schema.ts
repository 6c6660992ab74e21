// The config file's schema (README "Configuration"): every key, its default, and how file values
// become the typed GatewayConfig the rest of the gateway reads. Unknown keys are errors, so typos
// surface at start-up.
import { createHash } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import { z } from 'zod'
import { ACCESS_LEVELS, type Access } from '../core/identity.js'
import { GROUP_STRATEGIES, NAME_RE, endpointId, type GroupStrategy } from '../core/topology.js'
import { parseDuration, parseSize } from './duration.js'
import { checkDiscoverySelector, OPT_IN_LABEL, parseLabelSelector, requirementMatches } from './label-selector.js'

/** Deeply readonly: the config is a value; a reload replaces it, nothing edits it in place. */
export type DeepReadonly<T> = T extends readonly (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
export type LogLevel = z.infer<typeof logLevel>
/** `ops.auth`: whether the ops plane's topology views need an admin token. */
export const OPS_AUTH_MODES = ['admin', 'none'] as const
export type OpsAuth = (typeof OPS_AUTH_MODES)[number]

/** Defaults, in the file's own spelling (durations and sizes as text). */
export const DEFAULTS = {
  listen: { data: '0.0.0.0:8080', ops: '0.0.0.0:9090' },
  /** Used when `discovery.kubernetes` is present; Kubernetes discovery is off when the key is absent. */
  kubernetes: { namespaces: ['redis-system'], servicePrefix: 'redis-', labelSelector: '', optIn: false, operators: true },
  groupStrategy: 'weighted',
  /** Least privilege for a token that does not say. */
  tokenAccess: 'read',
  tokenTargets: ['*'],
  redis: { username: '', passwordFile: '', tls: false, commandTimeout: '2s', connectTimeout: '1s', aclUsers: true, allowUndiscoveredClusterNodes: false },
  limits: {
    maxBody: '64MiB',
    maxHeader: '64KiB',
    maxHeaders: 100,
    maxArgs: 100_000,
    maxCommands: 10_000,
    maxReply: '64MiB',
    inflightBytes: '256MiB',
    writeTimeout: '30s',
    /**
     * Requests sent to one endpoint and not yet answered; more wait (in arrival order) for a slot.
     * A healthy Redis serves ~100k ops/s at ~1 ms, i.e. ~100 in flight (Little's law): 1000 is 10x
     * headroom, the order of Envoy's per-cluster max_requests (1024). It also bounds what a stalled
     * endpoint leaves ambiguous (504: a write may have run) and what Redis buffers for the gateway
     * (1000 GETs of 1 MiB values are 1 GiB of Redis's output buffer).
     */
    maxInflightPerEndpoint: 1_000,
    /**
     * Requests that may wait per endpoint, for its connection or for an in-flight slot; more get
     * 503 OVERLOADED at once (and their connection closed). Each waits at most its command timeout
     * and is never sent late. 10,000 closed-loop clients on one endpoint queue (bench/README.md,
     * "Cost as work grows"); with 1,000 (Envoy's max_pending_requests is 1024) the refused ones came
     * straight back and starved the reads of Redis's replies.
     */
    maxPendingPerEndpoint: 10_000,
  },
  health: { interval: '2s', timeout: '1s', maxChecksPerSecond: 500 },
  /** No delay for local use; in Kubernetes (the Helm chart sets 5s) long enough for endpoints to update. */
  shutdown: { delay: '0s', timeout: '20s' },
  /** cors.origins ["*"]: as Upstash's REST API, which browsers call from any page. */
  http: { clientIdHeader: 'x-client-id', fastLane: true, cors: { origins: ['*'] } },
  log: { level: 'info' },
  metrics: { enabled: true },
  /** Locked down by default: the routing table (`/admin/routes`, `/`) needs an admin token. */
  ops: { auth: 'admin' },
} as const satisfies {
  groupStrategy: GroupStrategy
  tokenAccess: Access
  log: { level: LogLevel }
  ops: { auth: OpsAuth }
  [k: string]: unknown
}

// ---------------------------------------------------------------------------------------------
// Secret files

/**
 * The contents of the secret files a config names (token and password files), read by the loader
 * before parsing, by the path as written; or why a file could not be read. The schema does no I/O.
 */
export type SecretFiles = ReadonlyMap<string, { readonly text: string } | { readonly error: string }>

/**
 * The secret files a config document names, as written: `redis.passwordFile`, and each token's
 * `tokenFile` and `redisPasswordFile`. Looks only at the raw document, so the loader can read them
 * before the schema checks it; values of the wrong type are left for the schema to report.
 */
export function secretFilePaths(raw: unknown): string[] {
  const paths: string[] = []
  const add = (v: unknown): void => {
    if (typeof v === 'string' && !paths.includes(v)) paths.push(v)
  }
  const field = (obj: unknown, key: string): unknown =>
    typeof obj === 'object' && obj !== null && !Array.isArray(obj) ? (obj as Record<string, unknown>)[key] : undefined
  const passwordFile = field(field(raw, 'redis'), 'passwordFile')
  // An empty redis.passwordFile means no password file.
  if (passwordFile !== '') add(passwordFile)
  const tokens = field(field(raw, 'auth'), 'tokens')
  if (Array.isArray(tokens)) {
    for (const t of tokens) {
      add(field(t, 'tokenFile'))
      add(field(t, 'redisPasswordFile'))
    }
  }
  return paths
}

// A secret file's text (trimmed: files usually end with a newline that is not part of the secret),
// or the loader's reason it could not be read.
function secretText(secrets: SecretFiles, file: string): { text: string } | { error: string } {
  const s = secrets.get(file) ?? { error: `cannot read ${JSON.stringify(file)}: not given to the schema` }
  return 'text' in s ? { text: s.text.trim() } : s
}

// ---------------------------------------------------------------------------------------------
// Addresses

const ENDPOINT_FORMS = '"redis://host:port" (or "rediss://host:port", "host:port")'
const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?$/i

export interface HostPort {
  host: string
  port: number
}

// Returns a reason when `s` is not host:port; hosts are IPv4, [IPv6] or DNS names, never anything
// that could smuggle a path, user info or query into a connection string.
function splitHostPort(s: string, minPort: number): HostPort | string {
  let host: string
  let portText: string
  if (s.startsWith('[')) {
    const close = s.indexOf(']')
    if (close < 0 || s[close + 1] !== ':') return 'expected [ipv6]:port'
    host = s.slice(1, close)
    portText = s.slice(close + 2)
    if (!isIPv6(host)) return `"${host}" is not an IPv6 address`
  } else {
    const colon = s.lastIndexOf(':')
    if (colon < 0) return 'missing :port'
    host = s.slice(0, colon)
    portText = s.slice(colon + 1)
    if (host.includes(':')) return 'IPv6 addresses must be in brackets, e.g. [::1]:6379'
    const dottedNumbers = /^[\d.]+$/.test(host)
    if (dottedNumbers ? !isIPv4(host) : !HOSTNAME_RE.test(host)) return `"${host}" is not a valid host`
  }
  if (!/^\d{1,5}$/.test(portText)) return `"${portText}" is not a port number`
  const port = Number(portText)
  if (port < minPort || port > 65535) return `port ${port} is out of range ${minPort}..65535`
  return { host: host.toLowerCase(), port }
}

export interface EndpointUrl extends HostPort {
  /** True for `rediss://`. */
  tls: boolean
  /** The scheme as written; null for the bare `host:port` form, which follows `redis.tls`. */
  scheme: 'redis' | 'rediss' | null
}

/** Parses a static endpoint: `redis://host:port`, `rediss://host:port` or `host:port` (IPv6 in brackets). */
export function parseEndpointUrl(s: string): EndpointUrl {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(s)
  const scheme = m ? (m[1] as string).toLowerCase() : null
  if (scheme !== null && scheme !== 'redis' && scheme !== 'rediss') {
    throw new Error(`expected ${ENDPOINT_FORMS}, got ${JSON.stringify(s)}: unsupported scheme "${scheme}"`)
  }
  let rest = m ? (m[2] as string) : s
  if (rest.endsWith('/')) rest = rest.slice(0, -1)
  // Credentials and options are one setting for all endpoints (the redis section), and the
  // gateway serves database 0 only (SELECT is refused), so none of them belong here.
  const hp = rest.includes('@')
    ? 'credentials go in redis.username and redis.passwordFile, not in the endpoint'
    : !/[/?#]/.test(rest)
      ? splitHostPort(rest, 1)
      : m || !rest.includes('/')
        ? 'no path, database number or options after host:port'
        : 'the scheme must be written "redis://" or "rediss://"'
  if (typeof hp === 'string') throw new Error(`expected ${ENDPOINT_FORMS}, got ${JSON.stringify(s)}: ${hp}`)
  return { ...hp, tls: scheme === 'rediss', scheme }
}

/** Parses a listen address `host:port` (`[::]:8080` for IPv6); port 0 asks the OS for a free port. */
export function parseListenAddress(s: string): HostPort {
  const hp = splitHostPort(s, 0)
  if (typeof hp === 'string') throw new Error(`expected "host:port" (IPv6 as "[::]:8080"), got ${JSON.stringify(s)}: ${hp}`)
  return hp
}

// ---------------------------------------------------------------------------------------------
// Token targets

const TARGET_RE = /^[a-z0-9*-]{1,253}$/

/** Compiles token target globs once; the matcher is on the request path. */
export function compileTargets(targets: readonly string[]): (name: string) => boolean {
  if (targets.includes('*')) return () => true
  const res = targets.map((t) => new RegExp(`^${t.split('*').join('.*')}$`))
  return (name) => res.some((re) => re.test(name))
}

// ---------------------------------------------------------------------------------------------
// Field schemas

// Runs a parser that throws, turning its message into an issue at the current path.
function parsed<T>(parse: (v: string | number) => T, kind: string, check?: (v: T) => string | undefined) {
  return (v: unknown, ctx: z.RefinementCtx): T => {
    if (typeof v !== 'string' && typeof v !== 'number') {
      ctx.addIssue({ code: 'custom', message: `expected ${kind}, got ${describeValue(v)}` })
      return z.NEVER
    }
    try {
      const out = parse(v)
      const problem = check?.(out)
      if (problem !== undefined) {
        ctx.addIssue({ code: 'custom', message: `${problem}, got ${JSON.stringify(v)}` })
        return z.NEVER
      }
      return out
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
      return z.NEVER
    }
  }
}

const positive = (v: number): string | undefined => (v > 0 ? undefined : 'must be greater than 0')
const anyDuration = (): undefined => undefined
const durationMs = (dflt: string, check: (v: number) => string | undefined = positive) =>
  z.unknown().default(dflt).transform(parsed(parseDuration, 'a duration like "2s"', check))
const sizeBytes = (dflt: string) =>
  z.unknown().default(dflt).transform(parsed(parseSize, 'a size like "10MiB"', positive))
/** A whole number of things, at least 1 (a number, or its decimal text from an environment variable). */
const count = (dflt: number, check: (v: number) => string | undefined = positive) =>
  z.unknown().default(dflt).transform(
    parsed(
      (v) => {
        const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN
        if (!Number.isSafeInteger(n)) throw new Error(`expected a whole number, got ${JSON.stringify(v)}`)
        return n
      },
      'a whole number',
      check,
    ),
  )
/** 0 allowed: "none" (limits.maxPendingPerEndpoint: 0 refuses at once instead of queueing). */
const notNegative = (v: number): string | undefined => (v >= 0 ? undefined : 'must be 0 or more')

// Keeps the string as written once `check` (a parser that throws) accepts it.
function validatedBy(check: (s: string) => unknown) {
  return (s: string, ctx: z.RefinementCtx): string => {
    try {
      check(s)
      return s
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
      return z.NEVER
    }
  }
}

const listenAddress = (dflt: string) => z.string().default(dflt).transform(validatedBy(parseListenAddress))

const NAME_RULE = 'lower-case letters, digits and "-", at most 63 characters, starting and ending with a letter or digit'
const dnsName = (what: string) =>
  z.string().refine((s) => NAME_RE.test(s), { error: (iss) => `expected ${what} (${NAME_RULE}), got ${describeValue(iss.input)}` })

/** `discovery.kubernetes.namespaces: ["*"]`: every namespace (cluster-wide list and watch). */
export const ALL_NAMESPACES = '*'

/** Namespace names, or `["*"]` alone; duplicates dropped. */
const watchedNamespaces = z
  .array(
    z.string().refine((s) => s === ALL_NAMESPACES || NAME_RE.test(s), {
      error: (iss) => `expected a namespace name (${NAME_RULE}) or "*" for every namespace, got ${describeValue(iss.input)}`,
    }),
  )
  .min(1, { error: 'expected at least one namespace, or ["*"] for every namespace' })
  .transform((ns) => [...new Set(ns)])
  .superRefine((ns, rctx) => {
    if (ns.includes(ALL_NAMESPACES) && ns.length > 1) {
      const names = JSON.stringify(ns.filter((n) => n !== ALL_NAMESPACES))
      rctx.addIssue({
        code: 'custom',
        message: `"*" (every namespace) must be the only element, but namespaces are listed with it (${names}): write ["*"] alone, or the namespaces without "*"`,
      })
    }
  })

/** optIn with a labelSelector that refuses redis-gateway.io/expose=true would select nothing. */
function optInConsistent(k: { labelSelector: string; optIn: boolean }, ctx: z.RefinementCtx): void {
  if (!k.optIn || typeof k.labelSelector !== 'string') return
  let reqs
  try {
    reqs = parseLabelSelector(k.labelSelector)
  } catch {
    return // reported at labelSelector
  }
  const clash = reqs.find((r) => r.key === OPT_IN_LABEL && !requirementMatches(r, { [OPT_IN_LABEL]: 'true' }))
  if (clash) {
    ctx.addIssue({
      code: 'custom',
      path: ['labelSelector'],
      message: `with optIn: true only Services labelled ${OPT_IN_LABEL}=true are instances, but this selector excludes that label value, so nothing would be discovered`,
    })
  }
}

const endpoint = z.string().transform(validatedBy(parseEndpointUrl))

const annotationValue = z.unknown().transform((v, ctx) => {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v)
  ctx.addIssue({ code: 'custom', message: `expected a string, number or boolean, got ${describeValue(v)}` })
  return z.NEVER
})

/**
 * Reports an item whose key repeats an earlier item's, at the later item. Runs even when some items
 * failed to parse (see `always`), so `keyOf` must cope with raw input and return undefined to skip.
 */
function unique<T>(keyOf: (item: T) => unknown, subPath: string | null, message: (key: string, first: number) => string) {
  return (items: T[], ctx: z.RefinementCtx): void => {
    if (!Array.isArray(items)) return
    const seen = new Map<string, number>()
    items.forEach((item, i) => {
      const k = keyOf(item)
      if (typeof k !== 'string') return
      const first = seen.get(k)
      if (first === undefined) seen.set(k, i)
      else ctx.addIssue({ code: 'custom', path: subPath === null ? [i] : [i, subPath], message: message(k, first) })
    })
  }
}

// Cross-item checks should report alongside per-item errors, not only once those are fixed.
const always = { when: () => true }
const nameOf = (item: unknown): unknown => (item as { name?: unknown } | null)?.name

// For cross-checks that may see endpoints whose own check failed (and is reported there).
function tryParseEndpoint(e: unknown): EndpointUrl | undefined {
  try {
    return typeof e === 'string' ? parseEndpointUrl(e) : undefined
  } catch {
    return undefined
  }
}

const endpointKey = (e: unknown): string | undefined => {
  const u = tryParseEndpoint(e)
  return u && endpointId(u.host, u.port)
}

const staticInstance = z.strictObject({
  name: dnsName('an instance name'),
  /** As written: `redis://host:port`, `rediss://host:port` or `host:port`; see parseEndpointUrl. */
  endpoints: z
    .array(endpoint)
    .min(1, { error: 'expected at least one endpoint' })
    .superRefine(
      unique(endpointKey, null, (k, first) => `duplicate endpoint ${k} (also endpoints[${first}])`),
      always,
    ),
  annotations: z.record(z.string(), annotationValue).default({}),
})

const VISIBLE_ASCII_RE = /^[\x21-\x7e]+$/
/** Redis ACL user names: anything without spaces or controls (ACL SETUSER's own rule); at most 256 here. */
const REDIS_USER_RE = /^[\x21-\x7e]{1,256}$/
const TOKEN_RULE = 'visible ASCII characters, no spaces'

const tokenSchema = (secrets: SecretFiles) =>
  z
    .strictObject({
      name: dnsName('a token name'),
      access: z.enum(ACCESS_LEVELS).default(DEFAULTS.tokenAccess),
      targets: z
        .array(
          z.string().refine((s) => TARGET_RE.test(s), {
            error: (iss) => `expected an instance or group name, optionally with * wildcards, got ${describeValue(iss.input)}`,
          }),
        )
        .min(1, { error: 'expected at least one target (use ["*"] for all)' })
        .default([...DEFAULTS.tokenTargets]),
      token: z.string().optional(),
      sha256: z.string().optional(),
      tokenFile: z.string().optional(),
      redisUser: z
        .string()
        .refine((s) => REDIS_USER_RE.test(s), {
          error: (iss) => `expected a Redis ACL user name (visible ASCII, no spaces), got ${describeValue(iss.input)}`,
        })
        .optional(),
      redisPasswordFile: z.string().optional(),
    })
    .transform((t, rctx) => {
      const digest = tokenDigest(t, secrets)
      if (typeof digest !== 'string') rctx.addIssue({ code: 'custom', ...digest })
      let redisUser: { name: string; password: string; passwordFile: string } | null = null
      if (t.redisUser !== undefined) {
        let password = ''
        if (t.redisPasswordFile === undefined) {
          rctx.addIssue({ code: 'custom', path: ['redisPasswordFile'], message: `the password of Redis user "${t.redisUser}" is needed: give redisPasswordFile` })
        } else {
          const file = secretText(secrets, t.redisPasswordFile)
          if ('text' in file) password = file.text
          else rctx.addIssue({ code: 'custom', path: ['redisPasswordFile'], message: file.error })
        }
        redisUser = { name: t.redisUser, password, passwordFile: t.redisPasswordFile ?? '' }
      } else if (t.redisPasswordFile !== undefined) {
        rctx.addIssue({ code: 'custom', path: ['redisPasswordFile'], message: 'redisPasswordFile is only used with redisUser' })
      }
      // A failed item keeps its name (with an empty digest) so duplicate-name checks still see it.
      return {
        name: t.name,
        access: t.access,
        /** Instance/group name globs; `*` matches any run of characters. */
        targets: t.targets,
        /** Lower-case hex SHA-256 of the token; the plain token is never kept. */
        sha256: typeof digest === 'string' ? digest : '',
        /**
         * An operator-managed Redis ACL user the token runs as (its key and channel patterns apply), with
         * its password from `redisPasswordFile`; null: the user the gateway provisions for `access`.
         */
        redisUser,
      }
    })

type TokenSecret = { token?: string | undefined; sha256?: string | undefined; tokenFile?: string | undefined }

// The secret itself never goes into a message: only what is wrong with it.
function tokenDigest(t: TokenSecret, secrets: SecretFiles): string | { path: string[]; message: string } {
  const given = (['token', 'sha256', 'tokenFile'] as const).filter((k) => t[k] !== undefined)
  if (given.length !== 1) {
    const got = given.length > 1 ? `, got ${given.join(' and ')}` : ''
    return { path: [], message: `give exactly one of token, sha256 or tokenFile${got}` }
  }
  if (t.sha256 !== undefined) {
    if (!/^[0-9a-f]{64}$/i.test(t.sha256)) return { path: ['sha256'], message: `expected 64 hex characters, got ${describeValue(t.sha256)}` }
    return t.sha256.toLowerCase()
  }
  let plain: string
  if (t.tokenFile !== undefined) {
    const file = secretText(secrets, t.tokenFile)
    if ('error' in file) return { path: ['tokenFile'], message: file.error }
    plain = file.text
    if (plain === '') return { path: ['tokenFile'], message: `file ${JSON.stringify(t.tokenFile)} is empty` }
  } else {
    plain = t.token as string
    if (plain === '') return { path: ['token'], message: 'must not be empty' }
  }
  if (!VISIBLE_ASCII_RE.test(plain)) return { path: [given[0] as string], message: `the token must be ${TOKEN_RULE}` }
  return sha256Hex(plain)
}

/** Lower-case hex SHA-256 of a string's UTF-8 bytes: how tokens are compared and files fingerprinted. */
export function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex')
}

// HTTP header field names are RFC 9110 tokens.
const HEADER_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** A browser Origin: scheme, host (name, IPv4 or [IPv6]) and an optional port; no path, no trailing slash. */
const ORIGIN_RE = /^[a-z][a-z0-9+.-]*:\/\/(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i

/** The config file schema, given the contents of the secret files the config names (secretFilePaths). */
export function configSchema(secrets: SecretFiles) {
  return z
    .strictObject({
      listen: z
        .strictObject({ data: listenAddress(DEFAULTS.listen.data), ops: listenAddress(DEFAULTS.listen.ops) })
        .prefault({}),
      discovery: z
        .strictObject({
          kubernetes: z
            .strictObject({
              namespaces: watchedNamespaces.default([...DEFAULTS.kubernetes.namespaces]),
              servicePrefix: z
                .string()
                .default(DEFAULTS.kubernetes.servicePrefix)
                .refine((s) => /^[a-z0-9-]{0,62}$/.test(s), {
                  error: (iss) => `expected the start of a Service name (lower-case letters, digits and "-"), got ${describeValue(iss.input)}`,
                }),
              // Sent with every list and watch of Services and EndpointSlices (README "Kubernetes discovery").
              labelSelector: z.string().default(DEFAULTS.kubernetes.labelSelector).transform(validatedBy(checkDiscoverySelector)),
              optIn: z.boolean().default(DEFAULTS.kubernetes.optIn),
              // Recognise the Services of known Redis charts and operators by their labels (README "Kubernetes discovery").
              operators: z.boolean().default(DEFAULTS.kubernetes.operators),
            })
            .superRefine(optInConsistent)
            .nullable()
            .default(null),
          static: z
            .strictObject({
              instances: z
                .array(staticInstance)
                .default([])
                .superRefine(
                  unique(nameOf, 'name', (k, first) => `duplicate instance name "${k}" (also instances[${first}])`),
                  always,
                ),
            })
            .nullable()
            .default(null),
        })
        .prefault({}),
      groups: z
        .record(
          z.string(),
          z.strictObject({ strategy: z.enum(GROUP_STRATEGIES).default(DEFAULTS.groupStrategy) }).prefault({}),
        )
        .default({})
        .superRefine((groups, rctx) => {
          if (typeof groups !== 'object' || groups === null) return
          for (const name of Object.keys(groups)) {
            if (!NAME_RE.test(name)) {
              rctx.addIssue({ code: 'custom', path: [name], message: `not a valid group name: group names are ${NAME_RULE}` })
            }
          }
        }, always),
      auth: z
        .strictObject({
          tokens: z
            .array(tokenSchema(secrets))
            .default([])
            .superRefine(unique(nameOf, 'name', (k, first) => `duplicate token name "${k}" (also tokens[${first}])`), always)
            // Two names for one secret would make the caller's identity (and access) ambiguous.
            .superRefine(
              unique((t) => (t as { sha256?: unknown } | null)?.sha256 || undefined, null, (_, first) => `same token as tokens[${first}]`),
              always,
            ),
        })
        .prefault({}),
      redis: z
        .strictObject({
          username: z.string().default(DEFAULTS.redis.username),
          passwordFile: z.string().default(DEFAULTS.redis.passwordFile),
          tls: z.boolean().default(DEFAULTS.redis.tls),
          commandTimeout: durationMs(DEFAULTS.redis.commandTimeout),
          connectTimeout: durationMs(DEFAULTS.redis.connectTimeout),
          aclUsers: z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean().default(DEFAULTS.redis.aclUsers)),
          allowUndiscoveredClusterNodes: z.boolean().default(DEFAULTS.redis.allowUndiscoveredClusterNodes),
        })
        .prefault({})
        .transform((r, rctx) => {
          let password = ''
          if (r.passwordFile !== '') {
            const file = secretText(secrets, r.passwordFile)
            if ('text' in file) password = file.text
            else rctx.addIssue({ code: 'custom', path: ['passwordFile'], message: file.error })
          }
          return {
            username: r.username,
            /** From redis.passwordFile or GATEWAY_REDIS_PASSWORD; never written in the file itself. */
            password,
            passwordFile: r.passwordFile,
            tls: r.tls,
            commandTimeoutMs: r.commandTimeout,
            connectTimeoutMs: r.connectTimeout,
            /**
             * Read, write and admin tokens run as Redis ACL users the gateway provisions on each endpoint
             * (so scripts cannot exceed the token's rights); false: never create users, and refuse scripts
             * and functions to non-admin tokens.
             */
            aclUsers: r.aclUsers,
            /**
             * Redis Cluster: connect to nodes the cluster announces that discovery does not list
             * (false: only discovered addresses, so a hostile CLUSTER SHARDS reply cannot point
             * the gateway anywhere else).
             */
            allowUndiscoveredClusterNodes: r.allowUndiscoveredClusterNodes,
          }
        }),
      // What one request may cost (README "Limits"): sizes and counts checked before work is done, the
      // reply size enforced while it streams in from Redis, and one byte budget shared by all requests.
      limits: z
        .strictObject({
          maxBody: sizeBytes(DEFAULTS.limits.maxBody),
          maxHeader: sizeBytes(DEFAULTS.limits.maxHeader),
          maxHeaders: count(DEFAULTS.limits.maxHeaders),
          maxArgs: count(DEFAULTS.limits.maxArgs),
          maxCommands: count(DEFAULTS.limits.maxCommands),
          maxReply: sizeBytes(DEFAULTS.limits.maxReply),
          inflightBytes: sizeBytes(DEFAULTS.limits.inflightBytes),
          writeTimeout: durationMs(DEFAULTS.limits.writeTimeout),
          maxInflightPerEndpoint: count(DEFAULTS.limits.maxInflightPerEndpoint),
          maxPendingPerEndpoint: count(DEFAULTS.limits.maxPendingPerEndpoint, notNegative),
        })
        .prefault({})
        .transform((l) => ({
          maxBodyBytes: l.maxBody,
          maxHeaderBytes: l.maxHeader,
          /** Header lines per request; more is a 431. */
          maxHeaders: l.maxHeaders,
          /** Arguments of one request (all commands of a pipeline together); more is a 413. */
          maxArgs: l.maxArgs,
          /** Commands in one pipeline or transaction; more is a 413. */
          maxCommands: l.maxCommands,
          /** Reply bytes kept for one request (plus REPLY_ELEMENT_BYTES per array element); more is a 413. */
          maxReplyBytes: l.maxReply,
          /** Request bodies and replies held at once by all requests together, beyond each one's first SMALL_REQUEST_BYTES; more is a 503. */
          inflightBytes: l.inflightBytes,
          /** A client that has not taken its reply off the socket after this long is disconnected. */
          writeTimeoutMs: l.writeTimeout,
          /** Attempts in flight on one endpoint at once; more wait for a slot, first come first served. */
          maxInflightPerEndpoint: l.maxInflightPerEndpoint,
          /** Requests waiting per endpoint (for its connection or a slot); more get 503 OVERLOADED at once. */
          maxPendingPerEndpoint: l.maxPendingPerEndpoint,
        })),
      // Active health checks (ROLE) per endpoint; over all endpoints at most maxChecksPerSecond
      // (the interval stretches beyond interval x maxChecksPerSecond endpoints).
      health: z
        .strictObject({
          interval: durationMs(DEFAULTS.health.interval),
          timeout: durationMs(DEFAULTS.health.timeout),
          maxChecksPerSecond: count(DEFAULTS.health.maxChecksPerSecond),
        })
        .prefault({})
        .transform((h) => ({ intervalMs: h.interval, timeoutMs: h.timeout, maxChecksPerSecond: h.maxChecksPerSecond })),
      // Graceful shutdown on SIGTERM/SIGINT: not ready (but serving) for `delay` while endpoints
      // update, then stop accepting and give in-flight requests at most `timeout`.
      shutdown: z
        .strictObject({
          // 0 is meaningful here: no delay (local use, or no load balancer in front).
          delay: durationMs(DEFAULTS.shutdown.delay, anyDuration),
          timeout: durationMs(DEFAULTS.shutdown.timeout),
        })
        .prefault({})
        .transform((s) => ({ delayMs: s.delay, timeoutMs: s.timeout })),
      http: z
        .strictObject({
          clientIdHeader: z
            .string()
            .default(DEFAULTS.http.clientIdHeader)
            .refine((s) => HEADER_NAME_RE.test(s), { error: (iss) => `expected an HTTP header name, got ${describeValue(iss.input)}` })
            .transform((s) => s.toLowerCase()),
          // Serve plain HTTP/1.1 requests straight from the socket (src/http/fast-lane/); off: every
          // request goes through node:http and Hono.
          fastLane: z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean().default(DEFAULTS.http.fastLane)),
          // Which browser origins may read the data port's replies (src/http/cors.ts): ["*"] any, [] none (CORS off).
          cors: z
            .strictObject({
              origins: z
                .array(
                  z
                    .string()
                    .refine((s) => s === '*' || ORIGIN_RE.test(s), {
                      error: (iss) => `expected "*" or an origin such as "https://app.example.com" (scheme, host, optional port; no path), got ${describeValue(iss.input)}`,
                    })
                    .transform((s) => s.toLowerCase()),
                )
                .refine((a) => !a.includes('*') || a.length === 1, { error: '"*" stands alone: it already allows every origin' })
                .default([...DEFAULTS.http.cors.origins]),
            })
            .prefault({}),
        })
        .prefault({}),
      log: z
        .strictObject({
          // Lower-cased so GATEWAY_LOG_LEVEL=DEBUG works as people type it.
          level: z.preprocess((v) => (typeof v === 'string' ? v.trim().toLowerCase() : v), logLevel.default(DEFAULTS.log.level)),
        })
        .prefault({}),
      // Prometheus metrics on the ops port (`/metrics`); off: no metric is kept or served.
      metrics: z
        .strictObject({
          // "true"/"false" as text too, so GATEWAY_METRICS_ENABLED=false works.
          enabled: z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean().default(DEFAULTS.metrics.enabled)),
        })
        .prefault({}),
      // Who may see the topology on the ops port (`/admin/routes`, the page `/`): `admin` tokens, or
      // anyone (`none`). /metrics, /healthz and /readyz are open either way (Prometheus, probes).
      ops: z.strictObject({ auth: z.enum(OPS_AUTH_MODES).default(DEFAULTS.ops.auth) }).prefault({}),
    })
    .superRefine((cfg, rctx) => {
      // TLS is one setting for all endpoints (the topology has no per-endpoint TLS), so a scheme
      // that contradicts redis.tls would be silently ignored; say so instead.
      // Runs beside non-fatal issues elsewhere, so the shapes are checked before use.
      const instances = cfg.discovery.static?.instances
      if (!Array.isArray(instances)) return
      instances.forEach((inst, i) => {
        if (!Array.isArray(inst?.endpoints)) return
        inst.endpoints.forEach((e, j) => {
          const scheme = tryParseEndpoint(e)?.scheme ?? null
          if (scheme === null || (scheme === 'rediss') === cfg.redis.tls) return
          rctx.addIssue({
            code: 'custom',
            path: ['discovery', 'static', 'instances', i, 'endpoints', j],
            message:
              scheme === 'rediss'
                ? `${JSON.stringify(e)} asks for TLS but redis.tls is false; TLS is set for all endpoints with redis.tls: true`
                : `${JSON.stringify(e)} asks for plain TCP but redis.tls is true; write "host:port" or "rediss://host:port"`,
          })
        })
      })
    })
}

export type ConfigSchema = ReturnType<typeof configSchema>

/** The typed configuration the rest of the gateway reads: what the schema makes of a file, read-only. */
export type GatewayConfig = DeepReadonly<z.output<ConfigSchema>>
export type StaticInstanceConfig = NonNullable<GatewayConfig['discovery']['static']>['instances'][number]
export type TokenConfig = GatewayConfig['auth']['tokens'][number]

/** The configuration with every default: what an empty file gives (no env applied). */
export function defaultConfig(): GatewayConfig {
  return configSchema(new Map()).parse({})
}

/** A short description of a value for messages: strings quoted and cut, structures by kind. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v)
  return String(v)
}

/** A copy safe to log or show on the admin view: the password and token digests are replaced. */
export function redactConfig(cfg: GatewayConfig): GatewayConfig {
  return {
    ...cfg,
    redis: { ...cfg.redis, password: cfg.redis.password === '' ? '' : '<redacted>' },
    auth: {
      tokens: cfg.auth.tokens.map((t) => ({
        ...t,
        sha256: '<redacted>',
        redisUser: t.redisUser === null ? null : { ...t.redisUser, password: '<redacted>' },
      })),
    },
  }
}
