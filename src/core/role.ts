// An endpoint's replication role as Redis reports it (ROLE), parsed once for the health checker
// and the routing-table view.

export type Role = 'primary' | 'replica' | 'unknown'

/** Replica link state from ROLE: `connected` means it is streaming from its primary. */
export type LinkState = 'connected' | 'connecting' | 'sync' | 'connect' | 'handshake' | 'none' | 'unknown'

export interface RoleReport {
  readonly role: Role
  readonly offset: number
  readonly primaryHost: string | null
  readonly primaryPort: number
  readonly link: LinkState
  readonly replicas: readonly { readonly host: string; readonly port: number; readonly offset: number }[]
}

/** Parses a ROLE reply as the connection hands it over (integers as decimal text, strings as Buffers) or
 *  as plain strings and numbers: String() and Number() read either. */
export function parseRole(reply: unknown): RoleReport {
  if (!Array.isArray(reply) || reply.length === 0) throw new Error('ROLE: unexpected reply')
  const kind = String(reply[0])
  if (kind === 'master') {
    const replicas = Array.isArray(reply[2])
      ? (reply[2] as unknown[]).filter(Array.isArray).map((r) => {
          const a = r as unknown[]
          return { host: String(a[0]), port: Number(a[1]), offset: Number(a[2]) }
        })
      : []
    return { role: 'primary', offset: Number(reply[1]) || 0, primaryHost: null, primaryPort: 0, link: 'none', replicas }
  }
  if (kind === 'slave') {
    const link = String(reply[3]) as LinkState
    return {
      role: 'replica',
      offset: Math.max(0, Number(reply[4]) || 0),
      primaryHost: String(reply[1]),
      primaryPort: Number(reply[2]),
      link: ['connected', 'connecting', 'sync', 'connect', 'handshake'].includes(link) ? link : 'unknown',
      replicas: [],
    }
  }
  // 'sentinel' or anything else: not a data endpoint.
  return { role: 'unknown', offset: 0, primaryHost: null, primaryPort: 0, link: 'unknown', replicas: [] }
}
