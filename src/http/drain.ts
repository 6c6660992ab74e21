// Connection bookkeeping for a graceful stop of a Node HTTP server: which sockets have requests in
// flight, and a drain() that stops accepting, asks keep-alive clients to go away, waits (bounded)
// for in-flight requests, then destroys what is left.
//
// Why not http.Server#close(): since Node 19 it also closes every idle keep-alive connection at
// once, and a client may be writing its next request on such a connection at that very moment;
// that request fails although the server never refused it. Here an idle connection is closed only
// once it has been idle for `idleCloseMs`; the gateway passes the keep-alive timeout it advertises
// (`Keep-Alive: timeout=5`), after which well-behaved clients (undici, browsers) no longer reuse a
// connection. A connection in use is closed by answering its next request with `Connection: close`.

import { performance } from 'node:perf_hooks'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Server as NetServer, type Socket } from 'node:net'

interface Conn {
  readonly socket: Socket
  /** Requests read and not yet answered on this connection. */
  inflight: number
  /** When the connection last became idle (opened, or its last response ended); ms, performance.now(). */
  idleSince: number
  readonly responses: Set<ServerResponse>
}

export interface DrainOptions {
  /** An idle connection (no request in flight) is closed once idle this long; 0 closes idle ones at once. */
  readonly idleCloseMs: number
  /** After this long, connections still open are destroyed, cutting the requests they carry. */
  readonly timeoutMs: number
}

export interface DrainResult {
  /** Requests in flight when the drain started. */
  readonly inflightAtStart: number
  /** Open connections when the drain started. */
  readonly connectionsAtStart: number
  /** Requests that arrived on existing connections during the drain (each answered with Connection: close). */
  readonly requestsDuringDrain: number
  /** Responses that went out with `Connection: close` because of the drain. */
  readonly connectionClose: number
  /** Idle connections the drain closed (the clients closed the others). */
  readonly idleClosed: number
  /** Requests still in flight at the timeout, cut by destroying their connections. */
  readonly cut: number
  /** Connections destroyed at the timeout. */
  readonly destroyed: number
  readonly elapsedMs: number
}

/**
 * The response ends its connection: its request asked to (Connection: close, or HTTP/1.0 without
 * keep-alive), or the server said so in a Connection header set with setHeader (which is how the
 * gateway's replies that close are written, the drain's included).
 */
export function closes(res: ServerResponse): boolean {
  return !res.shouldKeepAlive || String(res.getHeader('connection')).toLowerCase() === 'close'
}

/** Tracks the connections and requests of one HTTP server; drain() closes it. */
export class ConnectionTracker {
  private readonly conns = new Map<Socket, Conn>()
  private drainState: {
    requests: number
    connectionClose: number
    idleClosed: number
    readonly check: () => void
  } | null = null
  private drained: Promise<DrainResult> | null = null
  /** The server that accepts the connections: `server`, or one in front of it (acceptFrom). */
  private listener: NetServer

  constructor(
    private readonly server: Server,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.listener = server
    server.on('connection', this.onConnection)
    // Before the app's listener, so a drain's Connection: close is set before any handler can answer.
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => this.track(req, res))
  }

  private readonly onConnection = (socket: Socket): void => {
    const conn: Conn = { socket, inflight: 0, idleSince: this.now(), responses: new Set() }
    this.conns.set(socket, conn)
    socket.once('close', () => {
      this.conns.delete(socket)
      this.drainState?.check()
    })
  }

  /**
   * The connections are accepted by `listener`, a server in front of node:http's that hands it
   * those it does not serve itself (the fast lane): they are counted from there, and a drain stops
   * accepting by closing it.
   */
  acceptFrom(listener: NetServer): void {
    this.server.off('connection', this.onConnection)
    listener.on('connection', this.onConnection)
    this.listener = listener
  }

  /**
   * Counts a request node:http answers outside 'request' (a failed Expect, 'checkExpectation'),
   * as every request is: a response the tracker did not know of would be overtaken.
   */
  track(req: IncomingMessage, res: ServerResponse): void {
    const conn = this.conns.get(req.socket)
    if (!conn) return
    conn.inflight++
    conn.responses.add(res)
    const d = this.drainState
    if (d) {
      d.requests++
      this.closeAfter(res)
    }
    res.once('close', () => {
      conn.inflight--
      conn.responses.delete(res)
      if (conn.inflight === 0) conn.idleSince = this.now()
      this.drainState?.check()
    })
  }

  /** A drain has started: replies must close their connections. */
  get draining(): boolean {
    return this.drainState !== null
  }

  /** A request on `socket` is being served outside node:http (the fast lane, fast-lane/). */
  requestBegan(socket: Socket): void {
    const conn = this.conns.get(socket)
    if (!conn) return
    conn.inflight++
    if (this.drainState) this.drainState.requests++
  }

  /**
   * The fast lane answered a request on `socket`; `closedForDrain` when the reply carried
   * `Connection: close` because of the drain.
   */
  requestEnded(socket: Socket, closedForDrain: boolean): void {
    const conn = this.conns.get(socket)
    if (!conn) return
    conn.inflight--
    if (conn.inflight === 0) conn.idleSince = this.now()
    const d = this.drainState
    if (d) {
      if (closedForDrain) d.connectionClose++
      d.check()
    }
  }

  /** The open connections. */
  sockets(): IterableIterator<Socket> {
    return this.conns.keys()
  }

  /** The response to the last request read on `socket` that is still open, if any. */
  lastResponse(socket: Socket): ServerResponse | undefined {
    const conn = this.conns.get(socket)
    let last: ServerResponse | undefined
    if (conn) for (const res of conn.responses) last = res
    return last
  }

  /**
   * Calls `then` once the responses on `socket` to requests that arrived whole have been handed to
   * the socket (at once when there are none), so that what `then` writes follows them. Those
   * requests may already have run: anything sent after them on the connection (an error reply to
   * what followed them) must not overtake their replies. `then` is told whether a reply written by
   * then closes the connection (its request or the server said so: Connection: close), after which
   * nothing more is to be said.
   */
  afterWholeRequests(socket: Socket, then: (closing: boolean) => void): void {
    const conn = this.conns.get(socket)
    const call = (): void => then(conn !== undefined && [...conn.responses].some((res) => res.writableEnded && closes(res)))
    let left = 0
    const one = (): void => {
      if (--left === 0) call()
    }
    if (conn) {
      for (const res of conn.responses) {
        // Ended while holding the socket: its bytes are in the socket already.
        if (!res.req.complete || (res.writableEnded && res.socket === socket)) continue
        left++
        let counted = false
        const done = (): void => {
          if (counted) return
          counted = true
          one()
        }
        // 'prefinish': its last bytes were just handed to the socket ('finish' comes once they
        // left, too late: node:http may close the connection then). 'close': the connection broke.
        res.once('prefinish', done)
        res.once('close', done)
      }
    }
    if (left === 0) call()
  }

  /** Requests read and not yet answered. */
  get inflight(): number {
    let n = 0
    for (const c of this.conns.values()) n += c.inflight
    return n
  }

  /** Open connections. */
  get connections(): number {
    return this.conns.size
  }

  /** Closes idle connections now instead of after `idleCloseMs` (an operator's second signal). */
  closeIdleNow(): void {
    const d = this.drainState
    if (!d) return
    for (const c of this.conns.values()) if (c.inflight === 0) this.closeIdle(c)
  }

  /**
   * Stops accepting connections and resolves once every connection is closed: in-flight requests
   * finish (their responses carry `Connection: close`), requests arriving on open connections are
   * answered the same way, idle connections are closed after `idleCloseMs`, and whatever is still
   * open after `timeoutMs` is destroyed. Calling it again returns the first drain's result.
   */
  drain(opts: DrainOptions): Promise<DrainResult> {
    if (this.drained) return this.drained
    const started = this.now()
    let inflightAtStart = 0
    for (const c of this.conns.values()) inflightAtStart += c.inflight
    const connectionsAtStart = this.conns.size
    this.drained = new Promise<DrainResult>((resolve) => {
      let cut = 0
      let destroyed = 0
      let sweep: NodeJS.Timeout | null = null
      let deadline: NodeJS.Timeout | null = null
      let done = false
      const finish = (): void => {
        if (done) return
        done = true
        if (sweep) clearInterval(sweep)
        if (deadline) clearTimeout(deadline)
        // The listener is already closed; http's close() now only clears its connection-checking
        // timer (there is no connection left for it to close).
        this.server.close()
        const d = this.drainState!
        resolve({
          inflightAtStart,
          connectionsAtStart,
          requestsDuringDrain: d.requests,
          connectionClose: d.connectionClose,
          idleClosed: d.idleClosed,
          cut,
          destroyed,
          elapsedMs: Math.round(this.now() - started),
        })
      }
      const check = (): void => {
        if (done) return
        if (this.conns.size === 0) {
          finish()
          return
        }
        const now = this.now()
        for (const c of this.conns.values()) {
          if (c.inflight === 0 && now - c.idleSince >= opts.idleCloseMs) this.closeIdle(c)
        }
      }
      this.drainState = { requests: 0, connectionClose: 0, idleClosed: 0, check }
      // Stop accepting: close the listening socket only (see the header comment).
      NetServer.prototype.close.call(this.listener)
      for (const c of [...this.conns.values()]) for (const res of [...c.responses]) this.closeAfter(res)
      deadline = setTimeout(() => {
        for (const c of this.conns.values()) {
          cut += c.inflight
          destroyed++
          c.socket.destroy()
        }
        // Destroyed sockets emit 'close' on the next tick; finish() runs from the last one.
        if (this.conns.size === 0) finish()
      }, opts.timeoutMs)
      deadline.unref()
      if (opts.idleCloseMs > 0) {
        sweep = setInterval(check, Math.min(100, opts.idleCloseMs))
        sweep.unref()
      }
      check()
    })
    return this.drained
  }

  // The connection ends with this response; tell the client (and Node, which then closes it).
  private closeAfter(res: ServerResponse): void {
    const d = this.drainState!
    if (!res.headersSent) {
      res.setHeader('connection', 'close')
      d.connectionClose++
    }
  }

  private closeIdle(c: Conn): void {
    if (c.socket.destroyed || c.socket.writableEnded) return
    this.drainState!.idleClosed++
    // FIN after anything still buffered; nothing is in flight on it.
    c.socket.destroySoon()
  }
}
