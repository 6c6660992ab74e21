// Tests for loading the config: a full example file, defaults, env overrides, secret files, and
// error messages that name every bad key (by dotted path, env var or line and column).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ConfigError, ENV_VARS, configPath, formatPath, loadConfig, loadRuntimeEnv } from './load.js'
import { defaultConfig, sha256Hex } from './schema.js'

const load = (text: string, env: NodeJS.ProcessEnv = {}) => loadConfig({ text, env })

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

const loadError = (text: string, env: NodeJS.ProcessEnv = {}) => errorOf(() => load(text, env))

const FULL_EXAMPLE = `
listen: { data: "0.0.0.0:8080", ops: "0.0.0.0:9090" }
discovery:
  kubernetes: { namespaces: [redis-system], servicePrefix: "redis-" }   # optional
  static:                                                                # optional
    instances:
      - name: orders
        endpoints: ["redis://127.0.0.1:6379", "redis://127.0.0.1:6380"]
        annotations: { redis-gateway.io/read-policy: prefer-replica }
groups: { sessions: { strategy: sticky } }
auth:
  tokens:
    - { name: app, token: "plain-text-for-dev", access: write, targets: ["*"] }
    - { name: ro, sha256: "${sha256Hex('ro-secret').toUpperCase()}", access: read, targets: ["orders"] }
redis: { username: "", passwordFile: "", tls: false, commandTimeout: 2s, connectTimeout: 1s }
`

describe('loadConfig: valid files', () => {
  it('parses a full example file: discovery, groups, tokens and redis settings', () => {
    const cfg = load(FULL_EXAMPLE)
    expect(cfg.discovery.kubernetes).toEqual({ namespaces: ['redis-system'], servicePrefix: 'redis-', labelSelector: '', optIn: false, operators: true })
    expect(cfg.discovery.static?.instances).toEqual([
      {
        name: 'orders',
        endpoints: ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6380'],
        annotations: { 'redis-gateway.io/read-policy': 'prefer-replica' },
      },
    ])
    expect(cfg.groups).toEqual({ sessions: { strategy: 'sticky' } })
    expect(cfg.auth.tokens).toEqual([
      { name: 'app', access: 'write', targets: ['*'], sha256: sha256Hex('plain-text-for-dev'), redisUser: null },
      { name: 'ro', access: 'read', targets: ['orders'], sha256: sha256Hex('ro-secret'), redisUser: null },
    ])
    expect(cfg.redis).toEqual({
      username: '',
      password: '',
      passwordFile: '',
      tls: false,
      commandTimeoutMs: 2000,
      connectTimeoutMs: 1000,
      aclUsers: true,
      allowUndiscoveredClusterNodes: false,
    })
  })

  it('keeps no plain token anywhere in the result', () => {
    expect(JSON.stringify(load(FULL_EXAMPLE))).not.toContain('plain-text-for-dev')
  })

  it.each(['', '# only a comment\n', '---\n'])('gives every default for %j', (text) => {
    expect(load(text)).toEqual(defaultConfig())
  })

  it('treats an empty section as present with its defaults', () => {
    const cfg = load('discovery:\n  kubernetes:\n  static:\nredis:\ngroups:\n  sessions:\n')
    expect(cfg.discovery.kubernetes).toEqual({ namespaces: ['redis-system'], servicePrefix: 'redis-', labelSelector: '', optIn: false, operators: true })
    expect(cfg.discovery.static).toEqual({ instances: [] })
    expect(cfg.redis.commandTimeoutMs).toBe(2000)
    expect(cfg.groups).toEqual({ sessions: { strategy: 'weighted' } })
  })

  it('leaves discovery sources off when their keys are absent', () => {
    expect(load('discovery: {}').discovery).toEqual({ kubernetes: null, static: null })
  })

  it('converts durations, sizes and normalises case', () => {
    const cfg = load(`
redis: { commandTimeout: 1m30s, connectTimeout: 250 }
limits: { maxBody: 1MB, maxHeader: 16KiB, maxHeaders: 50, maxArgs: 1000, maxCommands: 100, maxReply: 2MiB, inflightBytes: 64MiB, writeTimeout: 10s, maxInflightPerEndpoint: 64, maxPendingPerEndpoint: 0 }
http: { clientIdHeader: X-Tenant-Id }
log: { level: WARN }
`)
    expect(cfg.redis.commandTimeoutMs).toBe(90_000)
    expect(cfg.redis.connectTimeoutMs).toBe(250)
    expect(cfg.limits).toEqual({
      maxBodyBytes: 1_000_000,
      maxHeaderBytes: 16_384,
      maxHeaders: 50,
      maxArgs: 1000,
      maxCommands: 100,
      maxReplyBytes: 2 * 1024 * 1024,
      inflightBytes: 64 * 1024 * 1024,
      writeTimeoutMs: 10_000,
      maxInflightPerEndpoint: 64,
      maxPendingPerEndpoint: 0,
    })
    expect(cfg.http.clientIdHeader).toBe('x-tenant-id')
    expect(cfg.log.level).toBe('warn')
  })

  it('reads the shutdown section: delay may be 0, timeout must be positive, unknown keys are named', () => {
    expect(load('').shutdown).toEqual({ delayMs: 0, timeoutMs: 20_000 })
    expect(load('shutdown: { delay: 5s, timeout: 1m30s }').shutdown).toEqual({ delayMs: 5000, timeoutMs: 90_000 })
    expect(load('shutdown: { delay: 0, timeout: 250 }').shutdown).toEqual({ delayMs: 0, timeoutMs: 250 })
    expect(load('shutdown:\n').shutdown).toEqual({ delayMs: 0, timeoutMs: 20_000 })
    const err = loadError('shutdown:\n  delay: -1s\n  timeout: 0s\n  grace: 5s\n')
    expect(err.message).toContain('shutdown.delay: invalid duration "-1s"')
    expect(err.message).toMatch(/shutdown\.timeout: must be greater than 0.*\(line 3\)/)
    expect(err.message).toContain('shutdown.grace: unknown key')
  })

  it('coerces YAML numbers and booleans in annotations to strings', () => {
    const cfg = load(`
discovery:
  static:
    instances:
      - { name: a, endpoints: ["h:1"], annotations: { redis-gateway.io/weight: 50, x/flag: true, redis-gateway.io/maintenance: off } }
`)
    expect(cfg.discovery.static?.instances[0]?.annotations).toEqual({
      'redis-gateway.io/weight': '50',
      'x/flag': 'true',
      // YAML 1.2: `off` stays a string, as a Kubernetes user expects.
      'redis-gateway.io/maintenance': 'off',
    })
  })

  it('dedupes namespaces and accepts IPv6 listen addresses', () => {
    const cfg = load('listen: { data: "[::]:8080", ops: "[::1]:0" }\ndiscovery: { kubernetes: { namespaces: [a, b, a] } }')
    expect(cfg.listen).toEqual({ data: '[::]:8080', ops: '[::1]:0' })
    expect(cfg.discovery.kubernetes?.namespaces).toEqual(['a', 'b'])
  })

  it('accepts rediss:// endpoints when redis.tls is true', () => {
    const cfg = load('redis: { tls: true }\ndiscovery: { static: { instances: [{ name: a, endpoints: ["rediss://h:1", "h:2"] }] } }')
    expect(cfg.discovery.static?.instances[0]?.endpoints).toEqual(['rediss://h:1', 'h:2'])
  })
})

describe('loadConfig: errors', () => {
  it('names the bad endpoint by its dotted path', () => {
    const err = loadError(`discovery:
  static:
    instances:
      - { name: a, endpoints: ["redis://127.0.0.1:6379"] }
      - { name: b, endpoints: ["redis//x"] }
`)
    expect(err.message).toMatch(
      /^config gateway\.yaml: discovery\.static\.instances\[1\]\.endpoints\[0\]: expected "redis:\/\/host:port" .*got "redis\/\/x".*\(line 5\)$/,
    )
    expect(err.issues).toEqual([
      expect.objectContaining({ path: 'discovery.static.instances[1].endpoints[0]', line: 5 }),
    ])
  })

  it('reports unknown keys with a suggestion', () => {
    const err = loadError('redis: { comandTimeout: 2s }')
    expect(err.message).toBe('config gateway.yaml: redis.comandTimeout: unknown key (did you mean "commandTimeout"?) (line 1)')
  })

  it('lists the known keys when nothing is close', () => {
    expect(loadError('limits: { whatever: 1 }').message).toContain(
      'limits.whatever: unknown key (known keys: maxBody, maxHeader, maxHeaders, maxArgs, maxCommands, maxReply, inflightBytes, writeTimeout, maxInflightPerEndpoint, maxPendingPerEndpoint)',
    )
  })

  it('checks the per-endpoint bounds: in flight at least 1, waiting 0 or more, whole numbers', () => {
    const issues = (text: string): [string, string][] => loadError(text).issues.map(({ path, message }) => [path, message])
    expect(issues('limits: { maxInflightPerEndpoint: 0, maxPendingPerEndpoint: -1 }')).toEqual([
      ['limits.maxInflightPerEndpoint', 'must be greater than 0, got 0'],
      ['limits.maxPendingPerEndpoint', 'must be 0 or more, got -1'],
    ])
    expect(issues('limits: { maxInflightPerEndpoint: 1.5, maxPendingPerEndpoint: lots }')).toEqual([
      ['limits.maxInflightPerEndpoint', 'expected a whole number, got 1.5'],
      ['limits.maxPendingPerEndpoint', 'expected a whole number, got "lots"'],
    ])
    expect(loadError('limits: { maxPendingPerEndpont: 5 }').message).toContain(
      'limits.maxPendingPerEndpont: unknown key (did you mean "maxPendingPerEndpoint"?)',
    )
    const cfg = load('limits: { maxInflightPerEndpoint: "10" }')
    expect(cfg.limits.maxInflightPerEndpoint).toBe(10)
    expect(cfg.limits.maxPendingPerEndpoint).toBe(10_000)
  })

  it('suggests keys inside lists, groups and optional sections too', () => {
    const err = loadError(`
discovery:
  kubernetes: { namespace: [a] }
  static: { instances: [{ name: a, endpoints: ["h:1"], anotations: {} }] }
groups: { web: { strateg: sticky } }
auth: { tokens: [{ name: a, token: x, acess: write }] }
http: { cors: { origin: ["*"] } }
`)
    expect(err.issues.map(({ path, message }) => [path, message])).toEqual([
      ['discovery.kubernetes.namespace', 'unknown key (did you mean "namespaces"?)'],
      ['discovery.static.instances[0].anotations', 'unknown key (did you mean "annotations"?)'],
      ['groups.web.strateg', 'unknown key (did you mean "strategy"?)'],
      ['auth.tokens[0].acess', 'unknown key (did you mean "access"?)'],
      ['http.cors.origin', 'unknown key (did you mean "origins"?)'],
    ])
  })

  it('refuses a literal redis password and says where it goes', () => {
    expect(loadError('redis: { password: hunter2 }').message).toContain(
      'redis.password: unknown key: put the password in a file named by redis.passwordFile, or in GATEWAY_REDIS_PASSWORD',
    )
  })

  it('names every bad key at once', () => {
    const err = loadError(`
listn: {}
listen: { data: "x" }
discovery:
  static:
    instances:
      - { name: Orders, endpoints: [] }
      - { name: b, endpoints: ["h:1", "h:1"], annotations: { k: null } }
groups: { Bad_Name: {}, ok: { strategy: stiky } }
auth:
  tokens:
    - { name: t, token: "a b" }
    - { name: u, access: superuser, token: x }
redis: { tls: "yes", connectTimeout: 0s, commandTimeout: -1s }
limits: { maxBody: lots }
log: { level: loud }
`)
    expect(err.issues.map((i) => i.path).sort()).toEqual(
      [
        'listn',
        'listen.data',
        'discovery.static.instances[0].name',
        'discovery.static.instances[0].endpoints',
        'discovery.static.instances[1].endpoints[1]',
        'discovery.static.instances[1].annotations.k',
        'groups.ok.strategy',
        'groups.Bad_Name',
        'auth.tokens[0].token',
        'auth.tokens[1].access',
        'redis.tls',
        'redis.connectTimeout',
        'redis.commandTimeout',
        'limits.maxBody',
        'log.level',
      ].sort(),
    )
    expect(err.message).toMatch(/^config gateway\.yaml: 15 problems:\n {2}/)
    const byPath = Object.fromEntries(err.issues.map((i) => [i.path, i.message]))
    expect(byPath['listn']).toBe('unknown key (did you mean "listen"?)')
    expect(byPath['discovery.static.instances[0].endpoints']).toBe('expected at least one endpoint')
    expect(byPath['discovery.static.instances[1].endpoints[1]']).toBe('duplicate endpoint h:1 (also endpoints[0])')
    expect(byPath['discovery.static.instances[1].annotations.k']).toBe('expected a string, number or boolean, got null')
    expect(byPath['groups.ok.strategy']).toBe(
      'expected one of "weighted", "sticky", "round-robin", "least-request", got "stiky" (did you mean "sticky"?)',
    )
    expect(byPath['redis.tls']).toBe('expected true or false, got "yes"')
    expect(byPath['redis.connectTimeout']).toBe('must be greater than 0, got "0s"')
    expect(byPath['redis.commandTimeout']).toMatch(/^invalid duration "-1s": expected/)
    expect(byPath['auth.tokens[0].token']).toBe('the token must be visible ASCII characters, no spaces')
  })

  it('reports YAML syntax errors with line and column', () => {
    const err = loadError('listen:\n  data: [1,\nredis: {}')
    expect(err.issues).toHaveLength(1)
    expect(err.message).toMatch(/^config gateway\.yaml: line \d+, column \d+: /)
  })

  it('reports duplicate YAML keys with their position', () => {
    expect(loadError('log: {}\nlog: {}').message).toMatch(/^config gateway\.yaml: line 2, column 1: Map keys must be unique/)
  })

  it('wants a mapping at the top level', () => {
    expect(loadError('- a').message).toBe('config gateway.yaml: expected a mapping of config keys at the top level, got a list')
  })

  it('reports a missing required key as required, at the nearest line', () => {
    const err = loadError('discovery:\n  static:\n    instances:\n      - name: a\n')
    expect(err.issues).toEqual([{ path: 'discovery.static.instances[0].endpoints', message: 'required', line: 4 }])
  })

  it('reports duplicate instance and token names even beside other errors', () => {
    const err = loadError(`
discovery: { static: { instances: [{ name: a, endpoints: ["h:1"] }, { name: a, endpoints: [] }] } }
auth: { tokens: [{ name: t, token: x }, { name: t, token: "bad token" }] }
`)
    const byPath = Object.fromEntries(err.issues.map((i) => [i.path, i.message]))
    expect(byPath['discovery.static.instances[1].name']).toBe('duplicate instance name "a" (also instances[0])')
    expect(byPath['auth.tokens[1].name']).toBe('duplicate token name "t" (also tokens[0])')
  })

  it('rejects one secret under two token names', () => {
    const err = loadError(`auth: { tokens: [{ name: a, token: s3cret }, { name: b, sha256: "${sha256Hex('s3cret')}" }] }`)
    expect(err.issues).toEqual([{ path: 'auth.tokens[1]', message: 'same token as tokens[0]', line: 1 }])
  })

  it.each([
    ['{ name: a }', 'auth.tokens[0]', 'give exactly one of token, sha256 or tokenFile'],
    ['{ name: a, token: x, sha256: y }', 'auth.tokens[0]', 'give exactly one of token, sha256 or tokenFile, got token and sha256'],
    ['{ name: a, token: "" }', 'auth.tokens[0].token', 'must not be empty'],
    ['{ name: a, sha256: abc }', 'auth.tokens[0].sha256', 'expected 64 hex characters, got "abc"'],
    ['{ name: a, token: x, targets: [] }', 'auth.tokens[0].targets', 'expected at least one target (use ["*"] for all)'],
    ['{ name: a, token: x, targets: [Orders] }', 'auth.tokens[0].targets[0]', 'expected an instance or group name, optionally with * wildcards, got "Orders"'],
    ['{ name: a, token: x, redisUser: tenant }', 'auth.tokens[0].redisPasswordFile', 'the password of Redis user "tenant" is needed: give redisPasswordFile'],
    ['{ name: a, token: x, redisPasswordFile: pw }', 'auth.tokens[0].redisPasswordFile', 'redisPasswordFile is only used with redisUser'],
    ['{ name: a, token: x, redisUser: "two words", redisPasswordFile: pw }', 'auth.tokens[0].redisUser', 'expected a Redis ACL user name (visible ASCII, no spaces), got "two words"'],
  ])('token %s', (token, where, message) => {
    const err = loadError(`auth: { tokens: [${token}] }`)
    expect(err.issues.map(({ path, message }) => ({ path, message }))).toEqual([{ path: where, message }])
  })

  it('never echoes a token written with the wrong type', () => {
    const err = loadError('auth: { tokens: [{ name: a, token: 918273645 }] }')
    expect(err.message).toContain('auth.tokens[0].token: expected a string, got a number')
    expect(err.message).not.toContain('918273645')
  })

  it.each([
    ['rediss://h:1', 'false', 'asks for TLS but redis.tls is false'],
    ['redis://h:1', 'true', 'asks for plain TCP but redis.tls is true'],
  ])('rejects %s when redis.tls is %s', (endpoint, tls, message) => {
    const err = loadError(`redis: { tls: ${tls} }\ndiscovery: { static: { instances: [{ name: a, endpoints: ["${endpoint}"] }] } }`)
    expect(err.issues).toEqual([expect.objectContaining({ path: 'discovery.static.instances[0].endpoints[0]' })])
    expect(err.message).toContain(message)
  })
})

describe('loadConfig: robustness', () => {
  // Every key of a full config, replaced in turn by every wrong kind of value: the loader must
  // answer with a ConfigError (or a config), never crash with anything else.
  const full = {
    listen: { data: '0.0.0.0:8080', ops: '0.0.0.0:9090' },
    discovery: {
      kubernetes: { namespaces: ['redis-system'], servicePrefix: 'redis-', labelSelector: 'team in (payments)', optIn: true, operators: true },
      static: { instances: [{ name: 'a', endpoints: ['redis://h:1'], annotations: { k: 'v' } }] },
    },
    groups: { g: { strategy: 'sticky' } },
    auth: { tokens: [{ name: 't', token: 'x', access: 'read', targets: ['*'] }] },
    redis: { username: '', passwordFile: '', tls: false, commandTimeout: '2s', connectTimeout: '1s' },
    limits: { maxBody: '1MiB', maxHeader: '1KiB' },
    http: { clientIdHeader: 'x-id' },
    log: { level: 'info' },
  }
  const paths: (string | number)[][] = []
  const walk = (v: unknown, at: (string | number)[]): void => {
    if (at.length > 0) paths.push(at)
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...at, i]))
    else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) walk(x, [...at, k])
  }
  walk(full, [])
  const wrong: unknown[] = [null, 0, -1, 'x', '', true, [], {}, [null], { x: 1 }]

  it.each(paths.map((p) => [p.join('.'), p] as const))('%s', (_, keys) => {
    for (const value of wrong) {
      const doc = structuredClone(full) as Record<string | number, unknown>
      let cur = doc
      for (const k of keys.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>
      cur[keys.at(-1) as string | number] = value
      try {
        load(JSON.stringify(doc))
      } catch (err) {
        expect(err, `${keys.join('.')} = ${JSON.stringify(value)}`).toBeInstanceOf(ConfigError)
      }
    }
  })
})

describe('loadConfig: environment', () => {
  it('applies every override', () => {
    const cfg = load('', {
      GATEWAY_LISTEN_DATA: '127.0.0.1:1',
      GATEWAY_LISTEN_OPS: '127.0.0.1:2',
      GATEWAY_LOG_LEVEL: 'debug',
      GATEWAY_REDIS_USERNAME: 'gw',
      GATEWAY_REDIS_PASSWORD: 'pw',
      GATEWAY_COMMAND_TIMEOUT: '3s',
      GATEWAY_CONNECT_TIMEOUT: '400ms',
      GATEWAY_MAX_BODY: '1MiB',
      GATEWAY_MAX_REPLY: '3MiB',
      GATEWAY_METRICS_ENABLED: 'false',
    })
    expect(cfg.metrics.enabled).toBe(false)
    expect(cfg.listen).toEqual({ data: '127.0.0.1:1', ops: '127.0.0.1:2' })
    expect(cfg.log.level).toBe('debug')
    expect(cfg.redis).toMatchObject({ username: 'gw', password: 'pw', commandTimeoutMs: 3000, connectTimeoutMs: 400 })
    expect(cfg.limits.maxBodyBytes).toBe(1024 * 1024)
    expect(cfg.limits.maxReplyBytes).toBe(3 * 1024 * 1024)
  })

  it('reads metrics.enabled as a boolean or true/false text, and names anything else', () => {
    expect(load('').metrics.enabled).toBe(true)
    expect(load('metrics: { enabled: false }').metrics.enabled).toBe(false)
    expect(load('metrics: { enabled: true }', { GATEWAY_METRICS_ENABLED: 'false' }).metrics.enabled).toBe(false)
    expect(loadError('', { GATEWAY_METRICS_ENABLED: 'nope' }).message).toContain('GATEWAY_METRICS_ENABLED')
    expect(loadError('metrics: { enabled: 1 }').message).toContain('metrics.enabled')
  })

  it('reads ops.auth: admin by default, none to open the ops views, anything else named', () => {
    expect(load('').ops.auth).toBe('admin')
    expect(load('ops: { auth: none }').ops.auth).toBe('none')
    expect(load('ops: {}').ops.auth).toBe('admin')
    expect(loadError('ops: { auth: open }').message).toContain('ops.auth')
    expect(loadError('ops: { token: x }').message).toContain('ops.token')
  })

  it('reads http.fastLane as a boolean or true/false text, on by default', () => {
    expect(load('').http.fastLane).toBe(true)
    expect(load('http: { fastLane: false }').http.fastLane).toBe(false)
    expect(load('http: { fastLane: true }', { GATEWAY_HTTP_FAST_LANE: 'false' }).http.fastLane).toBe(false)
    expect(loadError('', { GATEWAY_HTTP_FAST_LANE: 'fast' }).message).toContain('GATEWAY_HTTP_FAST_LANE')
    expect(loadError('http: { fastLane: "yes" }').message).toContain('http.fastLane')
  })

  it('overrides the file, and treats empty values as unset', () => {
    const cfg = load('log: { level: warn }\nlisten: { data: "127.0.0.1:7" }', { GATEWAY_LOG_LEVEL: 'error', GATEWAY_LISTEN_DATA: '' })
    expect(cfg.log.level).toBe('error')
    expect(cfg.listen.data).toBe('127.0.0.1:7')
  })

  it('names the variable when its value is bad', () => {
    const err = loadError('', { GATEWAY_LISTEN_DATA: 'nope', GATEWAY_COMMAND_TIMEOUT: 'soon', GATEWAY_LOG_LEVEL: 'loud' })
    expect(err.issues.map((i) => i.path).sort()).toEqual(['GATEWAY_COMMAND_TIMEOUT', 'GATEWAY_LISTEN_DATA', 'GATEWAY_LOG_LEVEL'])
    expect(err.message).toContain('GATEWAY_LISTEN_DATA: expected "host:port"')
    expect(err.message).toContain('GATEWAY_COMMAND_TIMEOUT: invalid duration "soon"')
  })

  it('lists every variable it reads, with a description', () => {
    expect(ENV_VARS.map((v) => v.name)).toEqual([
      'GATEWAY_CONFIG',
      'GATEWAY_LISTEN_DATA',
      'GATEWAY_LISTEN_OPS',
      'GATEWAY_LOG_LEVEL',
      'GATEWAY_REDIS_USERNAME',
      'GATEWAY_REDIS_PASSWORD',
      'GATEWAY_COMMAND_TIMEOUT',
      'GATEWAY_CONNECT_TIMEOUT',
      'GATEWAY_MAX_BODY',
      'GATEWAY_MAX_REPLY',
      'GATEWAY_HTTP_FAST_LANE',
      'GATEWAY_METRICS_ENABLED',
      'GATEWAY_SHUTDOWN_DELAY',
      'GATEWAY_SHUTDOWN_TIMEOUT',
      'GATEWAY_ZONE',
      'KUBECONFIG',
    ])
    for (const v of ENV_VARS) expect(v.description.length).toBeGreaterThan(10)
  })

  it('overrides the shutdown delay and timeout, and names the variable when one is bad', () => {
    const cfg = load('shutdown: { delay: 5s, timeout: 20s }', { GATEWAY_SHUTDOWN_DELAY: '0s', GATEWAY_SHUTDOWN_TIMEOUT: '1m' })
    expect(cfg.shutdown).toEqual({ delayMs: 0, timeoutMs: 60_000 })
    expect(load('', { GATEWAY_SHUTDOWN_DELAY: '7s' }).shutdown).toEqual({ delayMs: 7000, timeoutMs: 20_000 })
    const err = loadError('', { GATEWAY_SHUTDOWN_DELAY: 'soon', GATEWAY_SHUTDOWN_TIMEOUT: '0s' })
    expect(err.issues.map((i) => i.path).sort()).toEqual(['GATEWAY_SHUTDOWN_DELAY', 'GATEWAY_SHUTDOWN_TIMEOUT'])
    expect(err.message).toContain('GATEWAY_SHUTDOWN_DELAY: invalid duration "soon"')
    expect(err.message).toContain('GATEWAY_SHUTDOWN_TIMEOUT: must be greater than 0')
  })

  it('reads the zone for the runtime', () => {
    expect(loadRuntimeEnv({ GATEWAY_ZONE: ' eu-west-1a ' })).toEqual({ zone: 'eu-west-1a', kubeconfig: null, tracing: { enabled: false, serviceNameSet: false } })
    expect(loadRuntimeEnv({ KUBECONFIG: '/tmp/kc' }).kubeconfig).toBe('/tmp/kc')
    expect(loadRuntimeEnv({ GATEWAY_ZONE: '' })).toEqual({ zone: null, kubeconfig: null, tracing: { enabled: false, serviceNameSet: false } })
    expect(loadRuntimeEnv({})).toEqual({ zone: null, kubeconfig: null, tracing: { enabled: false, serviceNameSet: false } })
  })
})

describe('loadConfig: files', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gw-config-'))
  })
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('reads GATEWAY_CONFIG, else gateway.yaml', () => {
    expect(configPath({})).toBe('gateway.yaml')
    const file = path.join(dir, 'custom.yaml')
    writeFileSync(file, 'log: { level: trace }\n')
    expect(configPath({ GATEWAY_CONFIG: file })).toBe(file)
    expect(loadConfig({ env: { GATEWAY_CONFIG: file } }).log.level).toBe('trace')
  })

  it('fails clearly when the file is missing', () => {
    const file = path.join(dir, 'nope.yaml')
    expect(errorOf(() => loadConfig({ path: file, env: {} })).message).toBe(
      `config ${file}: cannot read the file: no such file; GATEWAY_CONFIG sets its path`,
    )
  })

  it('hashes tokens from files, resolving relative paths against the config directory', () => {
    mkdirSync(path.join(dir, 'secrets'))
    writeFileSync(path.join(dir, 'secrets', 'app'), 'from-file\n')
    const file = path.join(dir, 'gateway.yaml')
    writeFileSync(file, 'auth: { tokens: [{ name: app, tokenFile: secrets/app }] }\n')
    expect(loadConfig({ path: file, env: {} }).auth.tokens[0]?.sha256).toBe(sha256Hex('from-file'))
  })

  it('reads the password of a token\'s Redis user from its file (trimmed), and keeps no plain password in messages', () => {
    writeFileSync(path.join(dir, 'tenant-pw'), 'tenant-secret\n')
    const file = path.join(dir, 'gateway.yaml')
    writeFileSync(file, 'auth: { tokens: [{ name: t, token: x, redisUser: tenant-a, redisPasswordFile: tenant-pw }, { name: u, token: y, redisUser: b, redisPasswordFile: nope }] }\n')
    const err = errorOf(() => loadConfig({ path: file, env: {} }))
    expect(err.issues.map(({ path, message }) => ({ path, message }))).toEqual([
      { path: 'auth.tokens[1].redisPasswordFile', message: `cannot read "nope" (${path.join(dir, 'nope')}): no such file` },
    ])
    writeFileSync(file, 'auth: { tokens: [{ name: t, token: x, access: write, redisUser: tenant-a, redisPasswordFile: tenant-pw }] }\n')
    expect(loadConfig({ path: file, env: {} }).auth.tokens[0]?.redisUser).toEqual({
      name: 'tenant-a',
      password: 'tenant-secret',
      passwordFile: 'tenant-pw',
    })
  })

  it('names the token file that cannot be read, or is empty', () => {
    writeFileSync(path.join(dir, 'empty'), '\n')
    const file = path.join(dir, 'gateway.yaml')
    writeFileSync(file, 'auth: { tokens: [{ name: a, tokenFile: missing }, { name: b, tokenFile: empty }] }\n')
    const err = errorOf(() => loadConfig({ path: file, env: {} }))
    expect(err.issues.map(({ path, message }) => ({ path, message }))).toEqual([
      { path: 'auth.tokens[0].tokenFile', message: `cannot read "missing" (${path.join(dir, 'missing')}): no such file` },
      { path: 'auth.tokens[1].tokenFile', message: 'file "empty" is empty' },
    ])
  })

  it('reads the password file (trimmed); GATEWAY_REDIS_PASSWORD wins over it', () => {
    writeFileSync(path.join(dir, 'pw'), 'file-pass\n')
    const file = path.join(dir, 'gateway.yaml')
    writeFileSync(file, 'redis: { passwordFile: pw }\n')
    expect(loadConfig({ path: file, env: {} }).redis.password).toBe('file-pass')
    expect(loadConfig({ path: file, env: { GATEWAY_REDIS_PASSWORD: 'env-pass' } }).redis.password).toBe('env-pass')
  })

  it('reports every file it reads, with a content hash', () => {
    writeFileSync(path.join(dir, 'pw'), 'p')
    const file = path.join(dir, 'gateway.yaml')
    writeFileSync(file, 'redis: { passwordFile: pw }\n')
    const seen = new Map<string, string | null>()
    loadConfig({ path: file, env: {}, onFileRead: (p, h) => seen.set(p, h) })
    expect(seen).toEqual(
      new Map([
        [file, sha256Hex('redis: { passwordFile: pw }\n')],
        [path.join(dir, 'pw'), sha256Hex('p')],
      ]),
    )
  })
})

describe('formatPath', () => {
  it.each([
    [[], '(top level)'],
    [['redis', 'commandTimeout'], 'redis.commandTimeout'],
    [['discovery', 'static', 'instances', 1, 'endpoints', 0], 'discovery.static.instances[1].endpoints[0]'],
    [['groups', 'my-group'], 'groups.my-group'],
    [['annotations', 'redis-gateway.io/weight'], 'annotations["redis-gateway.io/weight"]'],
  ] as const)('%j -> %s', (keys, expected) => {
    expect(formatPath(keys)).toBe(expected)
  })
})

describe('the repository gateway.yaml', () => {
  it('is a valid config for local development', () => {
    const cfg = loadConfig({ path: fileURLToPath(new URL('../../gateway.yaml', import.meta.url)), env: {} })
    expect(cfg.listen).toEqual({ data: '127.0.0.1:8080', ops: '127.0.0.1:9090' })
    expect(cfg.discovery.static?.instances.map((i) => i.name)).toEqual(['local'])
    expect(cfg.auth.tokens.map((t) => [t.name, t.access, t.sha256])).toEqual([
      ['dev', 'admin', sha256Hex('dev-token')],
      ['dev-ro', 'read', sha256Hex('dev-read-token')],
    ])
  })
})
