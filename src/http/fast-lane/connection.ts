// One connection in the fast lane: its bytes buffered until a request is whole, requests served
// one at a time in order, the reply written, and the connection handed to node:http when a request
// is not the lane's to serve.
//
// One request at a time per connection: pipelined requests wait in the buffer until the reply
// before them is written, so replies stay in order, and reading pauses when too many wait. After
// the client's FIN, the requests that arrived whole are answered, then the connection closes. A
// request the lane does not serve (grammar.ts) is handed over, with the bytes read so far (and the
// client's FIN, if it came), to node:http for the rest of that connection's life. Idle, slow and
// draining connections are handled as node:http does, by one sweep for all connections (index.ts)
// instead of timers per socket; the same sweep disconnects a client that has not taken its reply
// off the socket within `writeTimeoutMs`. A request body is charged to the request's memory lease
// as it arrives. Whatever is thrown while handling a connection ends that connection only.

import { Buffer } from 'node:buffer'
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { RequestLease } from '../../resilience/byte-budget.js'
import { HEAD_END, HeadScan, headerValue, parseHead, type ParsedHead } from './grammar.js'
import { INTERNAL, writeReply } from './replies.js'
import type { FastLaneOptions, FastRequest, FastResponse } from './types.js'

/** Pipelined bytes buffered behind a request being served before reading pauses. */
const PIPELINE_BYTES = 64 * 1024

/** What the connections of one lane share. */
export interface Lane {
  readonly opts: FastLaneOptions
  readonly now: () => number
  /** Gives the connection, with the bytes it read that are not served (and whether the client's FIN came), to node:http. */
  readonly handOver: (c: Connection, pending: Buffer | null, ended: boolean) => void
  readonly stats: { served: number }
  /** The closing header lines of a kept-alive reply (replies.ts keepAliveLines), kept current by the sweep. */
  keepAlive: string
  /** The 408 for a request that did not arrive in time. */
  readonly timeoutReply: string
}

export class Connection {
  /** Unparsed bytes, starting at a request's first byte; more than one part while a head or body arrives. */
  private parts: Buffer[] = []
  private size = 0
  /** Where to resume looking for the end of the header section, in one buffer and across pieces. */
  private scanFrom = 0
  private readonly scan = new HeadScan()
  /** The parsed head of the request whose body is arriving, and the bytes it needs in all. */
  private head: { req: ParsedHead['req']; bodyStart: number; close: boolean } | null = null
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
  /** The request being served (one at a time): whether its reply closes the connection, and its CORS lines. */
  private replyClose = false
  private replyCors = ''
  // The handler's outcome, made once per connection rather than as closures per request.
  private readonly onReply = (res: FastResponse): void => this.settled(res, this.replyClose || res.close)
  private readonly onHandlerFailed = (): void => this.settled(INTERNAL, true)
  private readonly onEnd = (): void => {
    try {
      this.end()
    } catch (err) {
      this.fault(err)
    }
  }

  constructor(
    readonly socket: Socket,
    private readonly lane: Lane,
  ) {
    this.since = lane.now()
    socket.on('data', this.onData)
    socket.on('close', this.onClose)
    socket.on('end', this.onEnd)
    socket.on('error', noop)
  }

  /** Stops listening to the socket, before it is handed over. */
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
      this.lane.opts.onFault?.(err instanceof Error ? err : new Error(String(err)))
    } catch {
      // Reporting must not undo the containment.
    }
  }

  /** Idle, slow-request and write timeouts, with node:http's limits (`server`'s) for the first two. */
  sweep(t: number, server: Server): void {
    const waited = t - this.since
    if (this.sending) {
      if (waited >= this.lane.opts.writeTimeoutMs && !this.socket.destroyed) {
        this.socket.destroy()
        this.lane.opts.onSlowClient?.('write_timeout')
      }
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
    if (limit > 0 && waited >= limit) {
      this.finish(this.lane.timeoutReply)
      this.lane.opts.onSlowClient?.('request_timeout')
    }
  }

  private receive(chunk: Buffer): void {
    // After the last reply, or in a refused body: not requests.
    if (this.closed || this.discard) return
    if (this.size === 0) this.since = this.lane.now()
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
    if (this.size > 0) return this.lane.handOver(this, this.take(), true)
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
    const opts = this.lane.opts
    let head = this.head
    if (head === null) {
      // A head arriving in pieces is looked for across them: joining them on every read would
      // copy it again each time, quadratic in its length for a client sending a byte at a time.
      if (this.parts.length > 1 && !this.ended && this.size <= opts.maxHeaderBytes && !this.scan.arrived(this.parts)) {
        this.want = this.size + 1
        return
      }
    }
    // `parts` is the connection's own array, emptied and refilled rather than replaced per request.
    let buf = this.parts[0]!
    if (this.parts.length > 1) {
      buf = Buffer.concat(this.parts, this.size)
      this.parts.length = 0
      this.parts.push(buf)
    }
    if (head === null) {
      const end = buf.indexOf(HEAD_END, this.scanFrom)
      if (end < 0 || end + 4 > opts.maxHeaderBytes) {
        // node:http answers an oversized header section (431), and a head cut short by the FIN;
        // until then, wait for more bytes.
        if (end >= 0 || buf.length > opts.maxHeaderBytes || this.ended) return this.lane.handOver(this, this.take(), this.ended)
        this.scanFrom = Math.max(0, buf.length - 3)
        this.scan.reset(this.scanFrom)
        this.want = buf.length + 1
        return
      }
      const parsed = parseHead(buf, end, opts.maxHeaders)
      if (parsed === null || parsed.contentLength > opts.maxBodyBytes || !opts.accept(parsed.req.method, parsed.req.url, parsed.req.headers)) {
        return this.lane.handOver(this, this.take(), this.ended)
      }
      head = { req: parsed.req, bodyStart: end + 4, close: parsed.close }
      this.head = head
      this.scanFrom = 0
      this.scan.reset(0)
      this.want = head.bodyStart + parsed.contentLength
      const lease = opts.newLease()
      this.lease = lease
      const held = Math.min(buf.length, this.want) - head.bodyStart
      if (held > 0 && !lease.takeBody(held)) return this.refuseBody()
    }
    if (this.size < this.want) {
      // A body cut short by the FIN: node:http's answer.
      if (this.ended) this.lane.handOver(this, this.take(), true)
      return
    }
    const body = buf.subarray(head.bodyStart, this.want)
    if (this.size > this.want) {
      buf = buf.subarray(this.want)
      this.parts[0] = buf
      this.size = buf.length
      this.since = this.lane.now()
    } else {
      this.parts.length = 0
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
    this.lane.stats.served++
    const opts = this.lane.opts
    opts.tracker.requestBegan(this.socket)
    const policy = opts.cors
    const cors = policy === undefined ? '' : policy.lines(policy.byOrigin ? headerValue(req.headers, 'origin') : undefined)
    this.replyClose = close
    this.replyCors = cors
    opts.handle(req).then(this.onReply, this.onHandlerFailed)
  }

  private settled(res: FastResponse, close: boolean): void {
    try {
      this.respond(res, close, this.replyCors)
    } catch (err) {
      this.fault(err)
    }
  }

  private respond(res: FastResponse, close: boolean, cors: string): void {
    const tracker = this.lane.opts.tracker
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
    writeReply(s, res, cors, announce, this.lane.keepAlive)
    tracker.requestEnded(s, draining && !close)
    if (end) {
      // The socket's 'close' gives the lease back, once what is buffered has gone or been dropped.
      this.finish()
      return
    }
    this.since = this.lane.now()
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
          this.since = this.lane.now()
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
    this.since = this.lane.now()
    if (data === undefined) this.socket.end()
    else this.socket.end(data)
  }
}

function noop(): void {}

const EMPTY = Buffer.alloc(0)
