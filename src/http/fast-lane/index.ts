// The data plane's fast lane: plain HTTP/1.1 requests served straight from the socket, without
// node:http's per-request objects (IncomingMessage, ServerResponse, their streams and timers),
// which cost more CPU than everything else a GET does (bench/README.md, "Fast lane").
//
// This file wires it: the lane owns the listening socket (a net.Server), starts every connection
// in the lane (connection.ts), and gives node:http the connections that are not the lane's to
// serve (grammar.ts says which) through the documented way of handing an http.Server a
// connection, `emit('connection', socket)`, with the bytes already read pushed back in front of
// the socket's stream. node:http then serves that connection as if it had accepted it: llhttp
// parses it, and oversized, malformed or smuggling-shaped input gets the same answers as without
// the lane. One timer sweeps all the lane's connections for timeouts.

import { performance } from 'node:perf_hooks'
import type { Server } from 'node:http'
import { createServer as createNetServer, type Socket } from 'node:net'
import type { Buffer } from 'node:buffer'
import { Connection, type Lane } from './connection.js'
import { keepAliveLines, timeoutReply } from './replies.js'
import type { FastLane, FastLaneOptions } from './types.js'

export { headerValue } from './grammar.js'
export type { FastLane, FastLaneOptions, FastRequest, FastResponse } from './types.js'

/**
 * A fast lane in front of `http`, which keeps its options (timeouts, limits) and serves every
 * connection handed to it. Nothing listens yet: call `server.listen()` on the result.
 */
export function createFastLane(http: Server, opts: FastLaneOptions): FastLane {
  // As node:http's own listening socket is made: a half-closed connection is still answered, and
  // small replies are not held back by Nagle's algorithm.
  const server = createNetServer({ allowHalfOpen: true, noDelay: true })
  const conns = new Set<Connection>()
  const stats = { served: 0, handedOver: 0 }
  const cors = opts.cors?.lines(undefined) ?? ''
  const handOver = (c: Connection, pending: Buffer | null, ended: boolean): void => {
    conns.delete(c)
    c.detach()
    stats.handedOver++
    if (!ended) {
      // Nothing is emitted between these lines: the bytes go back to the front of the socket's
      // buffer and node:http, attached now, reads them first.
      if (pending !== null && pending.length > 0) c.socket.unshift(pending)
      http.emit('connection', c.socket)
      return
    }
    // The client's FIN came already: the stream has ended (no unshift) and will not say so again,
    // so node:http's listeners get the bytes and the end directly, as they would have.
    http.emit('connection', c.socket)
    if (pending !== null && pending.length > 0) c.socket.emit('data', pending)
    c.socket.emit('end')
  }
  const lane: Lane = {
    opts,
    now: opts.now ?? (() => performance.now()),
    handOver,
    stats,
    keepAlive: keepAliveLines(http.keepAliveTimeout),
    // The request has not arrived whole: no Origin to look at, only a policy that needs none.
    timeoutReply: timeoutReply(opts.cors === undefined || opts.cors.byOrigin ? '' : cors),
  }

  // Every connection is counted by the tracker, whichever side serves it, and a drain stops
  // accepting by closing this server.
  opts.tracker.acceptFrom(server)
  server.on('connection', (socket: Socket) => {
    const c = new Connection(socket, lane)
    conns.add(c)
    socket.once('close', () => conns.delete(c))
  })
  // node:http starts checking its header and request timeouts on its own 'listening' event, and it
  // never listens itself here: the event is passed on, so that the connections handed over keep
  // node:http's 408s.
  server.on('listening', () => http.emit('listening'))

  // One timer for all connections: idle keep-alive, slow headers, slow bodies, unread replies.
  const sweep = setInterval(() => {
    const t = lane.now()
    lane.keepAlive = keepAliveLines(http.keepAliveTimeout)
    for (const c of conns) {
      try {
        c.sweep(t, http)
      } catch (err) {
        c.fault(err)
      }
    }
  }, 1_000)
  sweep.unref()
  const stop = (): void => clearInterval(sweep)
  server.once('close', stop)
  return {
    server,
    get served() {
      return stats.served
    },
    get handedOver() {
      return stats.handedOver
    },
    stop,
  }
}
