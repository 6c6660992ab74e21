// What the fast lane and its user exchange: the request it hands to the handler, the reply it
// gets back, the options it is built with, and what it reports.

import type { Buffer } from 'node:buffer'
import type { Server as NetServer } from 'node:net'
import type { ConnectionTracker } from '../drain.js'
import type { RequestLease } from '../../resilience/byte-budget.js'
import type { CorsPolicy } from '../cors.js'

export interface FastRequest {
  readonly method: 'GET' | 'POST'
  /** The request target as sent (origin form: path and query). */
  readonly url: string
  /** Lower-case header names and their values, flat: [name, value, name, value...]; names are unique (duplicates go to node:http). See headerValue(). */
  readonly headers: readonly string[]
  readonly body: Buffer
  /** The request's share of the memory budget; the lane releases it once the reply has left. */
  readonly lease: RequestLease
  /**
   * The memory budget could not take the body as it arrived: `body` is empty, the rest of it is
   * not read, and the connection closes after the reply (which says so: a 503 to retry).
   */
  readonly bodyRefused: boolean
}

export interface FastResponse {
  readonly status: number
  /** Header lines, each `name: value\r\n`; Date, Content-Length and Connection are added. */
  readonly headers: string
  /** Text is sent as UTF-8; bytes as they are. */
  readonly body: string | Buffer
  /** Close the connection after this reply. */
  readonly close: boolean
}

export interface FastLaneOptions {
  /** Serves a complete request; a rejection is answered 500 and the connection closed. */
  readonly handle: (req: FastRequest) => Promise<FastResponse>
  /** A memory lease for each request (released by the lane once the reply has left). */
  readonly newLease: () => RequestLease
  /** Whether the lane may serve a request with this target and headers (before its body is read). */
  readonly accept: (method: string, url: string, headers: readonly string[]) => boolean
  readonly maxHeaderBytes: number
  /** Header lines a request may have; one with more goes to node:http (which answers 431). */
  readonly maxHeaders: number
  readonly maxBodyBytes: number
  /** A client that has not taken a reply off the socket after this long is disconnected. */
  readonly writeTimeoutMs: number
  /** Drain and connection bookkeeping shared with node:http's path; it counts the lane's connections too. */
  readonly tracker: ConnectionTracker
  /** Told what was thrown while handling a connection; that connection was destroyed, the lane goes on. */
  readonly onFault?: (err: Error) => void
  /** Told when a client is disconnected for being slow (as node:http's side, server.ts). */
  readonly onSlowClient?: (reason: 'write_timeout' | 'request_timeout') => void
  /** Injected for tests; performance.now() by default. */
  readonly now?: () => number
  /** CORS headers for every reply (cors.ts), as node:http's side of the port sends them. */
  readonly cors?: CorsPolicy
}

export interface FastLane {
  /** The listening socket: listen() on it; a drain (ConnectionTracker) closes it. */
  readonly server: NetServer
  /** Requests served by the lane / connections handed to node:http, since creation. */
  readonly served: number
  readonly handedOver: number
  /** Stops the sweep timer (closing `server` does it too). */
  stop(): void
}
