// Unit tests for the schema's building blocks: addresses, token target globs, defaults, secret files and redaction.
import { describe, expect, it } from 'vitest'
import {
  DEFAULTS,
  compileTargets,
  configSchema,
  defaultConfig,
  parseEndpointUrl,
  parseListenAddress,
  redactConfig,
  secretFilePaths,
  sha256Hex,
  type GatewayConfig,
} from './schema.js'

describe('parseEndpointUrl', () => {
  it.each([
    ['redis://127.0.0.1:6379', { host: '127.0.0.1', port: 6379, tls: false, scheme: 'redis' }],
    ['rediss://cache.example.com:6380', { host: 'cache.example.com', port: 6380, tls: true, scheme: 'rediss' }],
    ['10.0.0.1:7000', { host: '10.0.0.1', port: 7000, tls: false, scheme: null }],
    ['redis://[::1]:6379', { host: '::1', port: 6379, tls: false, scheme: 'redis' }],
    ['[fd00::1]:1', { host: 'fd00::1', port: 1, tls: false, scheme: null }],
    ['REDIS://Cache.Local:65535', { host: 'cache.local', port: 65535, tls: false, scheme: 'redis' }],
    ['redis://localhost:6379/', { host: 'localhost', port: 6379, tls: false, scheme: 'redis' }],
    ['redis-orders.redis-system.svc:6379', { host: 'redis-orders.redis-system.svc', port: 6379, tls: false, scheme: null }],
  ] as const)('%s', (input, expected) => {
    expect(parseEndpointUrl(input)).toEqual(expected)
  })

  it.each([
    ['redis//x', /the scheme must be written "redis:\/\/"/],
    ['redis:/x:1', /the scheme must be written/],
    ['redis://x', /missing :port/],
    ['redis://host:0', /out of range 1\.\.65535/],
    ['redis://host:65536', /out of range/],
    ['redis://host:-1', /not a port number/],
    ['redis://host:6379/0', /no path, database number/],
    ['redis://user:pw@host:6379', /credentials go in redis.username/],
    ['http://host:6379', /unsupported scheme "http"/],
    ['redis://::1:6379', /IPv6 addresses must be in brackets/],
    ['redis://[zz::1]:6379', /not an IPv6 address/],
    ['redis://[::1]6379', /\[ipv6\]:port/],
    ['999.1.1.1:6379', /not a valid host/],
    ['-bad-.example:6379', /not a valid host/],
    ['', /missing :port/],
    ['host:6379?x=1', /no path, database number or options/],
  ])('rejects %j', (input, reason) => {
    expect(() => parseEndpointUrl(input)).toThrow(/^expected "redis:\/\/host:port"/)
    expect(() => parseEndpointUrl(input)).toThrow(reason)
  })
})

describe('parseListenAddress', () => {
  it.each([
    ['0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
    ['[::]:8080', { host: '::', port: 8080 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['127.0.0.1:65535', { host: '127.0.0.1', port: 65535 }],
  ] as const)('%s', (input, expected) => {
    expect(parseListenAddress(input)).toEqual(expected)
  })

  it.each([':8080', '8080', '0.0.0.0', 'host:99999', ':::8080', '[::]', 'a b:1'])('rejects %j', (input) => {
    expect(() => parseListenAddress(input)).toThrow(/expected "host:port" \(IPv6 as "\[::\]:8080"\)/)
  })
})

describe('compileTargets', () => {
  it.each([
    [['*'], 'anything', true],
    [['orders'], 'orders', true],
    [['orders'], 'orders-eu', false],
    [['orders-*'], 'orders-eu', true],
    [['orders-*'], 'orders-', true],
    [['orders-*'], 'orders', false],
    [['*-eu'], 'orders-eu', true],
    [['a*b*c'], 'axxbyyc', true],
    [['a*b*c'], 'axxbyy', false],
    [['x', 'y*'], 'yes', true],
    [['x', 'y*'], 'no', false],
  ] as const)('%j matches %s: %s', (targets, name, expected) => {
    expect(compileTargets(targets)(name)).toBe(expected)
  })
})

describe('defaultConfig', () => {
  it('applies every documented default', () => {
    expect(defaultConfig()).toEqual({
      listen: { data: '0.0.0.0:8080', ops: '0.0.0.0:9090' },
      discovery: { kubernetes: null, static: null },
      groups: {},
      auth: { tokens: [] },
      redis: { username: '', password: '', passwordFile: '', tls: false, commandTimeoutMs: 2000, connectTimeoutMs: 1000, aclUsers: true, allowUndiscoveredClusterNodes: false },
      limits: {
        maxBodyBytes: 64 * 1024 * 1024,
        maxHeaderBytes: 64 * 1024,
        maxHeaders: 100,
        maxArgs: 100_000,
        maxCommands: 10_000,
        maxReplyBytes: 64 * 1024 * 1024,
        inflightBytes: 256 * 1024 * 1024,
        writeTimeoutMs: 30_000,
        maxInflightPerEndpoint: 1_000,
        maxPendingPerEndpoint: 10_000,
      },
      health: { intervalMs: 2000, timeoutMs: 1000, maxChecksPerSecond: 500 },
      shutdown: { delayMs: 0, timeoutMs: 20_000 },
      http: { clientIdHeader: 'x-client-id', fastLane: true, cors: { origins: ['*'] } },
      log: { level: 'info' },
      metrics: { enabled: true },
      ops: { auth: 'admin' },
    })
    expect(DEFAULTS.kubernetes).toEqual({ namespaces: ['redis-system'], servicePrefix: 'redis-', labelSelector: '', optIn: false, operators: true })
  })
})

describe('redactConfig', () => {
  it('hides the password and token digests and leaves the input alone', () => {
    const defaults = defaultConfig()
    const cfg: GatewayConfig = {
      ...defaults,
      redis: { ...defaults.redis, password: 'hunter2' },
      auth: {
        tokens: [
          { name: 'a', access: 'read', targets: ['*'], sha256: sha256Hex('t'), redisUser: null },
          {
            name: 'b',
            access: 'write',
            targets: ['*'],
            sha256: sha256Hex('u'),
            redisUser: { name: 'tenant-a', password: 'tenant-secret', passwordFile: '/run/secrets/tenant-a' },
          },
        ],
      },
    }
    const shown = JSON.stringify(redactConfig(cfg))
    expect(shown).not.toContain('hunter2')
    expect(shown).not.toContain('tenant-secret')
    expect(shown).toContain('tenant-a')
    expect(shown).not.toContain(sha256Hex('t'))
    expect(cfg.redis.password).toBe('hunter2')
  })
})

describe('secret files', () => {
  const raw = {
    redis: { passwordFile: 'pw' },
    auth: {
      tokens: [
        { name: 'a', tokenFile: 'tok' },
        { name: 'b', token: 'x', redisUser: 'tenant', redisPasswordFile: 'tenant-pw' },
        { name: 'c', tokenFile: 42 },
      ],
    },
  }

  it('are listed from the raw document, as written, for the loader to read', () => {
    expect(secretFilePaths(raw)).toEqual(['pw', 'tok', 'tenant-pw'])
    expect(secretFilePaths({ redis: { passwordFile: '' }, auth: { tokens: 'no' } })).toEqual([])
    expect(secretFilePaths('not a mapping')).toEqual([])
  })

  it('are given to the schema as contents, which it trims, hashes and reports without any I/O', () => {
    const ok = configSchema(
      new Map([
        ['pw', { text: 'redis-pw\n' }],
        ['tok', { text: 'the-token\n' }],
        ['tenant-pw', { text: 'tenant-secret' }],
      ]),
    ).parse({ ...raw, auth: { tokens: raw.auth.tokens.slice(0, 2) } })
    expect(ok.redis.password).toBe('redis-pw')
    expect(ok.auth.tokens.map((t) => [t.sha256, t.redisUser?.password ?? null])).toEqual([
      [sha256Hex('the-token'), null],
      [sha256Hex('x'), 'tenant-secret'],
    ])

    const failed = configSchema(new Map([['pw', { error: 'cannot read "pw": no such file' }]])).safeParse(raw)
    expect(failed.error?.issues.map((i) => [i.path.join('.'), i.code === 'custom' ? i.message : i.code])).toEqual([
      ['auth.tokens.0.tokenFile', 'cannot read "tok": not given to the schema'],
      ['auth.tokens.1.redisPasswordFile', 'cannot read "tenant-pw": not given to the schema'],
      ['auth.tokens.2.tokenFile', 'invalid_type'],
      ['redis.passwordFile', 'cannot read "pw": no such file'],
    ])
  })
})
