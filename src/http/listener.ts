// A listening port of the gateway: node:http on the gateway's terms (server.ts) serving a fetch
// app (Hono through @hono/node-server), behind the fast lane (fast-lane/) when one is given, with
// the connection bookkeeping a graceful stop drains (drain.ts).

import type { Server } from 'node:http'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { parseListenAddress } from '../config/schema.js'
import type { CorsPolicy } from './cors.js'
import { anyHost } from './data-plane.js'
import type { ConnectionTracker } from './drain.js'
import { createFastLane, type FastLane, type FastLaneOptions } from './fast-lane/index.js'
import { createHttpServer } from './server.js'

/**
 * Connections the kernel may hold for the port before the gateway accepts them: as many as it
 * allows (Linux caps the value at net.core.somaxconn, 4096 by default since 5.4; Envoy listens with
 * somaxconn too), not node's 511. Under a burst of new connections a full queue drops SYNs and the
 * clients retry 1, 3, 7 s later; and libuv accepts one connection per turn of the event loop, so
 * a busy gateway drains the queue slowly (bench/README.md, "Cost as work grows").
 */
export const LISTEN_BACKLOG = 65_535

/** The limits (config `limits`) a listener applies before a request reaches the app. */
export interface ListenLimits {
  readonly maxHeaderBytes: number
  readonly maxHeaders: number
  readonly writeTimeoutMs: number
  /** Told when a client is disconnected for being slow (server.ts); both paths of the port tell it. */
  readonly onSlowClient?: (reason: 'write_timeout' | 'request_timeout') => void
}

/** A fast lane's options, but those the listener fills in (its limits and its tracker). */
export type FastLaneSetup = Omit<FastLaneOptions, 'maxHeaderBytes' | 'maxHeaders' | 'writeTimeoutMs' | 'tracker' | 'onSlowClient'>

export class HttpListener {
  constructor(
    /** node:http's server: its options and timeouts apply to both paths. */
    readonly http: Server,
    /** The server that owns the listening socket: the lane's, or `http` itself. */
    private readonly accepting: NetServer,
    /** Every connection of the port and its requests; drain() stops the port. */
    readonly tracker: ConnectionTracker,
    readonly lane: FastLane | null,
  ) {}

  address(): AddressInfo | string | null {
    return this.accepting.address()
  }

  get listening(): boolean {
    return this.accepting.listening
  }

  /** The keep-alive timeout the port's replies advertise. */
  get keepAliveTimeout(): number {
    return this.http.keepAliveTimeout
  }
}

/**
 * Listens on `address` ("host:port") and serves `fetch` there; with `fastLane`, plain requests are
 * served by the lane and the rest by `fetch`. `cors`: the headers every reply of the port carries.
 */
export function listen(
  address: string,
  fetch: (req: Request, env: never) => Response | Promise<Response>,
  limits: ListenLimits,
  fastLane: FastLaneSetup | null,
  cors: CorsPolicy | null,
): Promise<HttpListener> {
  const { host, port } = parseListenAddress(address)
  // A request the adapter cannot turn into a fetch Request (a backslash in the path...) gets a
  // JSON 400 like every other error, instead of the adapter's empty 400; any Host is taken.
  const app = anyHost(
    getRequestListener(fetch as never, {
      errorHandler: (err) =>
        new Response(JSON.stringify({ error: `BADREQUEST ${err instanceof Error ? err.message : 'malformed request'}` }), {
          status: 400,
          headers: { 'content-type': 'application/json', 'upstash-sync-token': '' },
        }),
    }),
  )
  const http = {
    maxHeaderBytes: limits.maxHeaderBytes,
    maxHeaders: limits.maxHeaders,
    writeTimeoutMs: limits.writeTimeoutMs,
    onSlowClient: limits.onSlowClient,
  }
  const { server, tracker } = createHttpServer(app, cors === null ? http : { ...http, cors })
  const lane = fastLane === null ? null : createFastLane(server, { ...fastLane, ...http, tracker })
  const accepting: NetServer = lane?.server ?? server
  return new Promise((resolve, reject) => {
    accepting.once('error', reject)
    accepting.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      accepting.off('error', reject)
      resolve(new HttpListener(server, accepting, tracker, lane))
    })
  })
}
