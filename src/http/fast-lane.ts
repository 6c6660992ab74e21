// The data plane's fast lane: plain HTTP/1.1 requests served straight from the socket, without
// node:http's per-request objects (IncomingMessage, ServerResponse, their streams and timers),
// which cost more CPU than everything else a GET does (bench/README.md, "Fast lane").
//
// It is deliberately narrow. A connection starts in the lane; the lane serves a request itself
// only when it is unambiguous: GET or POST, HTTP/1.1, an origin-form target of visible ASCII
// without a backslash, at most `maxHeaders` well-formed header lines with no duplicate names, Host
// present, a body framed by at most one Content-Length (no Transfer-Encoding, Expect or Upgrade),
// Content-Length and Connection values without bytes llhttp reads differently (a TAB: llhttp
// refuses `Content-Length: 5<TAB>` and does not read `Connection: close<TAB>` as close), headers
// and body within the limits, and `accept` agrees (the data plane refuses Server-Sent Events).
// Anything else, valid or not, is handed over, with the bytes read so far (and the client's FIN,
// if it came), to node:http's own connection handling for the rest of that connection's life:
// llhttp parses it, and oversized, malformed or smuggling-shaped input gets the same answers as
// without the lane. Being conservative costs only speed, never meaning.
//
// One request at a time per connection: pipelined requests wait in the buffer until the reply
// before them is written, so replies stay in order; after the client's FIN, the requests that
// arrived whole are answered, then the connection closes. Replies carry Date,
// Content-Length and keep-alive headers as node:http would. Idle, slow and draining connections
// are handled as node:http does, by one sweep timer for all connections instead of timers per
// socket; the same sweep disconnects a client that has not taken its reply off the socket within
// `writeTimeoutMs`. A request body is charged to the request's memory lease as it arrives.
// Whatever is thrown while handling a connection ends that connection only (`onFault`).

// The global Buffer is a getter on Node 20 (~140 instructions per use): import the binding.
import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import { STATUS_CODES, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { ConnectionTracker } from './drain.js'
import type { RequestLease } from '../resilience/byte-budget.js'
import type { CorsPolicy } from './cors.js'

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
  readonly body: string
  /** Close the connection after this reply. */
  readonly close: boolean
  /**
   * The reply is ASCII (headers and body): its Content-Length is the body's length and it is
   * written as latin1, without counting and encoding UTF-8. Only where that is certain: a non-ASCII
   * body flagged so keeps its framing (one byte per character) but is sent mangled, each character
   * cut to one byte instead of its UTF-8 bytes.
   */
  readonly ascii?: boolean
}

export interface FastLaneOptions<T = FastResponse> {
  /** Serves a complete request; must not reject. */
  readonly handle: (req: FastRequest) => Promise<T>
  /**
   * Turns what `handle` settled with into the reply, synchronously (a wrapper promise to convert
   * it would cost a promise job per request). Needed unless `handle` settles with FastResponses.
   */
  readonly render?: (value: T) => FastResponse
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
  /** Drain and connection bookkeeping shared with node:http's path. */
  readonly tracker: ConnectionTracker
  /** Told what was thrown while handling a connection; that connection was destroyed, the lane goes on. */
  readonly onFault?: (err: Error) => void
  /** Injected for tests; performance.now() by default. */
  readonly now?: () => number
  /** CORS headers for every reply (cors.ts), as node:http's side of the port sends them. */
  readonly cors?: CorsPolicy
}

export interface FastLane {
  /** Requests served by the lane / connections handed to node:http, since installation. */
  readonly served: number
  readonly handedOver: number
  /** Stops the sweep timer (the server's 'close' does it too). */
  stop(): void
}

/** Pipelined bytes buffered behind a request being served before reading pauses. */
const PIPELINE_BYTES = 64 * 1024

/**
 * Puts the fast lane in front of `server`'s own connection handling. Call before the server
 * accepts connections; node:http still owns the listener, its options and every handed-over socket.
 */
export function installFastLane<T = FastResponse>(server: Server, opts: FastLaneOptions<T>): FastLane {
  const httpConnection = server.listeners('connection')[0] as ((socket: Socket) => void) | undefined
  if (typeof httpConnection !== 'function') throw new Error('installFastLane: the server has no connection listener')
  server.removeListener('connection', httpConnection)
  const now = opts.now ?? (() => performance.now())
  const laneOpts = { ...opts, render: opts.render ?? asResponse } as LaneOptions
  const conns = new Set<Conn>()
  const stats = { served: 0, handedOver: 0 }
  const cors = opts.cors?.lines(undefined) ?? ''
  const lane: LaneState = {
    keepAlive: keepAliveLines(server.keepAliveTimeout),
    // The request has not arrived whole: no Origin to look at, only a policy that needs none.
    timeoutReply: opts.cors === undefined || opts.cors.byOrigin ? TIMEOUT_REPLY : TIMEOUT_REPLY.replace('\r\n', `\r\n${cors}`),
  }

  const handOver = (c: Conn, pending: Buffer | null, ended: boolean): void => {
    conns.delete(c)
    c.detach()
    stats.handedOver++
    if (!ended) {
      // Nothing is emitted between these lines: the bytes go back to the front of the socket's
      // buffer and node:http's listener, attached now, reads them first.
      if (pending !== null && pending.length > 0) c.socket.unshift(pending)
      httpConnection.call(server, c.socket)
      return
    }
    // The client's FIN came already: the stream has ended (no unshift) and will not say so again,
    // so node:http's listeners get the bytes and the end directly, as they would have.
    httpConnection.call(server, c.socket)
    if (pending !== null && pending.length > 0) c.socket.emit('data', pending)
    c.socket.emit('end')
  }

  server.prependListener('connection', (socket: Socket) => {
    const c = new Conn(socket, laneOpts, now, handOver, stats, lane)
    conns.add(c)
    socket.once('close', () => conns.delete(c))
  })

  // One timer for all connections: idle keep-alive, slow headers, slow bodies, unread replies.
  const sweep = setInterval(() => {
    const t = now()
    lane.keepAlive = keepAliveLines(server.keepAliveTimeout)
    for (const c of conns) {
      try {
        c.sweep(t, server)
      } catch (err) {
        c.fault(err)
      }
    }
  }, 1_000)
  sweep.unref()
  const stop = (): void => clearInterval(sweep)
  server.once('close', stop)
  return {
    get served() {
      return stats.served
    },
    get handedOver() {
      return stats.handedOver
    },
    stop,
  }
}

class Conn {
  /** Unparsed bytes, starting at a request's first byte; more than one part while a head or body arrives. */
  private parts: Buffer[] = []
  private size = 0
  /** Where to resume looking for the end of the header section, in one buffer and across pieces. */
  private scanFrom = 0
  private readonly scan = new HeadScan()
  /** The parsed head of the request whose body is arriving, and the bytes it needs in all. */
  private head: { req: Omit<FastRequest, 'body' | 'lease' | 'bodyRefused'>; bodyStart: number; close: boolean } | null = null
  /**
   * The lease of the request whose body is arriving or that is being served, from its parsed head
   * until its reply has left (or the connection closed).
   */
  private lease: RequestLease | null = null
  private want = 0
  /** A request is being served, or its reply waits for the socket to drain: bytes wait in `parts`. */
  private busy = false
  private closed = false
  /** The client sent FIN: answer what arrived whole, then close. */
  private ended = false
  /** Reading is paused: a client pipelined more than PIPELINE_BYTES while a request was served. */
  private paused = false
  /** The client's bytes are dropped: they are the rest of a body the budget refused. */
  private discard = false
  /** A reply waits to leave: for 'drain', or for the end of a connection the lane ended. */
  private sending = false
  /** When the connection went idle, when the partial request in `parts` began, or when `sending` began. */
  private since: number
  private readonly onData = (chunk: Buffer): void => {
    try {
      this.receive(chunk)
    } catch (err) {
      this.fault(err)
    }
  }
  private readonly onClose = (): void => {
    this.closed = true
    this.releaseLease()
  }
  private readonly onEnd = (): void => {
    try {
      this.end()
    } catch (err) {
      this.fault(err)
    }
  }

  constructor(
    readonly socket: Socket,
    private readonly opts: LaneOptions,
    private readonly now: () => number,
    private readonly handOver: (c: Conn, pending: Buffer | null, ended: boolean) => void,
    private readonly stats: { served: number },
    private readonly lane: LaneState,
  ) {
    this.since = now()
    socket.on('data', this.onData)
    socket.on('close', this.onClose)
    socket.on('end', this.onEnd)
    socket.on('error', noop)
  }

  detach(): void {
    this.socket.removeListener('data', this.onData)
    this.socket.removeListener('close', this.onClose)
    this.socket.removeListener('end', this.onEnd)
    this.socket.removeListener('error', noop)
    this.releaseLease()
  }

  /** Something was thrown while handling this connection: it ends here; the lane goes on. */
  fault(err: unknown): void {
    this.closed = true
    this.socket.destroy()
    try {
      this.opts.onFault?.(err instanceof Error ? err : new Error(String(err)))
    } catch {
      // Reporting must not undo the containment.
    }
  }

  private receive(chunk: Buffer): void {
    // After the last reply, or in a refused body: not requests.
    if (this.closed || this.discard) return
    if (this.size === 0) this.since = this.now()
    this.parts.push(chunk)
    this.size += chunk.length
    if (!this.busy) {
      // A body arriving: charge what of this chunk belongs to it (the rest is the next request).
      if (this.head !== null && !this.lease!.takeBody(Math.min(chunk.length, this.want - (this.size - chunk.length)))) return this.refuseBody()
      if (this.size >= this.want) this.next()
    } else if (this.size >= PIPELINE_BYTES && !this.paused) {
      // Requests pipelined behind one being served wait in the kernel, not in memory.
      this.paused = true
      this.socket.pause()
    }
  }

  /** The client's FIN. */
  private end(): void {
    this.ended = true
    if (this.busy || this.closed) return
    // Not served yet, so not whole: node:http says what it gets at the end of the stream.
    if (this.size > 0) return this.handOver(this, this.take(), true)
    this.finish()
  }

  /** Ready for the next request: read on if paused, and parse what is buffered. */
  private proceed(): void {
    if (this.paused) {
      this.paused = false
      this.socket.resume()
    }
    this.next()
  }

  /** Parses and starts the next request in the buffer, if it is complete. */
  private next(): void {
    if (this.size === 0) return
    let head = this.head
    if (head === null) {
      // A head arriving in pieces is looked for across them: joining them on every read would
      // copy it again each time, quadratic in its length for a client sending a byte at a time.
      if (this.parts.length > 1 && !this.ended && this.size <= this.opts.maxHeaderBytes && !this.scan.arrived(this.parts)) {
        this.want = this.size + 1
        return
      }
    }
    let buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size)
    this.parts = [buf]
    if (head === null) {
      const end = headEnd(buf, this.scanFrom)
      if (end < 0 || end + 4 > this.opts.maxHeaderBytes) {
        // node:http answers an oversized header section (431), and a head cut short by the FIN;
        // until then, wait for more bytes.
        if (end >= 0 || buf.length > this.opts.maxHeaderBytes || this.ended) return this.handOver(this, this.take(), this.ended)
        this.scanFrom = Math.max(0, buf.length - 3)
        this.scan.reset(this.scanFrom)
        this.want = buf.length + 1
        return
      }
      const parsed = parseHead(buf, end, this.opts.maxHeaders)
      if (parsed === null || parsed.contentLength > this.opts.maxBodyBytes || !this.opts.accept(parsed.req.method, parsed.req.url, parsed.req.headers)) {
        return this.handOver(this, this.take(), this.ended)
      }
      head = { req: parsed.req, bodyStart: end + 4, close: parsed.close }
      this.head = head
      this.scanFrom = 0
      this.scan.reset(0)
      this.want = head.bodyStart + parsed.contentLength
      const lease = this.opts.newLease()
      this.lease = lease
      const held = Math.min(buf.length, this.want) - head.bodyStart
      if (held > 0 && !lease.takeBody(held)) return this.refuseBody()
    }
    if (this.size < this.want) {
      // A body cut short by the FIN: node:http's answer.
      if (this.ended) this.handOver(this, this.take(), true)
      return
    }
    const body = buf.subarray(head.bodyStart, this.want)
    if (this.size > this.want) {
      buf = buf.subarray(this.want)
      this.parts = [buf]
      this.size = buf.length
      this.since = this.now()
    } else {
      this.parts = []
      this.size = 0
    }
    this.head = null
    this.want = 0
    this.serve({ method: head.req.method, url: head.req.url, headers: head.req.headers, body, lease: this.lease!, bodyRefused: false }, head.close)
  }

  /**
   * The memory budget cannot take the body arriving: the request is answered without it (the
   * handler says 503, as node:http's path does when its body read is refused), nothing more is
   * read, and the connection closes after the reply.
   */
  private refuseBody(): void {
    const head = this.head!
    this.head = null
    this.want = 0
    this.parts = []
    this.size = 0
    this.discard = true
    this.lease!.release()
    this.serve({ method: head.req.method, url: head.req.url, headers: head.req.headers, body: EMPTY, lease: this.lease!, bodyRefused: true }, true)
  }

  private releaseLease(): void {
    const lease = this.lease
    if (lease === null) return
    this.lease = null
    lease.release()
  }

  private take(): Buffer | null {
    const buf = this.size === 0 ? null : this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size)
    this.parts = []
    this.size = 0
    return buf
  }

  private serve(req: FastRequest, close: boolean): void {
    this.busy = true
    this.stats.served++
    const tracker = this.opts.tracker
    tracker.requestBegan(this.socket)
    const render = this.opts.render
    const policy = this.opts.cors
    const cors = policy === undefined ? '' : policy.lines(policy.byOrigin ? headerValue(req.headers, 'origin') : undefined)
    this.opts.handle(req).then(
      (value) => {
        let res: FastResponse
        try {
          res = render(value)
        } catch {
          res = INTERNAL
        }
        this.settled(res, close || res.close, cors)
      },
      () => this.settled(INTERNAL, true, cors),
    )
  }

  private settled(res: FastResponse, close: boolean, cors: string): void {
    try {
      this.respond(res, close, cors)
    } catch (err) {
      this.fault(err)
    }
  }

  private respond(res: FastResponse, close: boolean, cors: string): void {
    const tracker = this.opts.tracker
    const draining = tracker.draining
    // The reply says connection: close when the request or the server closes the connection; after
    // the client's FIN it closes after the reply to the last request that arrived whole, which is
    // written as it is (node:http does the same, so both paths send the same bytes however the FIN
    // and the reply cross).
    const announce = close || draining
    const end = announce || (this.ended && this.size === 0)
    this.busy = false
    if (this.closed) {
      this.releaseLease()
      tracker.requestEnded(this.socket, false)
      return
    }
    const s = this.socket
    const body = res.body
    // An ASCII reply skips Buffer.byteLength (a slow call for the concatenated body) and the UTF-8
    // pass: written as latin1, each character is its byte.
    const ascii = res.ascii === true
    s.write(
      `${statusLine(res.status)}${cors}${res.headers}content-length: ${ascii ? body.length : Buffer.byteLength(body)}\r\ndate: ${httpDate()}\r\n${
        announce ? 'connection: close\r\n\r\n' : this.lane.keepAlive
      }${body}`,
      ascii ? 'latin1' : 'utf8',
    )
    tracker.requestEnded(s, draining && !close)
    if (end) {
      // The socket's 'close' gives the lease back, once what is buffered has gone or been dropped.
      this.finish()
      return
    }
    this.since = this.now()
    if (s.writableNeedDrain) {
      // Read on only once the reply has left (node:http pauses the same way): a client that sends
      // and does not read cannot make the gateway buffer replies without bound. The reply's bytes
      // stay charged to its lease meanwhile, and the sweep disconnects a client that takes longer
      // than the write timeout.
      this.busy = true
      this.sending = true
      s.once('drain', () => {
        try {
          this.sending = false
          this.releaseLease()
          this.busy = false
          this.since = this.now()
          this.proceed()
        } catch (err) {
          this.fault(err)
        }
      })
      return
    }
    this.releaseLease()
    this.proceed()
  }

  /** Ends the connection after what is written; the write timeout bounds how long that may take. */
  private finish(data?: string): void {
    this.closed = true
    this.sending = true
    this.since = this.now()
    if (data === undefined) this.socket.end()
    else this.socket.end(data)
  }

  /** Idle, slow-request and write timeouts, with node:http's limits for the first two. */
  sweep(t: number, server: Server): void {
    const waited = t - this.since
    if (this.sending) {
      if (waited >= this.opts.writeTimeoutMs) this.socket.destroy()
      return
    }
    if (this.busy || this.closed) return
    if (this.size === 0) {
      if (waited >= server.keepAliveTimeout && server.keepAliveTimeout > 0) {
        this.closed = true
        this.socket.destroySoon()
      }
      return
    }
    const limit = this.head === null ? server.headersTimeout : server.requestTimeout
    if (limit > 0 && waited >= limit) this.finish(this.lane.timeoutReply)
  }
}

/**
 * Where the first CRLF CRLF at or after `from` starts, or -1: buf.indexOf(CRLF CRLF, from)
 * without its call into C++ (~1,200 instructions per request, more than this loop for a usual
 * header section). It looks at every fourth byte at best: a byte that is neither CR nor LF
 * cannot be in any of the four windows that would hold it, so the next possible end is 4 on.
 */
export function headEnd(buf: Buffer, from: number): number {
  const n = buf.length
  let i = from + 3 // the last byte of the window being tested
  while (i < n) {
    const c = buf[i]!
    if (c === 0x0a) {
      if (buf[i - 1] === 0x0d && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) return i - 3
      i += 2 // this LF may be the window's second byte
    } else if (c === 0x0d) i += 1 // it may be the window's first or third byte
    else i += 4
  }
  return -1
}

/**
 * The search for the end of a header section (CR LF CR LF) in bytes that arrive in pieces, without
 * joining them: each look covers only what arrived since the last one (a match cut between two
 * pieces is carried over), so a head sent a byte at a time costs one pass over it, not one per byte.
 */
export class HeadScan {
  /** The piece and offset where the next look starts, and how much of CR LF CR LF ends there. */
  private part = 0
  private offset = 0
  private matched = 0

  /** Starts over at `offset` of the first piece. */
  reset(offset: number): void {
    this.part = 0
    this.offset = offset
    this.matched = 0
  }

  /** Whether CR LF CR LF is in `parts`, which only grows (by pushes) between resets. */
  arrived(parts: readonly Buffer[]): boolean {
    if (parts.length === 0) return false
    let m = this.matched
    for (let p = this.part; p < parts.length; p++) {
      const b = parts[p]!
      for (let k = p === this.part ? this.offset : 0; k < b.length; k++) {
        const c = b[k]!
        if (c === 0x0d) m = m === 2 ? 3 : 1
        else if (c === 0x0a && m === 3) return true
        else m = c === 0x0a && m === 1 ? 2 : 0
      }
    }
    this.part = parts.length - 1
    this.offset = parts[this.part]!.length
    this.matched = m
    return false
  }
}

/** The options as a connection uses them: the result type erased, render always there. */
type LaneOptions = FastLaneOptions<unknown> & { readonly render: (value: unknown) => FastResponse }
const asResponse = (value: unknown): FastResponse => value as FastResponse

interface ParsedHead {
  readonly req: Omit<FastRequest, 'body' | 'lease' | 'bodyRefused'>
  readonly contentLength: number
  /** The client asked to close the connection after this request. */
  readonly close: boolean
}

/** A request header's value by lower-case name, from FastRequest.headers. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1]
  return undefined
}

/**
 * The request line and headers of `buf[0, end)` (`end`: where the blank line's CRLF CRLF starts;
 * those four bytes must be in `buf`, the loops stop on them), or null when the lane must hand the
 * request over. One pass over the bytes, no regular
 * expressions, headers in a flat array: this runs for every request, and a version with split(),
 * regexes and a dictionary object cost 6 % of a GET's CPU. Common header names are recognised
 * from the bytes and given as constant lower-case strings (no substring, no toLowerCase, and the
 * comparisons below are then by identity); the values the lane itself needs (Content-Length,
 * Connection) are read from the bytes. Measured with bench:instructions (bench/README.md).
 */
export function parseHead(buf: Buffer, end: number, maxHeaders: number): ParsedHead | null {
  let i: number
  let method: 'GET' | 'POST'
  if (buf[0] === 0x47 && buf[1] === 0x45 && buf[2] === 0x54 && buf[3] === 0x20) {
    method = 'GET'
    i = 4
  } else if (buf[0] === 0x50 && buf[1] === 0x4f && buf[2] === 0x53 && buf[3] === 0x54 && buf[4] === 0x20) {
    method = 'POST'
    i = 5
  } else return null
  // Origin form of visible ASCII, no fragment.
  const urlStart = i
  if (buf[i] !== 0x2f) return null
  // The loops below need no bounds check: the section is followed by CR LF CR LF (buf[end] is CR),
  // which stops each of them.
  while (TARGET[buf[i]!] === 1) i++
  if (buf[i] !== 0x20) return null
  const urlEnd = i
  // " HTTP/1.1" CRLF; the last line's CRLF is the first half of the blank line's.
  const last = end + 2
  if (i + VERSION.length > last) return null
  for (let k = 0; k < VERSION.length; k++) if (buf[i + k] !== VERSION[k]) return null
  i += VERSION.length
  // latin1Slice is what toString('latin1', ...) calls, without its argument handling.
  const text = (buf as unknown as LatinSlicing).latin1Slice(0, end)
  const headers: string[] = []
  let count = 0 // headers.length, without reading it back
  // More lines than allowed are node:http's to refuse; the duplicate check below is bounded by it.
  const maxCount = 2 * maxHeaders
  let host = false
  let contentLength = 0
  let close = false
  while (i < last) {
    if (count === maxCount) return null
    const nameStart = i
    while (TCHAR[buf[i]!] === 1) i++ // stops at a space, CR or LF too: obs-fold, no colon
    if (i === nameStart || buf[i] !== 0x3a) return null
    const nameEnd = i++
    // The value runs to the CR; OWS (spaces, tabs) around it is not part of it.
    let vs = i
    while (FIELD[buf[i]!] === 1) i++
    if (buf[i] !== 0x0d || buf[i + 1] !== 0x0a) return null // a control character, a lone LF or a lone CR
    let ve = i
    i += 2
    while (vs < ve && (buf[vs] === 0x20 || buf[vs] === 0x09)) vs++
    while (ve > vs && (buf[ve - 1] === 0x20 || buf[ve - 1] === 0x09)) ve--
    const name = knownName(buf, nameStart, nameEnd) ?? text.slice(nameStart, nameEnd).toLowerCase()
    for (let k = 0; k < count; k += 2) if (headers[k] === name) return null
    switch (name) {
      case 'host':
        host = true
        break
      case 'content-length': {
        if (ve - vs === 0 || ve - vs > 15 || tabAround(buf, nameEnd + 1, vs, ve, i - 2)) return null
        let n = 0
        for (let k = vs; k < ve; k++) {
          const c = buf[k]!
          if (c < 0x30 || c > 0x39) return null
          n = n * 10 + (c - 0x30)
        }
        contentLength = n
        break
      }
      case 'connection':
        if (tabAround(buf, nameEnd + 1, vs, ve, i - 2)) return null
        switch (connectionOptions(buf, vs, ve)) {
          case CONNECTION_CLOSE:
            close = true
            break
          case CONNECTION_UPGRADE:
          case CONNECTION_TAB:
            return null
        }
        break
      case 'transfer-encoding':
      case 'expect':
      case 'upgrade':
      case 'proxy-connection':
        return null
    }
    // Stores, not push(name, value): a two-argument push is a builtin call (~140 instructions).
    headers[count++] = name
    headers[count++] = vs === ve ? '' : text.slice(vs, ve)
  }
  if (!host) return null
  return { req: { method, url: text.slice(urlStart, urlEnd), headers }, contentLength, close }
}

interface LatinSlicing {
  latin1Slice(start: number, end: number): string
}

/** Header names the lane recognises from their bytes, by length: lower-case text and bytes. */
const KNOWN_NAMES: { readonly name: string; readonly bytes: Uint8Array }[][] = []
for (const name of [
  'host',
  'accept',
  'expect',
  'upgrade',
  'connection',
  'keep-alive',
  'user-agent',
  'tracestate',
  'traceparent',
  'content-type',
  'authorization',
  'content-length',
  'accept-encoding',
  'upstash-encoding',
  'proxy-connection',
  'transfer-encoding',
  'upstash-sync-token',
]) {
  ;(KNOWN_NAMES[name.length] ??= []).push({ name, bytes: Buffer.from(name, 'latin1') })
}

/**
 * The constant lower-case name for buf[start, end) when it is a known header name in any case,
 * else null. The bytes are token characters (checked by the caller), as sameToken needs.
 */
function knownName(buf: Buffer, start: number, end: number): string | null {
  const candidates = KNOWN_NAMES[end - start]
  if (candidates === undefined) return null
  for (let j = 0; j < candidates.length; j++) if (sameToken(buf, start, end, candidates[j]!.bytes)) return candidates[j]!.name
  return null
}

/**
 * A TAB in the white space trimmed around the value buf[vs, ve) of the field value buf[start, end).
 * llhttp reads Content-Length and Connection itself, and not as RFC 9110 OWS: it refuses
 * `Content-Length: 5<TAB>` (400) and does not take `Connection: close<TAB>` for close, so such a
 * value is left to it. One leading byte (llhttp takes a TAB there too) is not looked at: the usual
 * `Name: value` costs two comparisons.
 */
function tabAround(buf: Buffer, start: number, vs: number, ve: number, end: number): boolean {
  if (vs - start <= 1 && ve === end) return false
  for (let k = start; k < vs; k++) if (buf[k] === 0x09) return true
  for (let k = ve; k < end; k++) if (buf[k] === 0x09) return true
  return false
}

const CONNECTION_CLOSE = 1
const CONNECTION_UPGRADE = 2
/** A TAB inside the value (around a comma): llhttp's reading of it is its own. */
const CONNECTION_TAB = 3
const CLOSE = Buffer.from('close', 'latin1')
const UPGRADE = Buffer.from('upgrade', 'latin1')

/**
 * The Connection header's options in buf[start, end): CONNECTION_TAB when a TAB is among them,
 * CONNECTION_UPGRADE when one is `upgrade`, else CONNECTION_CLOSE when one is `close`
 * (case-insensitive, comma-separated, spaces around), else 0.
 */
function connectionOptions(buf: Buffer, start: number, end: number): number {
  let result = 0
  let i = start
  while (i <= end) {
    let s = i
    let e = i
    for (; e < end && buf[e] !== 0x2c; e++) if (buf[e] === 0x09) return CONNECTION_TAB
    i = e + 1
    while (s < e && (buf[s] === 0x20 || buf[s] === 0x09)) s++
    while (e > s && (buf[e - 1] === 0x20 || buf[e - 1] === 0x09)) e--
    if (sameToken(buf, s, e, UPGRADE)) return CONNECTION_UPGRADE
    if (sameToken(buf, s, e, CLOSE)) result = CONNECTION_CLOSE
  }
  return result
}

/**
 * buf[start, end) is `lower` in any case. `b | 0x20` is a lower-case letter only for that letter in
 * either case, whatever the byte; it is '-' or a digit also for a control byte (0x0d, 0x10-0x19),
 * so where `lower` holds those, the bytes must be token characters (header names are).
 */
function sameToken(buf: Buffer, start: number, end: number, lower: Uint8Array): boolean {
  if (end - start !== lower.length) return false
  for (let k = 0; k < lower.length; k++) if ((buf[start + k]! | 0x20) !== lower[k]) return false
  return true
}

const VERSION = Buffer.from(' HTTP/1.1\r\n', 'latin1')

/** 1 for the bytes of an HTTP token (RFC 9110 tchar). */
const TCHAR = new Uint8Array(256)
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[ch.charCodeAt(0)] = 1
/** 1 for the bytes of a field value (RFC 9110: VCHAR, obs-text, SP, HTAB); 0 for controls and DEL. */
const FIELD = new Uint8Array(256)
for (let c = 0x20; c < 256; c++) FIELD[c] = c === 0x7f ? 0 : 1
FIELD[0x09] = 1
/**
 * 1 for the bytes the lane accepts in a request target: visible ASCII but '#' and '\' (node:http's
 * side refuses a backslash in the path with a 400 before the handler sees it: @hono/node-server).
 */
const TARGET = new Uint8Array(256)
for (let c = 0x21; c < 0x7f; c++) TARGET[c] = c === 0x23 || c === 0x5c ? 0 : 1

function noop(): void {}

const EMPTY = Buffer.alloc(0)

interface LaneState {
  /** The closing header lines of a kept-alive reply, advertising the server's keep-alive timeout. */
  keepAlive: string
  /** The 408 for a request that did not arrive in time, with the CORS headers that need no Origin. */
  readonly timeoutReply: string
}

function keepAliveLines(timeoutMs: number): string {
  const s = Math.floor(timeoutMs / 1000)
  return s > 0 ? `connection: keep-alive\r\nkeep-alive: timeout=${s}\r\n\r\n` : 'connection: keep-alive\r\n\r\n'
}
const INTERNAL: FastResponse = {
  status: 500,
  headers: 'content-type: application/json\r\n',
  body: '{"error":"INTERNAL unexpected gateway error"}',
  close: true,
}
const TIMEOUT_BODY = '{"error":"TIMEOUT request not received in time"}'
const TIMEOUT_REPLY = `HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: ${TIMEOUT_BODY.length}\r\nupstash-sync-token: \r\nconnection: close\r\n\r\n${TIMEOUT_BODY}`

const statusLines = new Map<number, string>()
function statusLine(status: number): string {
  let line = statusLines.get(status)
  if (line === undefined) {
    line = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`
    statusLines.set(status, line)
  }
  return line
}

// The Date header changes once a second; format it once a second.
let dateSecond = -1
let dateText = ''
function httpDate(): string {
  const ms = Date.now()
  const second = Math.floor(ms / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateText = new Date(ms).toUTCString()
  }
  return dateText
}
