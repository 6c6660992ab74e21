// Read-your-writes sync tokens (`upstash-sync-token`): `rg1:<instance>:<replid>:<offset>:<nonce>`.
// replid + offset say how far the primary's replication stream had got after the client's last
// write; a read carrying the token may only be served by an endpoint known to be at least that
// far (else the primary). The nonce makes the token change after every write even when the
// offset cannot (a primary with no replica attached keeps no backlog and reports offset 0).

export interface SyncPosition {
  readonly instance: string
  readonly replId: string
  readonly offset: number
}

const PREFIX = 'rg1:'

/** Formats the tokens of one gateway: its write nonce, and the last read token, which reads mostly repeat. */
export class SyncTokens {
  private nonce = 0
  private lastRead: { instance: string; replId: string; offset: number; token: string } | null = null

  /** The next write nonce (also for cluster tokens). */
  nextNonce(): number {
    this.nonce = (this.nonce + 1) % 0x100000000
    return this.nonce
  }

  format(p: SyncPosition, afterWrite: boolean): string {
    if (afterWrite) {
      return `${PREFIX}${p.instance}:${p.replId}:${p.offset}:${this.nextNonce().toString(36)}`
    }
    const last = this.lastRead
    if (last !== null && last.offset === p.offset && last.instance === p.instance && last.replId === p.replId) return last.token
    const token = `${PREFIX}${p.instance}:${p.replId}:${p.offset}:0`
    this.lastRead = { instance: p.instance, replId: p.replId, offset: p.offset, token }
    return token
  }
}

/** Parses a token; anything malformed (including the SDK's initial empty string) is null. */
export function parseToken(s: string | undefined | null): SyncPosition | null {
  if (!s || !s.startsWith(PREFIX) || s.length > 256) return null
  const parts = s.slice(PREFIX.length).split(':')
  if (parts.length !== 4) return null
  const [instance, replId, off] = parts as [string, string, string, string]
  if (!/^[0-9a-f]{1,64}$/.test(replId) || !/^\d{1,16}$/.test(off)) return null
  const offset = Number(off)
  // A client-supplied offset above 2^53 would be rounded (possibly down): refuse it instead.
  if (!Number.isSafeInteger(offset)) return null
  return { instance, replId, offset }
}

// Cluster instances: `rgc1:<instance>:<entries>:<nonce>`, one entry per shard the client wrote to
// or read from, `<replid prefix>.<offset>` joined by `,`. A shard is known by its primary's
// replication id (its first 16 hex digits: 64 bits tell shards apart), so an entry survives
// resharding, and one whose shard failed over (a new replication id) no longer matches anything
// and is dropped from the next token.

const CLUSTER_PREFIX = 'rgc1:'
/** Hex digits of a replication id that name a shard in a cluster token. */
export const SHARD_ID_LENGTH = 16
/** Entries kept in one cluster token (the shards of the cluster, at most). */
export const MAX_CLUSTER_TOKEN_ENTRIES = 128

export interface ClusterPosition {
  readonly instance: string
  /** Offset by shard (replication id prefix). */
  readonly shards: ReadonlyMap<string, number>
}

/** The shard id in cluster tokens of a replication id. */
export function shardId(replId: string): string {
  return replId.slice(0, SHARD_ID_LENGTH)
}

export function parseClusterToken(s: string | undefined | null): ClusterPosition | null {
  if (!s || !s.startsWith(CLUSTER_PREFIX) || s.length > 64 + MAX_CLUSTER_TOKEN_ENTRIES * 40) return null
  const parts = s.slice(CLUSTER_PREFIX.length).split(':')
  if (parts.length !== 3) return null
  const [instance, list] = parts as [string, string, string]
  const shards = new Map<string, number>()
  if (list !== '') {
    const entries = list.split(',')
    if (entries.length > MAX_CLUSTER_TOKEN_ENTRIES) return null
    for (const e of entries) {
      const m = /^([0-9a-f]{1,16})\.(\d{1,16})$/.exec(e)
      if (m === null) return null
      const offset = Number(m[2])
      if (!Number.isSafeInteger(offset)) return null
      shards.set(m[1]!, Math.max(offset, shards.get(m[1]!) ?? 0))
    }
  }
  return { instance, shards }
}

/** A cluster token (SyncTokens' nonce after writes, as for plain instances). */
export function formatClusterToken(tokens: SyncTokens, p: ClusterPosition, afterWrite: boolean): string {
  let list = ''
  for (const [id, offset] of p.shards) list += `${list === '' ? '' : ','}${id}.${offset}`
  return `${CLUSTER_PREFIX}${p.instance}:${list}:${afterWrite ? tokens.nextNonce().toString(36) : '0'}`
}
