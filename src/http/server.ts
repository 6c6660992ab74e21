// The node:http server behind the data and ops ports, with what node:http leaves to its user, so
// that every input gets a JSON answer on documented terms and the same one the fast lane gives
// (fast-lane/ hands node:http whatever it does not serve itself):
//  - timeouts: the header section within 10 s, the whole request within 30 s, checked every second
//    (node's default check every 30 s let them fire up to 30 s late), and bytes that have not left
//    the socket within limits.writeTimeout (a client that does not read) end the connection;
//  - more than limits.maxHeaders header lines: a 431, before the request reaches the app (node:http
//    would drop the lines past its own count silently, an Authorization among them); no Host, or
//    an Expect other than 100-continue: a JSON 400 or 417 (node:http's own are empty);
//  - malformed input: a JSON 400 (431 for an oversized header section, 408 for a slow request),
//    written only after the replies to the whole requests before it on the connection: those may
//    have run, and a write must never be applied and then answered only with an error;
//  - pipelined requests go to the app one at a time, none after a reply that closes the connection
//    (node:http runs them all at once, and drops the replies behind a closing one);
//  - FIN: the requests that arrived whole are answered, then the connection closes (by default
//    node:http closes at once: pipelined requests would run with no reply); an event stream ends
//    at once, as before.

import { Buffer } from 'node:buffer'
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { closes, ConnectionTracker } from './drain.js'
import type { CorsPolicy } from './cors.js'

export interface HttpServerOptions {
  /** limits.maxHeader: request line and header section together. */
  readonly maxHeaderBytes: number
  /** limits.maxHeaders: header lines of one request. */
  readonly maxHeaders: number
  /** limits.writeTimeout. */
  readonly writeTimeoutMs: number
  /** CORS headers for every reply (the data port; cors.ts), the parser's own error replies included. */
  readonly cors?: CorsPolicy
  /** Told when a client is disconnected for being slow: a reply unread past writeTimeout, a request not received in time (408). */
  readonly onSlowClient?: (reason: 'write_timeout' | 'request_timeout') => void
}

/** A server (not listening yet) that serves `listener`, and its connection bookkeeping. */
export function createHttpServer(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  o: HttpServerOptions,
): { server: Server; tracker: ConnectionTracker } {
  /** Connections whose request stream broke (their error reply is written or pending). */
  const broken = new WeakSet<Socket>()
  /** Connections whose FIN is watched for. */
  const watched = new WeakSet<Socket>()
  // requireHostHeader: the 400 for a request without Host is written below, where the connection
  // bookkeeping sees it (node:http's own would be an empty reply no one waits for).
  const options = { maxHeaderSize: o.maxHeaderBytes, connectionsCheckingInterval: 1_000, requireHostHeader: false }
  /** Requests with an Expect other than 100-continue (node:http's 'checkExpectation'). */
  const unmet = new WeakSet<IncomingMessage>()
  const cors = o.cors
  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    // Set first, so every reply to the request carries them: the app's, an event stream's, refuse()'s.
    if (cors !== undefined) for (const [k, v] of cors.headers(req.headers.origin)) res.setHeader(k, v)
    if (req.rawHeaders.length > 2 * o.maxHeaders) return refuse(res, 431, `TOOLARGE more than ${o.maxHeaders} header lines (limits.maxHeaders)`)
    if (req.headers.host === undefined && req.httpVersion === '1.1') return refuse(res, 400, 'BADREQUEST the request has no Host header')
    if (unmet.has(req)) return refuse(res, 417, 'EXPECTATION only "Expect: 100-continue" is supported')
    listener(req, res)
  }
  const inTurn = oneAtATime((req, res) => {
    const socket = req.socket
    if (!watched.has(socket)) {
      watched.add(socket)
      socket.once('end', () => endStreamOnFin(socket))
    }
    serve(req, res)
  })
  const server = createServer(options, inTurn)
  // A client that trickles bytes cannot hold a socket and its buffers for Node's default 5 minutes.
  server.requestTimeout = 30_000
  server.headersTimeout = 10_000
  // One line more than allowed is kept, so that a request over the limit can be told from one at it.
  server.maxHeadersCount = o.maxHeaders + 1
  // Read by node:http's handler of the client's FIN (not in its typings): answer what arrived whole
  // first, then close after the last reply.
  ;(server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
  const tracker = new ConnectionTracker(server)
  // An Expect other than 100-continue: refused as node:http would (417), in turn and in the
  // bookkeeping like any request.
  server.on('checkExpectation', (req, res) => {
    tracker.track(req, res)
    unmet.add(req)
    inTurn(req, res)
  })

  // node:http answers what arrived whole before the FIN and closes after the last reply, which it
  // sends as written (keep-alive, like the fast lane's). A reply streaming already (Server-Sent
  // Events) would never end: the client that sent FIN is gone, and the stream ends at once.
  const endStreamOnFin = (socket: Socket): void => {
    const res = tracker.lastResponse(socket)
    if (res !== undefined && res.headersSent && !res.writableEnded) socket.end()
  }

  // limits.writeTimeout: a connection whose bytes have waited in the socket that long, without the
  // socket emptying once, is given up; looked at every second for all connections, as the fast
  // lane looks at its own. (The socket's inactivity timeout is no substitute: net.Socket takes a
  // stuck write for activity once, so it fires only after up to twice the time.)
  const stalledSince = new WeakMap<Socket, number>()
  const sweep = setInterval(() => {
    const now = performance.now()
    for (const socket of tracker.sockets()) {
      // Given up already, and still listed until its 'close': not a second slow client.
      if (socket.destroyed) continue
      if (socket.writableLength === 0) {
        stalledSince.delete(socket)
        continue
      }
      const since = stalledSince.get(socket)
      if (since === undefined) stalledSince.set(socket, now)
      else if (now - since >= o.writeTimeoutMs) {
        socket.destroy()
        o.onSlowClient?.('write_timeout')
      }
    }
  }, 1_000)
  sweep.unref()
  server.once('close', () => clearInterval(sweep))

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // node:http reports the broken parser again on every later read: answer once.
    if (broken.has(socket)) return
    broken.add(socket)
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy()
      return
    }
    const reply = errorReply(err, o.maxHeaderBytes, cors?.lines(undefined) ?? '')
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') o.onSlowClient?.('request_timeout')
    // After a reply that closes the connection nothing more is said: what follows it is not read
    // (node:http may also have answered such a reply already, before parsing on to this error), and
    // node:http closes the connection once that reply, perhaps still queued, is written.
    tracker.afterWholeRequests(socket, (closing) => {
      if (closing) return
      if (reply === null) socket.end()
      else socket.end(reply)
    })
  })
  return { server, tracker }
}

/**
 * Hands the pipelined requests of a connection to `serve` one at a time: each once the reply
 * before it has been written, and not at all when that reply closes the connection. node:http
 * runs every request it parses at once and drops the replies queued behind one that closes the
 * connection (a 413, a 431): writes applied and never answered. The fast lane serves one request
 * at a time too, and reads nothing after a reply that closes.
 */
function oneAtATime(serve: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  /** Each connection's latest response. */
  const latest = new WeakMap<Socket, ServerResponse>()
  /** Responses whose bytes have all been handed to the socket ('prefinish'). */
  const written = new WeakSet<ServerResponse>()
  return (req, res) => {
    res.once('prefinish', () => written.add(res))
    const socket = req.socket
    const before = latest.get(socket)
    latest.set(socket, res)
    if (before === undefined) return serve(req, res)
    const go = (): void => {
      if (!closes(before)) serve(req, res)
    }
    // Registered after `written.add`: that runs first. A connection that breaks first runs nothing.
    if (written.has(before)) go()
    else before.once('prefinish', go)
  }
}

function jsonReply(status: number, message: string, withBody: boolean, extra: string): string {
  const body = JSON.stringify({ error: message })
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${extra}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nupstash-sync-token: \r\nconnection: close\r\n\r\n${withBody ? body : ''}`
}

/**
 * What node:http's parse error gets, or null for bytes that are ignored. `extra`: header lines
 * (CORS) that need no request header (the request could not be parsed).
 */
function errorReply(err: NodeJS.ErrnoException, maxHeaderBytes: number, extra: string): string | null {
  // Bytes after a request that asked to close the connection are not requests; the fast lane
  // ignores them too. The reply to that request closes the connection.
  if (err.code === 'HPE_CLOSED_CONNECTION') return null
  // A reply to HEAD has no body (the headers still say how long it would be).
  const body = (err as { rawPacket?: Buffer }).rawPacket?.toString('latin1', 0, 5) !== 'HEAD '
  if (err.code === 'HPE_HEADER_OVERFLOW') return jsonReply(431, `TOOLARGE request line and headers exceed the limit of ${maxHeaderBytes} bytes`, body, extra)
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return jsonReply(408, 'TIMEOUT request not received in time', body, extra)
  return jsonReply(400, 'BADREQUEST malformed HTTP request', body, extra)
}

/** A request refused before the app sees it; its body, if any, is not read: the connection closes. */
function refuse(res: ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ error: message })
  res.setHeader('content-type', 'application/json')
  res.setHeader('content-length', Buffer.byteLength(body))
  res.setHeader('upstash-sync-token', '')
  // With setHeader, so that the connection bookkeeping sees it (drain.ts).
  res.setHeader('connection', 'close')
  res.writeHead(status)
  res.end(body)
}
