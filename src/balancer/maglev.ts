// Maglev balancer: consistent hashing of `ctx.clientId` onto the candidates through a lookup
// table, from Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer",
// NSDI 2016, §3.4 (Pseudocode 1), with weights as in Envoy's weighted MaglevTable (maglev_lb.cc:
// a backend takes a turn in iteration t only while t x weight keeps up with its count x w_max).
//
// Table: M slots (M prime, default 65537). Each backend has a preference permutation of the slots,
// offset = h1(id) mod M, skip = h2(id) mod (M - 1) + 1, permutation[j] = (offset + j * skip) mod M;
// backends take turns claiming their next still-empty preferred slot until the table is full.
// Weighted: in iteration t, backend i takes a turn only if t * w_i >= its next threshold, which
// grows by w_max per turn, so its share of turns (and of slots) is w_i / sum(w).
// A pick is table[h(clientId) mod M]: O(1), no allocation.
//
// What this guarantees (measured in maglev.test.ts and the bench, M = 65537, 10k client ids):
//   - The table is a pure function of the set of (id, weight) pairs: backends are sorted by id and
//     hashed with seed-fixed MurmurHash3 (hash.ts), never Math.random or a per-process seed, so
//     every gateway process (and version) picks the same backend for the same client id and
//     membership, whatever order candidates arrive in.
//   - Balance: each backend owns weight/total of the slots to within 0.1% relative (N <= 50).
//   - One of N backends leaves: all of its clients move (spread over the others), about 1/N of
//     all; clients of survivors mostly stay but not all: 0.2-0.6% of them move (N = 3..50).
//   - One joins: about 1/(N+1) of clients move to it, and a few more (0.04-0.4% of all, N = 3..50)
//     shift between old backends, because greedy filling cascades. Maglev cannot make that zero.
// Where "no client of a remaining backend ever moves" matters more than exact balance, use
// `fill: 'rendezvous'`: the same table and O(1) lookup, filled by weighted rendezvous hashing per
// slot. Adds then move clients only to the newcomer and removals only the leaver's clients
// (exactly), at the price of statistical balance (slot shares off by up to ~3 sigma of a binomial:
// ~1% relative at N = 3, ~9% at N = 50) and an O(M x n) build, slower than Maglev's as N grows
// and more so with unequal weights (bench/README.md, "Balancers").
//
// The table is built lazily, synchronously, on the first pick with a client id after the
// membership (ids and weights) changes; a per-pick O(n) identity check detects that. The last few
// tables are kept (`tableCacheSize`), so an endpoint flapping in and out of the eligible set does
// not rebuild each time. Pass a candidate list that changes with membership and health, not with
// per-request filters: every distinct list beyond the cache costs a build.
//
// Weight rule: slots are proportional to weight; weight-0 candidates get no slots while any
// candidate has weight > 0; when all are 0, all count as weight 1. Without a client id the pick
// is weighted random via ctx.random (same weight rule), so sticky groups still honour canary
// weights for anonymous clients.

import { fmix, murmur3 } from './hash.js'
import { DEFAULTS } from './defaults.js'
import type { Balancer, Candidate, PickContext } from './types.js'

/** Hash seeds. Changing any of them remaps every sticky client: treat as a wire format. */
const SEED_OFFSET = 0
const SEED_SKIP = 1
export const SEED_KEY = 2

export interface MaglevBackend {
  readonly id: string
  readonly weight: number
}

export interface MaglevTable {
  readonly size: number
  /** Backends that own slots, sorted by id (code-unit order). */
  readonly backends: readonly string[]
  /** entries[slot] = index into `backends`. */
  readonly entries: Uint16Array | Uint32Array
}

export interface MaglevOptions {
  /** Lookup-table size, a prime > number of backends. Default `DEFAULTS.maglevTableSize` (65537). */
  readonly tableSize?: number
  /** How many recent tables to keep for memberships that come back. Default 2. */
  readonly tableCacheSize?: number
  /**
   * How slots are assigned: 'maglev' (the paper's greedy fill, the default) or 'rendezvous'
   * (each slot goes to the highest weighted-rendezvous score; strictly minimal disruption, build
   * cost O(M x n)). See the header.
   */
  readonly fill?: MaglevFill
}

export type MaglevFill = 'maglev' | 'rendezvous'

/** The slot a client id hashes to, in a table of `size` slots. */
export function maglevSlot(clientId: string, size: number): number {
  return murmur3(clientId, SEED_KEY) % size
}

/**
 * Builds the weighted Maglev lookup table for a membership: a pure function of the set of
 * (id, weight) pairs (order and duplicates in `members` do not matter; for a duplicated id the
 * largest weight counts). Returns null when `members` is empty.
 */
export function buildMaglevTable(members: readonly MaglevBackend[], size: number): MaglevTable | null {
  assertTableSize(size)
  const norm = normalise(members)
  if (norm === null) return null
  const { ids, weight } = norm
  const n = ids.length
  const pos = new Uint32Array(n)
  const skip = new Uint32Array(n)
  const threshold = new Float64Array(n)
  let wmax = 0
  for (let i = 0; i < n; i++) {
    const id = ids[i]!
    if (weight[i]! > wmax) wmax = weight[i]!
    pos[i] = murmur3(id, SEED_OFFSET) % size
    skip[i] = (murmur3(id, SEED_SKIP) % (size - 1)) + 1
  }
  const { entries, EMPTY } = emptyEntries(n, size)
  let filled = 0
  for (let t = 1; filled < size; t++) {
    for (let i = 0; i < n && filled < size; i++) {
      // A backend with w_max takes a turn every iteration; one with w_max / 3 every third.
      if (t * weight[i]! < threshold[i]!) continue
      threshold[i] = threshold[i]! + wmax
      const s = skip[i]!
      let c = pos[i]!
      while (entries[c] !== EMPTY) {
        c += s
        if (c >= size) c -= size
      }
      entries[c] = i
      c += s
      if (c >= size) c -= size
      pos[i] = c
      filled++
    }
  }
  return { size, backends: ids, entries }
}

/**
 * The same kind of table, but slot s goes to the backend with the highest weighted rendezvous
 * score w_i / -ln(u_i(s)), u_i(s) a hash of (id_i, s) in (0, 1) (Thaler & Ravishankar 1998;
 * weighted by the logarithmic method of Schindelhauer & Schomaker, SPAA 2005). Each slot's owner depends
 * only on the candidates' own scores for that slot, so adding a backend moves slots only to it and
 * removing one moves only its slots: strictly minimal disruption, which greedy Maglev lacks.
 * Cost: M x n hash evaluations (and a log each when weights differ) per build.
 */
export function buildRendezvousTable(members: readonly MaglevBackend[], size: number): MaglevTable | null {
  assertTableSize(size)
  const norm = normalise(members)
  if (norm === null) return null
  const { ids, weight } = norm
  const n = ids.length
  const seed = new Int32Array(n)
  let equal = true
  for (let i = 0; i < n; i++) {
    seed[i] = murmur3(ids[i]!, SEED_OFFSET) | 0
    if (weight[i] !== weight[0]) equal = false
  }
  const { entries } = emptyEntries(n, size)
  for (let s = 0; s < size; s++) {
    const g = fmix(Math.imul(s + 1, 0x9e3779b9))
    let best = 0
    let bestScore = -Infinity
    for (let i = 0; i < n; i++) {
      const h = fmix(seed[i]! ^ g)
      // Equal weights: the largest hash wins (no floating point). Otherwise w / -ln(u).
      const score = equal ? h : weight[i]! / -Math.log((h + 0.5) / 4294967296)
      if (score > bestScore) {
        bestScore = score
        best = i
      }
    }
    entries[s] = best
  }
  return { size, backends: ids, entries }
}

/** Sorted unique ids that own slots, with their effective weights (the weight-0 rule). */
function normalise(members: readonly MaglevBackend[]): { ids: string[]; weight: Float64Array } | null {
  const weightOf = new Map<string, number>()
  let anyPositive = false
  for (const m of members) {
    const w = m.weight > 0 ? m.weight : 0
    if (w > 0) anyPositive = true
    const prev = weightOf.get(m.id)
    if (prev === undefined || w > prev) weightOf.set(m.id, w)
  }
  const ids: string[] = []
  for (const [id, w] of weightOf) if (w > 0 || !anyPositive) ids.push(id)
  if (ids.length === 0) return null
  ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const weight = new Float64Array(ids.length)
  for (let i = 0; i < ids.length; i++) weight[i] = anyPositive ? weightOf.get(ids[i]!)! : 1
  return { ids, weight }
}

function emptyEntries(n: number, size: number): { entries: Uint16Array | Uint32Array; EMPTY: number } {
  const small = n < 0xffff
  const EMPTY = small ? 0xffff : 0xffffffff
  const entries = small ? new Uint16Array(size) : new Uint32Array(size)
  entries.fill(EMPTY)
  return { entries, EMPTY }
}


interface CachedTable {
  readonly signature: string
  readonly table: MaglevTable
}

export class MaglevBalancer implements Balancer {
  private readonly size: number
  private readonly cacheSize: number
  private readonly build: (members: readonly MaglevBackend[], size: number) => MaglevTable | null
  /** Most recent first. */
  private cache: CachedTable[] = []
  private table: MaglevTable | null = null
  /** Ids and weights of the last candidate list, by position: the per-pick fast-path check. */
  private lastIds: string[] = []
  private lastWeights: number[] = []
  /** toCandidate[k] = index in the last candidate list of table.backends[k]. */
  private toCandidate = new Int32Array(0)
  private builds = 0

  constructor(opts: MaglevOptions = {}) {
    this.size = opts.tableSize ?? DEFAULTS.maglevTableSize
    this.cacheSize = Math.max(1, opts.tableCacheSize ?? 2)
    this.build = opts.fill === 'rendezvous' ? buildRendezvousTable : buildMaglevTable
    assertTableSize(this.size)
  }

  /** How many tables this balancer has built (tests, admin view). */
  get tableBuilds(): number {
    return this.builds
  }

  pick(candidates: readonly Candidate[], ctx: PickContext): Candidate | null {
    const n = candidates.length
    if (n <= 1) return n === 0 ? null : candidates[0]!
    if (ctx.clientId === null) return weightedRandom(candidates, ctx.random)
    if (!this.matchesLast(candidates)) this.sync(candidates)
    const k = this.table!.entries[murmur3(ctx.clientId, SEED_KEY) % this.size]!
    return candidates[this.toCandidate[k]!]!
  }

  private matchesLast(candidates: readonly Candidate[]): boolean {
    const ids = this.lastIds
    if (ids.length !== candidates.length || this.table === null) return false
    const weights = this.lastWeights
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!
      if (ids[i] !== c.id || weights[i] !== c.weight) return false
    }
    return true
  }

  /** Slow path: the list differs from the last one (order, members or weights). */
  private sync(candidates: readonly Candidate[]): void {
    this.lastIds = candidates.map((c) => c.id)
    this.lastWeights = candidates.map((c) => c.weight)
    const signature = membershipSignature(candidates)
    let found = -1
    for (let i = 0; i < this.cache.length; i++) {
      if (this.cache[i]!.signature === signature) {
        found = i
        break
      }
    }
    let entry: CachedTable
    if (found >= 0) {
      entry = this.cache[found]!
      this.cache.splice(found, 1)
    } else {
      entry = { signature, table: this.build(candidates, this.size)! }
      this.builds++
    }
    this.cache.unshift(entry)
    if (this.cache.length > this.cacheSize) this.cache.length = this.cacheSize
    const table = entry.table
    this.table = table
    const indexOf = new Map<string, number>()
    for (let i = candidates.length - 1; i >= 0; i--) indexOf.set(candidates[i]!.id, i)
    const toCandidate = new Int32Array(table.backends.length)
    for (let k = 0; k < table.backends.length; k++) toCandidate[k] = indexOf.get(table.backends[k]!)!
    this.toCandidate = toCandidate
  }
}

/** Order-independent identity of a membership: sorted "id weight" pairs (slow path only). */
function membershipSignature(candidates: readonly Candidate[]): string {
  const parts = candidates.map((c) => `${c.id}\u0000${c.weight > 0 ? c.weight : 0}`)
  parts.sort()
  return parts.join('\u0001')
}

/** Weighted random among the candidates that take traffic (the no-client-id fallback). */
function weightedRandom(candidates: readonly Candidate[], random: () => number): Candidate {
  let total = 0
  for (let i = 0; i < candidates.length; i++) {
    const w = candidates[i]!.weight
    if (w > 0) total += w
  }
  if (total === 0) {
    const i = Math.floor(random() * candidates.length)
    return candidates[i < candidates.length ? i : candidates.length - 1]!
  }
  let r = random() * total
  let last = 0
  for (let i = 0; i < candidates.length; i++) {
    const w = candidates[i]!.weight
    if (!(w > 0)) continue
    last = i
    r -= w
    if (r < 0) return candidates[i]!
  }
  return candidates[last]! // rounding, or a source that returned 1
}

function assertTableSize(size: number): void {
  if (!Number.isInteger(size) || size < 3 || size > 0xffffffff || !isPrime(size)) {
    throw new RangeError(`maglev table size must be a prime >= 3, got ${size}`)
  }
}

function isPrime(n: number): boolean {
  if (n < 2) return false
  if (n % 2 === 0) return n === 2
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false
  return true
}
