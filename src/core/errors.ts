// Gateway-made failures: one class per failure, each with a stable upper-case code.
// The HTTP layer maps them to status and body in exactly one place (src/http/error-response.ts).

export type ErrorCode =
  | 'BADREQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOTFOUND'
  | 'METHOD'
  | 'TOOLARGE'
  | 'REFUSED'
  | 'UNKNOWNCOMMAND'
  | 'NOENDPOINT'
  | 'UPSTREAMRESET'
  | 'DRAINING'
  | 'READONLY'
  | 'TIMEOUT'
  | 'OVERLOADED'
  | 'INTERNAL'

export abstract class GatewayError extends Error {
  abstract readonly code: ErrorCode
  /** Seconds a client should wait before retrying (503s), sent as Retry-After. */
  readonly retryAfterS: number | undefined
  /**
   * The reply closes the connection: the request's body was not read to its end (over a limit), so
   * the bytes that follow on the connection are not a request.
   */
  readonly closeConnection: boolean
  constructor(message: string, opts?: { retryAfterS?: number; cause?: unknown; closeConnection?: boolean }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause })
    this.retryAfterS = opts?.retryAfterS
    this.closeConnection = opts?.closeConnection ?? false
  }
  /** The client-facing text: the code first, so clients can match on it. */
  get publicMessage(): string {
    return `${this.code} ${this.message}`
  }
}

export class BadRequestError extends GatewayError {
  readonly code = 'BADREQUEST'
}
export class UnauthorizedError extends GatewayError {
  readonly code = 'UNAUTHORIZED'
  /** `reason` (the ops plane): said after the code; without one, the data plane's Upstash body. */
  constructor(private readonly reason?: string) {
    super(reason ?? 'Unauthorized')
  }
  // Upstash clients expect exactly this body.
  override get publicMessage(): string {
    return this.reason === undefined ? 'Unauthorized' : `UNAUTHORIZED ${this.reason}`
  }
}
export class ForbiddenError extends GatewayError {
  readonly code = 'FORBIDDEN'
}
export class NotFoundError extends GatewayError {
  readonly code = 'NOTFOUND'
}
export class MethodNotAllowedError extends GatewayError {
  readonly code = 'METHOD'
  constructor(
    message: string,
    /** Value of the Allow header. */
    readonly allow: string,
  ) {
    super(message)
  }
}
export class TooLargeError extends GatewayError {
  readonly code = 'TOOLARGE'
}
/** A command the gateway will not run on a shared connection (MULTI, blocking, SUBSCRIBE outside SSE...). */
export class RefusedCommandError extends GatewayError {
  readonly code = 'REFUSED'
}
export class UnknownCommandError extends GatewayError {
  readonly code = 'UNKNOWNCOMMAND'
  // Redis's own wording ("ERR unknown command 'x'"), as clients of Redis and Upstash expect.
  override get publicMessage(): string {
    return this.message
  }
}
/** No endpoint of the needed role can take the request (not connected, down, breaker open). */
export class NoEndpointError extends GatewayError {
  readonly code = 'NOENDPOINT'
}
/** The connection broke after the command was sent: its outcome is unknown. */
export class UpstreamResetError extends GatewayError {
  readonly code = 'UPSTREAMRESET'
}
export class DrainingError extends GatewayError {
  readonly code = 'DRAINING'
}
export class ReadOnlyError extends GatewayError {
  readonly code = 'READONLY'
}
export class TimeoutError extends GatewayError {
  readonly code = 'TIMEOUT'
}
export class OverloadedError extends GatewayError {
  readonly code = 'OVERLOADED'
}

/** An error reply from Redis itself (WRONGTYPE, ERR syntax...): passed through verbatim with 400. */
export class RedisReplyError extends Error {
  constructor(message: string) {
    super(message)
  }
}

/** Status for each gateway code: the single mapping used by the HTTP layer. */
export function statusOf(code: ErrorCode): number {
  switch (code) {
    case 'BADREQUEST':
    case 'REFUSED':
    case 'UNKNOWNCOMMAND':
      return 400
    case 'UNAUTHORIZED':
      return 401
    case 'FORBIDDEN':
      return 403
    case 'NOTFOUND':
      return 404
    case 'METHOD':
      return 405
    case 'TOOLARGE':
      return 413
    case 'NOENDPOINT':
    case 'UPSTREAMRESET':
    case 'DRAINING':
    case 'READONLY':
    case 'OVERLOADED':
      return 503
    case 'TIMEOUT':
      return 504
    case 'INTERNAL':
      return 500
  }
}

// Transport errors of a Redis connection (upstream/resp-connection.ts), which failures.ts sorts
// into failure kinds; not GatewayErrors: they never reach a client as such.

/** Refused without being written: the connection is not ready (so a write may be retried elsewhere). */
export class NotConnectedError extends Error {
  override readonly name = 'NotConnectedError'
}

/** The connection closed after the command was written and before its reply. */
export class ConnectionLostError extends Error {
  override readonly name = 'ConnectionLostError'
}

/**
 * The command's connection was reset because Redis stopped answering on it (timedOut()): for the
 * commands waiting on it, a timeout (504), not a lost connection. They may or may not have run.
 */
export class StalledError extends Error {
  override readonly name = 'StalledError'
}

/**
 * A health check got no reply in time while its connection kept receiving replies to the commands
 * queued before it: the connection is busy (the gateway is behind on a backlog of its own
 * requests), not Redis down. The checker counts it neither as a failure nor as a success.
 */
export class BusyCheckError extends Error {
  override readonly name = 'BusyCheckError'
}
