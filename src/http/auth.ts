// Bearer / `_token` authentication. Tokens are kept only as sha256 digests; a presented token
// is hashed, looked up by digest and confirmed with a constant-time comparison.
//
// This runs for every request, so it avoids per-call objects: the one-shot `crypto.hash` with hex
// output costs well under a microsecond where createHash().update().digest() plus the Buffer and
// hex conversions cost several (bench/README.md, profile of GET at 50 connections).

import { hash } from 'node:crypto'
import { compileTargets } from '../config/schema.js'
import { LEVEL_IDENTITY, type Identity } from '../core/identity.js'
import type { Access } from '../core/identity.js'

export interface TokenSpec {
  readonly name: string
  readonly access: Access
  readonly targets: readonly string[]
  /** Lower-case hex sha256 of the token. */
  readonly sha256: string
  /** An operator-managed Redis user the token runs as; absent or null: its level's user. */
  readonly redisUser?: { readonly name: string; readonly password: string } | null
}

export interface Principal {
  readonly name: string
  readonly access: Access
  /** Who the token's commands run as inside Redis. */
  readonly identity: Identity
  /** May this token address the instance or group with this name? */
  allows(target: string): boolean
}

class Entry implements Principal {
  private readonly matches: (name: string) => boolean
  /** Lower-case hex sha256 of the token. */
  readonly digest: string
  readonly identity: Identity
  constructor(readonly spec: TokenSpec) {
    this.matches = compileTargets(spec.targets)
    this.digest = spec.sha256.toLowerCase()
    const u = spec.redisUser
    this.identity =
      u === undefined || u === null
        ? LEVEL_IDENTITY[spec.access]
        : Object.freeze({ kind: 'user', user: u.name, password: u.password, key: `${u.name}:${hash('sha256', u.password, 'hex')}` })
  }
  get name(): string {
    return this.spec.name
  }
  get access(): Access {
    return this.spec.access
  }
  allows(target: string): boolean {
    return this.matches(target)
  }
}

/** Tokens remembered after a successful check; the cache is emptied when it reaches this size. */
const RECENT_MAX = 1_024

export class TokenStore {
  private readonly byDigest = new Map<string, Entry>()
  /**
   * Tokens that recently passed, so a client's every request does not hash its token again (about a
   * microsecond each). Only valid tokens get in (a flood of bogus ones cannot grow it), and a config
   * change builds a new store, so a revoked token is forgotten at once.
   */
  private readonly recent = new Map<string, Entry>()

  constructor(tokens: readonly TokenSpec[]) {
    for (const t of tokens) {
      const e = new Entry(t)
      this.byDigest.set(e.digest, e)
    }
  }

  get size(): number {
    return this.byDigest.size
  }

  /** Tokens currently remembered as accepted (bounded; see `recent`). */
  get remembered(): number {
    return this.recent.size
  }

  /** The principal for a presented token, or null. */
  authenticate(presented: string): Principal | null {
    const known = this.recent.get(presented)
    if (known !== undefined) return known
    if (presented.length === 0 || presented.length > 4096) return null
    const digest = hash('sha256', presented, 'hex') // UTF-8 bytes of the string
    const entry = this.byDigest.get(digest)
    // The map lookup is keyed by a digest, not the secret; confirm in constant time anyway.
    if (entry === undefined || !sameDigest(entry.digest, digest)) return null
    if (this.recent.size >= RECENT_MAX) this.recent.clear()
    this.recent.set(presented, entry)
    return entry
  }
}

/** Constant-time equality of two hex digests (no early exit, no allocation). */
function sameDigest(a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return diff === 0
}

/** Token from `Authorization: Bearer <t>` (scheme case-insensitive), else from `_token`. */
export function presentedToken(authorization: string | undefined, queryToken: string | null): string | null {
  if (authorization === undefined) return queryToken
  // Clients send the same header on every request: the last one's answer is kept, so the
  // expression (its match array and substring) runs once per distinct header, not per request.
  if (authorization === lastAuthorization) return lastPresented
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization)
  lastAuthorization = authorization
  lastPresented = m ? m[1]! : null
  return lastPresented
}

let lastAuthorization: string | undefined
let lastPresented: string | null = null
