// Classifies what an attempt fails with into the gateway's failure kinds: RespConnection's errors,
// Redis error replies and the attempt's own timeout by their class; anything else by its errno code
// (a refused connect is 'unavailable', everything unknown a 'reset'). Only transport failures
// (not connected, timed out, connection lost, LOADING/MASTERDOWN/READONLY) say anything about
// the endpoint's health; Redis reply errors (WRONGTYPE, syntax) are the client's business.

import {
  ConnectionLostError,
  GatewayError,
  NotConnectedError,
  StalledError,
  NoEndpointError,
  RedisReplyError,
  TimeoutError,
  UpstreamResetError,
} from './errors.js'

export type FailureKind = 'reply' | 'timeout' | 'unavailable' | 'reset' | 'busy-server'

// Reply errors that mean the endpoint cannot serve right now, not that the command was wrong.
// Not TRYAGAIN and CLUSTERDOWN: they are a Redis Cluster's state (a slot migrating, a failover in
// progress), not the node's health; the cluster path waits them out (upstream/cluster-exec.ts), and
// counting them would open the breakers of healthy nodes during every failover.
const TRANSPORT_REPLY_PREFIXES = ['LOADING', 'MASTERDOWN', 'READONLY']

export function failureKind(err: unknown): FailureKind {
  if (!(err instanceof Error)) return 'reset'
  // The gateway's own verdicts (an attempt's timeout, an endpoint not connected).
  if (err instanceof TimeoutError) return 'timeout'
  if (err instanceof NoEndpointError) return 'unavailable'
  if (err instanceof UpstreamResetError) return 'reset'
  // Any other verdict of the gateway on a reply (too large, no memory left): the endpoint answered.
  if (err instanceof GatewayError) return 'reply'
  // The command connection's (resp-connection.ts).
  if (err instanceof NotConnectedError) return 'unavailable'
  if (err instanceof ConnectionLostError) return 'reset'
  // Reset because Redis stopped answering on it: as for the command that timed out.
  if (err instanceof StalledError) return 'timeout'
  if (err.name === 'ReplyError') {
    const m = err.message
    for (const p of TRANSPORT_REPLY_PREFIXES) if (m.startsWith(p)) return 'busy-server'
    return 'reply'
  }
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH') return 'unavailable'
  return 'reset'
}

/** Was the command provably never written to the endpoint? (Only then may a write be retried.) */
export function neverSent(err: unknown): boolean {
  return failureKind(err) === 'unavailable'
}

/** Turns an attempt's failure into the error the HTTP layer maps to a reply. */
export function toGatewayError(err: unknown, endpoint: string, timeoutMs: number): GatewayError | RedisReplyError {
  if (err instanceof GatewayError || err instanceof RedisReplyError) return err
  switch (failureKind(err)) {
    case 'reply':
      return new RedisReplyError((err as Error).message)
    case 'busy-server':
      return new NoEndpointError(`endpoint ${endpoint} cannot serve now: ${(err as Error).message}`, {
        retryAfterS: 1,
      })
    case 'timeout':
      return new TimeoutError(`endpoint ${endpoint} did not answer within ${timeoutMs} ms`)
    case 'unavailable':
      return new NoEndpointError(`endpoint ${endpoint} is not connected`, { retryAfterS: 1 })
    case 'reset':
      return new UpstreamResetError(
        `connection to endpoint ${endpoint} was lost before the reply; the command may or may not have run`,
        { retryAfterS: 1, cause: err },
      )
  }
}
