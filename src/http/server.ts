// The node:http server behind the data and ops ports, with what node:http leaves to its user, so
// that every input gets a JSON answer on documented terms and the same one the fast lane gives
// (fast-lane.ts hands node:http whatever it does not serve itself):
//  - timeouts: the header section within 10 s, the whole request within 30 s, checked every second
//    (node's default check every 30 s let them fire up to 30 s late), and a reply that has not
//    left the socket within limits.writeTimeout ends the connection;
//  - more than limits.maxHeaders header lines: a 431, before the request reaches the app (node:http
//    would drop the lines past its own count silently, an Authorization among them);
//  - malformed input: a JSON 400 (431 for an oversized header section, 408 for a slow request),
//    written only after the replies to the whole requests before it on the connection: those may
//    have run, and a write must never be applied and then answered only with an error;
//  - FIN: the requests that arrived whole are answered, the last reply with Connection: close, and
//    then the connection closes (by default node:http closes at once: pipelined requests would run
//    with no reply); an event stream ends at once, as before.

// The global Buffer is a getter on Node 20 (~140 instructions per use): import the binding.
import { Buffer } from 'node:buffer'
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { ConnectionTracker } from './drain.js'

export interface HttpServerOptions {
  /** limits.maxHeader: request line and header section together. */
  readonly maxHeaderBytes: number
  /** limits.maxHeaders: header lines of one request. */
  readonly maxHeaders: number
  /** limits.writeTimeout. */
  readonly writeTimeoutMs: number
}

export const HEADERS_TIMEOUT_MS = 10_000
export const REQUEST_TIMEOUT_MS = 30_000

/** A server (not listening yet) that serves `listener`, and its connection bookkeeping. */
export function createHttpServer(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  o: HttpServerOptions,
): { server: Server; tracker: ConnectionTracker } {
  /** Connections whose request stream broke (their error reply is written or pending). */
  const broken = new WeakSet<Socket>()
  /** Connections whose FIN is watched for. */
  const watched = new WeakSet<Socket>()
  const server = createServer({ maxHeaderSize: o.maxHeaderBytes, connectionsCheckingInterval: 1_000 }, (req, res) => {
    const socket = req.socket
    if (!watched.has(socket)) {
      watched.add(socket)
      socket.once('end', () => lastReplyCloses(socket))
    }
    if (req.rawHeaders.length > 2 * o.maxHeaders) return tooManyHeaders(res, o.maxHeaders)
    listener(req, res)
  })
  // A client that trickles bytes cannot hold a socket and its buffers for Node's default 5 minutes.
  server.requestTimeout = REQUEST_TIMEOUT_MS
  server.headersTimeout = HEADERS_TIMEOUT_MS
  // One line more than allowed is kept, so that a request over the limit can be told from one at it.
  server.maxHeadersCount = o.maxHeaders + 1
  // Read by node:http's handler of the client's FIN (not in its typings): answer what arrived whole
  // first, then close after the last reply.
  ;(server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
  // The socket's inactivity timeout, reported below instead of node:http's destroying the socket.
  server.timeout = o.writeTimeoutMs
  const tracker = new ConnectionTracker(server)

  // node:http answers what arrived whole before the FIN and closes after the last reply; that
  // reply says so, as the fast lane's does. A reply streaming already (Server-Sent Events) would
  // never end: the client that sent FIN is gone, and the stream ends with the connection.
  const lastReplyCloses = (socket: Socket): void => {
    if (broken.has(socket)) return
    const res = tracker.lastResponse(socket)
    if (res === undefined) return
    if (!res.headersSent) res.setHeader('connection', 'close')
    else if (!res.writableEnded) socket.end()
  }

  // No read or write for limits.writeTimeout (and node:http's keep-alive timeout, which it applies
  // through the same timer). Bytes still waiting in the socket: the client stopped taking its
  // reply. No request in flight: idle. Otherwise a request is being served (a slow command, an
  // event stream between heartbeats): it is left alone.
  server.on('timeout', (socket: Socket) => {
    if (socket.writableLength > 0 || tracker.inflightOn(socket) === 0) socket.destroy()
  })

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // node:http reports the broken parser again on every later read: answer once.
    if (broken.has(socket)) return
    broken.add(socket)
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy()
      return
    }
    const reply = errorReply(err, o.maxHeaderBytes)
    tracker.afterWholeRequests(socket, () => (reply === null ? socket.end() : socket.end(reply)))
  })
  return { server, tracker }
}

function jsonReply(status: number, message: string, withBody = true): string {
  const body = JSON.stringify({ error: message })
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nupstash-sync-token: \r\nconnection: close\r\n\r\n${withBody ? body : ''}`
}

/** What node:http's parse error gets, or null for bytes that are ignored. */
function errorReply(err: NodeJS.ErrnoException, maxHeaderBytes: number): string | null {
  // Bytes after a request that asked to close the connection are not requests; the fast lane
  // ignores them too. The reply to that request closes the connection.
  if (err.code === 'HPE_CLOSED_CONNECTION') return null
  // A reply to HEAD has no body (the headers still say how long it would be).
  const body = (err as { rawPacket?: Buffer }).rawPacket?.toString('latin1', 0, 5) !== 'HEAD '
  if (err.code === 'HPE_HEADER_OVERFLOW') return jsonReply(431, `TOOLARGE request line and headers exceed the limit of ${maxHeaderBytes} bytes`, body)
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return jsonReply(408, 'TIMEOUT request not received in time', body)
  return jsonReply(400, 'BADREQUEST malformed HTTP request', body)
}

function tooManyHeaders(res: ServerResponse, maxHeaders: number): void {
  const body = JSON.stringify({ error: `TOOLARGE more than ${maxHeaders} header lines (limits.maxHeaders)` })
  // The body, if any, was not read: the connection closes.
  res.writeHead(431, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'upstash-sync-token': '',
    connection: 'close',
  })
  res.end(body)
}
