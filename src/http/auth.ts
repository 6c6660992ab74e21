// Bearer / `_token` authentication. Tokens are kept only as sha256 digests; a presented token
// is hashed, looked up by digest and confirmed with a constant-time comparison.

import { createHash, timingSafeEqual } from 'node:crypto'
import { compileTargets } from '../config/schema.js'
import type { Access } from '../routing/classify.js'

export interface TokenSpec {
  readonly name: string
  readonly access: Access
  readonly targets: readonly string[]
  /** Lower-case hex sha256 of the token. */
  readonly sha256: string
}

export interface Principal {
  readonly name: string
  readonly access: Access
  /** May this token address the instance or group with this name? */
  allows(target: string): boolean
}

class Entry implements Principal {
  private readonly matches: (name: string) => boolean
  readonly digest: Buffer
  constructor(readonly spec: TokenSpec) {
    this.matches = compileTargets(spec.targets)
    this.digest = Buffer.from(spec.sha256, 'hex')
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

export class TokenStore {
  private readonly byDigest = new Map<string, Entry>()

  constructor(tokens: readonly TokenSpec[]) {
    for (const t of tokens) this.byDigest.set(t.sha256.toLowerCase(), new Entry(t))
  }

  get size(): number {
    return this.byDigest.size
  }

  /** The principal for a presented token, or null. */
  authenticate(presented: string): Principal | null {
    if (presented.length === 0 || presented.length > 4096) return null
    const digest = createHash('sha256').update(presented, 'utf8').digest()
    const entry = this.byDigest.get(digest.toString('hex'))
    // The map lookup is keyed by a digest, not the secret; confirm in constant time anyway.
    if (entry === undefined || !timingSafeEqual(entry.digest, digest)) return null
    return entry
  }
}

/** Token from `Authorization: Bearer <t>` (scheme case-insensitive), else from `_token`. */
export function presentedToken(authorization: string | undefined, queryToken: string | null): string | null {
  if (authorization !== undefined) {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization)
    return m ? m[1]! : null
  }
  return queryToken
}
