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

  format(p: SyncPosition, afterWrite: boolean): string {
    if (afterWrite) {
      this.nonce = (this.nonce + 1) % 0x100000000
      return `${PREFIX}${p.instance}:${p.replId}:${p.offset}:${this.nonce.toString(36)}`
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
