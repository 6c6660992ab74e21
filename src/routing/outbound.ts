// Commands that make Redis itself connect to a host and port named in their arguments: MIGRATE
// (copies keys there), REPLICAOF / SLAVEOF (replaces the dataset with that server's) and CLUSTER
// MEET. Through the gateway they may only name an endpoint that discovery found, written as
// discovery names it, so no token can use Redis to reach (or exfiltrate data to) any other host.
// Inside scripts they cannot be checked, so the users tokens run as may not run MIGRATE and
// CLUSTER MEET there (acl-rules.ts), and REPLICAOF cannot run in scripts at all.

import { Buffer } from 'node:buffer'
import { endpointId } from '../core/topology.js'

export interface OutboundTarget {
  /** The command, upper case, for messages. */
  readonly command: string
  /** `host:port` as endpoints are identified (`[v6]:port` for IPv6). */
  readonly endpoint: string
  /** Runs as the gateway's own user (the level users may not run it, see acl-rules.ts). */
  readonly gatewayUser: boolean
}

function text(a: string | Buffer | undefined): string | null {
  if (a === undefined) return null
  return typeof a === 'string' ? a : a.toString('utf8')
}

function is(a: string | Buffer | undefined, upper: string): boolean {
  const t = text(a)
  return t !== null && t.toUpperCase() === upper
}

/** The host a command makes Redis connect to, or null when it makes Redis connect nowhere. */
export function outboundTarget(args: readonly (string | Buffer)[]): OutboundTarget | null {
  let command: string
  let hostAt: number
  let gatewayUser: boolean
  if (is(args[0], 'MIGRATE')) {
    command = 'MIGRATE'
    hostAt = 1
    gatewayUser = true
  } else if (is(args[0], 'REPLICAOF') || is(args[0], 'SLAVEOF')) {
    // REPLICAOF NO ONE connects nowhere.
    if (is(args[1], 'NO') && is(args[2], 'ONE')) return null
    command = text(args[0])!.toUpperCase()
    hostAt = 1
    gatewayUser = false
  } else if (is(args[0], 'CLUSTER') && is(args[1], 'MEET')) {
    command = 'CLUSTER MEET'
    hostAt = 2
    gatewayUser = true
  } else return null
  const host = (text(args[hostAt]) ?? '').toLowerCase()
  const port = text(args[hostAt + 1]) ?? ''
  // A malformed port is Redis's to refuse; it still names no discovered endpoint.
  return { command, endpoint: /^\d{1,5}$/.test(port) ? endpointId(host, Number(port)) : `${host}:${port}`, gatewayUser }
}
