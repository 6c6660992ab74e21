// Tests for token authentication (README "Tokens and Redis ACL users"): tokens kept only as sha256 digests, the
// access level and target globs of each token, and how the presented token is read from the
// Authorization header or `_token`.

import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { presentedToken, TokenStore, type TokenSpec } from './auth.js'

const sha = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex')

function spec(name: string, token: string, access: TokenSpec['access'], targets: string[] = ['*']): TokenSpec {
  return { name, access, targets, sha256: sha(token) }
}

describe('TokenStore: remembered tokens', () => {
  it('remembers only accepted tokens, and answers the same from memory', () => {
    const store = new TokenStore([spec('app', 'app-secret-1', 'write')])
    for (let i = 0; i < 5_000; i++) expect(store.authenticate(`bogus-${i}`)).toBeNull()
    expect(store.remembered).toBe(0)
    const first = store.authenticate('app-secret-1')
    expect(store.remembered).toBe(1)
    expect(store.authenticate('app-secret-1')).toBe(first)
    expect(store.authenticate('app-secret-1x')).toBeNull()
    expect(store.remembered).toBe(1)
  })

  it('stays bounded with many valid tokens, and still accepts each', () => {
    const specs = Array.from({ length: 1_500 }, (_, i) => spec(`t${i}`, `secret-${i}`, 'read'))
    const store = new TokenStore(specs)
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < specs.length; i++) expect(store.authenticate(`secret-${i}`)?.name).toBe(`t${i}`)
    }
    expect(store.remembered).toBeGreaterThan(0)
    expect(store.remembered).toBeLessThanOrEqual(1_024)
  })

  it('a new store (a config change) does not remember a revoked token', () => {
    const before = new TokenStore([spec('app', 'app-secret-1', 'write')])
    expect(before.authenticate('app-secret-1')).not.toBeNull()
    const after = new TokenStore([spec('other', 'other-secret', 'write')])
    expect(after.authenticate('app-secret-1')).toBeNull()
  })
})

describe('TokenStore.authenticate', () => {
  const store = new TokenStore([
    spec('app', 'app-secret-1', 'write'),
    spec('ro', 'ro-secret-2', 'read', ['orders']),
    spec('root', 'root-secret-3', 'admin'),
  ])

  it('knows how many tokens it holds', () => {
    expect(store.size).toBe(3)
  })

  it('the right token gives its principal, name and access', () => {
    const p = store.authenticate('app-secret-1')
    expect(p).not.toBeNull()
    expect(p?.name).toBe('app')
    expect(p?.access).toBe('write')
    expect(store.authenticate('ro-secret-2')?.access).toBe('read')
    expect(store.authenticate('root-secret-3')?.name).toBe('root')
  })

  it.each([
    ['a wrong token', 'nope'],
    ['empty', ''],
    ['a case variant', 'APP-SECRET-1'],
    ['a prefix', 'app-secret'],
    ['an extension', 'app-secret-1x'],
    ['surrounding spaces', ' app-secret-1 '],
    ['the digest itself', sha('app-secret-1')],
    ['overlong (1 MiB)', 'a'.repeat(1 << 20)],
  ])('rejects %s', (_, presented) => {
    expect(store.authenticate(presented)).toBeNull()
  })

  it('accepts a token of exactly 4096 characters', () => {
    const t = 'y'.repeat(4096)
    expect(new TokenStore([spec('edge', t, 'read')]).authenticate(t)?.name).toBe('edge')
  })

  it('matches configured digests case-insensitively and hashes the UTF-8 bytes', () => {
    const upper: TokenSpec = { name: 'up', access: 'read', targets: ['*'], sha256: sha('Secret!').toUpperCase() }
    expect(new TokenStore([upper]).authenticate('Secret!')?.name).toBe('up')
    const uni = new TokenStore([spec('uni', 'clé', 'read')])
    expect(uni.authenticate('clé')?.name).toBe('uni')
    expect(uni.authenticate('cle')).toBeNull()
  })

  it('an empty store authenticates nothing', () => {
    const empty = new TokenStore([])
    expect(empty.size).toBe(0)
    expect(empty.authenticate('anything')).toBeNull()
    expect(empty.authenticate('')).toBeNull()
  })
})

describe('Principal.allows: target globs', () => {
  const principal = (targets: string[]) => {
    const p = new TokenStore([spec('t', 'tok', 'read', targets)]).authenticate('tok')
    if (p === null) throw new Error('token did not authenticate')
    return p
  }

  it('* allows every name', () => {
    const p = principal(['*'])
    for (const n of ['orders', 'a', 'sessions-cache', 'x'.repeat(63)]) expect(p.allows(n)).toBe(true)
  })

  it('an exact name allows only that name', () => {
    const p = principal(['orders'])
    expect(p.allows('orders')).toBe(true)
    for (const n of ['orders-eu', 'xorders', 'order', 'ORDERS', '']) expect(p.allows(n)).toBe(false)
  })

  it('orders-* allows names starting with orders-', () => {
    const p = principal(['orders-*'])
    expect(p.allows('orders-eu')).toBe(true)
    expect(p.allows('orders-eu-1')).toBe(true)
    expect(p.allows('orders')).toBe(false)
    expect(p.allows('my-orders-eu')).toBe(false)
    expect(p.allows('ordersx')).toBe(false)
  })

  it('*-cache allows names ending with -cache', () => {
    const p = principal(['*-cache'])
    expect(p.allows('session-cache')).toBe(true)
    expect(p.allows('a-b-cache')).toBe(true)
    expect(p.allows('cache')).toBe(false)
    expect(p.allows('session-cache-2')).toBe(false)
    expect(p.allows('sessioncache')).toBe(false)
  })

  it('several targets: any one may match', () => {
    const p = principal(['orders', 'carts-*', '*-cache'])
    for (const n of ['orders', 'carts-eu', 'page-cache']) expect(p.allows(n)).toBe(true)
    for (const n of ['orders-eu', 'carts', 'cache', 'users']) expect(p.allows(n)).toBe(false)
  })

  it('each token keeps its own targets', () => {
    const store = new TokenStore([spec('a', 'tok-a', 'read', ['alpha']), spec('b', 'tok-b', 'read', ['beta'])])
    expect(store.authenticate('tok-a')?.allows('alpha')).toBe(true)
    expect(store.authenticate('tok-a')?.allows('beta')).toBe(false)
    expect(store.authenticate('tok-b')?.allows('beta')).toBe(true)
    expect(store.authenticate('tok-b')?.allows('alpha')).toBe(false)
  })
})

describe('presentedToken', () => {
  it('reads Bearer tokens, scheme case-insensitive', () => {
    expect(presentedToken('Bearer abc', null)).toBe('abc')
    expect(presentedToken('bearer abc', null)).toBe('abc')
    expect(presentedToken('BEARER abc', null)).toBe('abc')
    expect(presentedToken('BeArEr abc', null)).toBe('abc')
  })

  it('tolerates extra spaces around and between scheme and token', () => {
    expect(presentedToken('Bearer    abc', null)).toBe('abc')
    expect(presentedToken('  Bearer abc  ', null)).toBe('abc')
    expect(presentedToken('Bearer\tabc', null)).toBe('abc')
  })

  it('the header wins over the query token', () => {
    expect(presentedToken('Bearer from-header', 'from-query')).toBe('from-header')
  })

  it.each([
    ['Basic scheme', 'Basic dXNlcjpwYXNz'],
    ['scheme only', 'Bearer'],
    ['scheme and spaces only', 'Bearer   '],
    ['two words after the scheme', 'Bearer abc def'],
    ['no scheme', 'abc'],
    ['scheme glued to the token', 'Bearerabc'],
    ['another scheme', 'Token abc'],
  ])('a present but unusable header gives null (no fallback to the query): %s', (_, header) => {
    expect(presentedToken(header, 'query-token')).toBeNull()
  })

  it('remembers only the last header: a repeated one, another one and an unusable one each get their own answer', () => {
    expect(presentedToken('Bearer one', null)).toBe('one')
    expect(presentedToken('Bearer one', 'q')).toBe('one')
    expect(presentedToken('Bearer two', null)).toBe('two')
    expect(presentedToken('Basic two', 'q')).toBeNull()
    expect(presentedToken('Basic two', 'q')).toBeNull()
    expect(presentedToken(undefined, 'q')).toBe('q')
    expect(presentedToken('Bearer one', null)).toBe('one')
  })

  it('without the header, the _token query parameter is used', () => {
    expect(presentedToken(undefined, 'query-token')).toBe('query-token')
    expect(presentedToken(undefined, null)).toBeNull()
  })
})
