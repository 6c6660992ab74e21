// The data handler (data-handler.ts) on the gateway's two HTTP paths, through thin adapters that
// turn each server's request into a DataRequest and a DataResult back into that server's reply:
// - node:http with Hono (createDataApp; no listen here), the general path: it serves what the fast
//   lane hands over (Server-Sent Events, chunked or oversized bodies, HTTP/1.0, odd methods and
//   anything malformed), so every such case keeps Node's own HTTP parser; an EventStream reply is
//   attached to the Node response (nodeStreamOutput);
// - the fast lane (createFastDataHandler), for plain requests, with replies as raw header lines.

import { Buffer } from 'node:buffer'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Hono, type Context } from 'hono'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { handleDataRequest, type DataPlaneDeps, type DataReply, type DataRequest, type DataResult } from './data-handler.js'
import { bodyOverloaded, readBody, readRequestBody, tooLarge } from './body.js'
import { errorResponse } from './error-response.js'
import { BadRequestError } from '../core/errors.js'
import { RequestLease } from '../resilience/byte-budget.js'
import { headerValue, type FastLaneOptions, type FastRequest, type FastResponse } from './fast-lane/index.js'
import { DATA_METHODS, type CorsPolicy } from './cors.js'
import { EventStream, type StreamOutput } from './sse.js'

export type { DataPlaneDeps } from './data-handler.js'

type Bindings = { incoming?: IncomingMessage; outgoing?: ServerResponse }

/**
 * `cors`: the preflight's headers (cors.ts); the headers every reply carries are set on the Node
 * response by the server (server.ts), so the app's replies, errors and event streams all get them.
 */
export function createDataApp(deps: DataPlaneDeps, cors: CorsPolicy | null = null): Hono<{ Bindings: Bindings }> {
  const app = new Hono<{ Bindings: Bindings }>()
  app.all('*', async (c) => {
    const { req, stream } = await honoRequest(c, deps)
    // OPTIONS (a CORS preflight, or a client asking what the port allows): 204 on any path, without
    // a token (browsers send none with a preflight). The fast lane hands OPTIONS to this path.
    if (req.method === 'OPTIONS') {
      if (stream === null) req.lease.release()
      // Every reply carries a sync token (here the client's, as on errors).
      const headers: Record<string, string> = { allow: DATA_METHODS, 'upstash-sync-token': req.header('upstash-sync-token') ?? '' }
      if (cors !== null) for (const [k, v] of cors.preflight(req.header('origin'))) headers[k] = v
      return c.newResponse(null, 204, headers)
    }
    try {
      const res = await handleDataRequest(req, deps)
      if (res instanceof EventStream) {
        // canStream was true, so there is a Node response to write to.
        res.attach(stream!)
        return RESPONSE_ALREADY_SENT
      }
      return closing(c, toResponse(c, res))
    } finally {
      // Without a Node response (fetch-style tests) nothing else would give the bytes back.
      if (stream === null) req.lease.release()
    }
  })
  app.onError((err, c) => closing(c, errorResponse(err, c, deps.logger)))
  return app
}

/**
 * A reply that closes the connection says so on the Node response too, where node:http's side of
 * the gateway looks (http/drain.ts: nothing is written after it); the adapter's own headers are not
 * visible there.
 */
function closing(c: Context<{ Bindings: Bindings }>, res: Response): Response {
  if (res.headers.get('connection') === 'close') c.env?.outgoing?.setHeader('connection', 'close')
  return res
}

/**
 * The request, once it has arrived whole: as in the fast lane, which reads a body before it serves
 * the request, nothing is done for a request whose body never came (cut short by the client's FIN
 * or by bytes node:http cannot parse: the read fails with a BadRequestError, and the handler never
 * runs), and the body is charged to the lease as it arrives. A body refused by a limit (over
 * limits.maxBody, the budget used up) is thrown where the handler asks for it, so the checks
 * before that (route, token) still answer first; the reply closes the connection, since the rest
 * of the body was not read.
 */
async function honoRequest(c: Context<{ Bindings: Bindings }>, deps: DataPlaneDeps): Promise<{ req: DataRequest; stream: StreamOutput | null }> {
  const incoming = c.env?.incoming
  const outgoing = c.env?.outgoing ?? null
  const lease = new RequestLease(deps.budget, deps.maxReplyBytes)
  // Made now, so a client that leaves while a stream is being set up is noticed.
  const stream = outgoing === null ? null : nodeStreamOutput(outgoing)
  // Held until the response has been handed to the socket, or the connection is gone.
  if (outgoing !== null) outgoing.once('close', () => lease.release())
  let read: Buffer | Error | null = null
  if (incoming) {
    try {
      read = await readBody(incoming, deps.maxBodyBytes, lease)
    } catch (err) {
      if (err instanceof BadRequestError) throw err
      read = err as Error
      outgoing?.setHeader('connection', 'close')
    }
  }
  const req: DataRequest = {
    method: c.req.method,
    url: incoming?.url ?? pathAndQuery(c.req.url),
    header: (name) => c.req.header(name),
    body: (limit) => {
      if (read === null) return readRequestBody(c.req.raw, limit)
      if (read instanceof Error) throw read
      if (read.length > limit) throw tooLarge(limit)
      return read
    },
    canStream: stream !== null,
    lease,
  }
  return { req, stream }
}

/**
 * An event stream's side of a Node response: it is gone once the client left or the response can
 * no longer be started; `backlog` is what the client has not taken yet.
 */
export function nodeStreamOutput(res: ServerResponse): StreamOutput {
  let closed = false
  let started = false
  res.once('close', () => {
    closed = true
  })
  return {
    get gone() {
      return closed || res.destroyed || res.writableEnded || (!started && res.headersSent) || res.socket === null || res.socket.destroyed
    },
    get backlog() {
      return res.writableLength
    },
    start(headers) {
      started = true
      res.writeHead(200, headers)
    },
    write(text) {
      res.write(text)
    },
    end() {
      if (!res.writableEnded) res.end()
    },
    onClose(fn) {
      res.once('close', fn)
    },
  }
}

function pathAndQuery(url: string): string {
  const u = new URL(url)
  return u.pathname + u.search
}

function toResponse(c: Context, r: DataReply): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'upstash-sync-token': r.syncToken }
  if (r.headers !== null) Object.assign(headers, r.headers)
  // RESP2 replies are bytes held as a latin1 string (data-handler.ts respReply).
  const body = typeof r.body === 'string' && headers['content-type'] === 'application/octet-stream' ? Buffer.from(r.body, 'latin1') : r.body
  return c.newResponse(body, r.status as 200, headers)
}

/** The fast lane's side of the data plane (fast-lane/): the same logic, replies as raw header lines. */
export function createFastDataHandler(deps: DataPlaneDeps): Pick<FastLaneOptions, 'handle' | 'newLease'> {
  return {
    handle: (req) => handleDataRequest(new FastDataRequest(req), deps).then(renderFast),
    newLease: () => new RequestLease(deps.budget, deps.maxReplyBytes),
  }
}

function renderFast(res: DataResult): FastResponse {
  // acceptFast() keeps subscriptions out of the lane, and its requests say they cannot stream.
  if (res instanceof EventStream) {
    res.end('the fast lane cannot stream', false)
    throw new Error('the fast lane cannot stream')
  }
  const extra = res.headers
  let headers = `content-type: ${extra?.['content-type'] ?? 'application/json'}\r\nupstash-sync-token: ${res.syncToken}\r\n`
  let close = false
  if (extra !== null) {
    for (const name in extra) {
      if (name === 'connection' && extra[name] === 'close') close = true
      else if (name !== 'content-type') headers += `${name}: ${extra[name]}\r\n`
    }
  }
  // RESP2 replies are bytes held as a latin1 string (data-handler.ts respReply).
  const body = typeof res.body === 'string' && extra?.['content-type'] === 'application/octet-stream' ? Buffer.from(res.body, 'latin1') : res.body
  return { status: res.status, headers, body, close }
}

/**
 * Which requests the fast lane may serve: everything but subscriptions, which stream (any target
 * mentioning subscribe, or asking for an event stream, goes to node:http; being broad costs nothing).
 */
export function acceptFast(_method: string, url: string, headers: readonly string[]): boolean {
  const accept = headerValue(headers, 'accept')
  if (accept !== undefined && accept.indexOf('event-stream') >= 0) return false
  return !SUBSCRIBE.test(url)
}

const SUBSCRIBE = /subscribe/i

/**
 * `host` is one the adapter puts in a URL as it is, without parsing one (its reValidHost:
 * /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/), tested without a regular expression.
 */
export function plainHost(host: string | undefined): boolean {
  if (host === undefined) return false
  const n = host.length
  let i = 0
  for (; i < n; i++) {
    const c = host.charCodeAt(i)
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x2d)) break
  }
  if (i === 0) return false
  if (i === n) return true
  if (host.charCodeAt(i) !== 0x3a) return false
  const digits = n - i - 1
  const first = host.charCodeAt(i + 1)
  if (!((digits === 4 && first >= 0x31 && first <= 0x39) || (digits === 5 && first >= 0x31 && first <= 0x35))) return false
  for (let k = i + 2; k < n; k++) {
    const c = host.charCodeAt(k)
    if (c < 0x30 || c > 0x39) return false
  }
  return true
}

/**
 * The adapter's request listener for node:http's path, taking any Host. The gateway reads nothing
 * from Host, but the adapter builds a URL from it and answers 400 to one it cannot parse (`a/b`,
 * `x:99999`, an empty value) where the fast lane, which ignores Host, serves the request: such a
 * Host is replaced by one the adapter takes as it is, so both paths give the same answer.
 */
export function anyHost(listener: (req: IncomingMessage, res: ServerResponse) => unknown): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (!plainHost(req.headers.host)) req.headers.host = 'localhost'
    void listener(req, res)
  }
}

class FastDataRequest implements DataRequest {
  readonly canStream = false
  constructor(private readonly req: FastRequest) {}
  get lease(): RequestLease {
    return this.req.lease
  }
  get method(): string {
    return this.req.method
  }
  get url(): string {
    return this.req.url
  }
  header(name: string): string | undefined {
    return headerValue(this.req.headers, name)
  }
  body(limit: number): Buffer {
    // As a body read on node:http's path is answered when the budget refuses it.
    if (this.req.bodyRefused) throw bodyOverloaded()
    // The lane hands bodies over the limit to node:http; this only guards a smaller limit.
    if (this.req.body.length > limit) throw tooLarge(limit)
    return this.req.body
  }
}
