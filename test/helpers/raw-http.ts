// HTTP/1.1 over a raw TCP socket, for requests that fetch cannot express: paths with `..` or
// `%2e%2e` (fetch normalises them away), hand-written chunked bodies, malformed request lines.
// The request is sent as given (bytes or text); the response is parsed from the wire.

import net from 'node:net'
import { waitFor } from './wait.js'

export interface RawResponse {
  status: number
  /** Lower-case header names; repeated headers joined with ", ". */
  headers: Record<string, string>
  body: Buffer
  text: string
  /** The whole response as received (head and body). */
  raw: Buffer
  /** Bytes of `raw` this response takes (head and framed body); more may follow it (pipelining). */
  size: number
}

export interface RawRequestOptions {
  /** Give up after this long; default 10 s. */
  timeoutMs?: number
}

/** Parses one complete HTTP/1.1 response from `buf`, or returns null when more bytes are needed. */
export function parseResponse(buf: Buffer, ended: boolean): RawResponse | null {
  const headEnd = buf.indexOf('\r\n\r\n')
  if (headEnd < 0) return null
  const head = buf.subarray(0, headEnd).toString('latin1').split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(head[0])}`)
  const headers: Record<string, string> = {}
  for (const line of head.slice(1)) {
    const i = line.indexOf(':')
    if (i < 0) continue
    const k = line.slice(0, i).trim().toLowerCase()
    const v = line.slice(i + 1).trim()
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`
  }
  const rest = buf.subarray(headEnd + 4)
  let body: Buffer
  let size: number
  const status = Number(m[1])
  if (status === 204 || status === 304) {
    // No body, whatever the headers say (RFC 9112 6.3): a preflight's 204 has no Content-Length.
    body = Buffer.alloc(0)
    size = headEnd + 4
  } else if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
    const parts: Buffer[] = []
    let at = 0
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at)
      if (lineEnd < 0) return null
      const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16)
      if (Number.isNaN(size)) throw new Error('bad chunk size in response')
      if (size === 0) {
        // The last chunk, then (no trailers) the CRLF that ends the body.
        if (rest.length < lineEnd + 4) return null
        at = lineEnd + 4
        break
      }
      if (rest.length < lineEnd + 2 + size + 2) return null
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size))
      at = lineEnd + 2 + size + 2
    }
    body = Buffer.concat(parts)
    size = headEnd + 4 + at
  } else if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length'])
    if (rest.length < n) return null
    body = rest.subarray(0, n)
    size = headEnd + 4 + n
  } else {
    if (!ended) return null
    body = rest
    size = buf.length
  }
  return { status: Number(m[1]), headers, body, text: body.toString('utf8'), raw: buf, size }
}

/**
 * The complete responses at the start of `buf`, in order; each one's `raw` is its own bytes. With
 * `ended` (the server closed), a response framed by neither length nor chunks runs to the end.
 */
export function parseAll(buf: Buffer, ended = false): RawResponse[] {
  const out: RawResponse[] = []
  let rest = buf
  while (rest.length > 0) {
    const res = parseResponse(rest, ended)
    if (!res) break
    out.push({ ...res, raw: rest.subarray(0, res.size) })
    rest = rest.subarray(res.size)
  }
  return out
}

/**
 * Sends `request` (the complete bytes: request line, headers, body) on a new connection and
 * resolves with the first response. `parts` lets a test send the request in several writes.
 * A reset after a complete response still resolves (a server may close with unread input).
 */
export function rawRequest(
  port: number,
  request: string | Buffer | (string | Buffer)[],
  opts: RawRequestOptions = {},
): Promise<RawResponse> {
  const parts = Array.isArray(request) ? request : [request]
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let buf = Buffer.alloc(0)
    let done = false
    const timer = setTimeout(() => finish(new Error(`no complete response within ${opts.timeoutMs ?? 10_000}ms; got ${JSON.stringify(buf.toString('latin1').slice(0, 500))}`)), opts.timeoutMs ?? 10_000)
    const finish = (err: Error | null, res?: RawResponse): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      if (err) reject(err)
      else resolve(res!)
    }
    const tryParse = (ended: boolean): void => {
      try {
        const res = parseResponse(buf, ended)
        if (res) finish(null, res)
        else if (ended) finish(new Error(`connection ended before a complete response: ${JSON.stringify(buf.toString('latin1').slice(0, 500))}`))
      } catch (e) {
        finish(e as Error)
      }
    }
    socket.on('connect', () => {
      for (const p of parts) socket.write(p)
    })
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      tryParse(false)
    })
    socket.on('end', () => tryParse(true))
    socket.on('error', (e) => {
      if (buf.length > 0) tryParse(true)
      finish(e)
    })
    socket.on('close', () => tryParse(true))
  })
}

/** A request head; `Connection: close` unless the caller sets a Connection header. */
export function head(method: string, target: string, headers: Record<string, string | number> = {}): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1']
  const lower = Object.keys(headers).map((k) => k.toLowerCase())
  if (!lower.includes('connection')) lines.push('Connection: close')
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

/** One chunk of a chunked body. */
export function chunk(data: string | Buffer): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data) : data
  return Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')])
}

export const LAST_CHUNK = '0\r\n\r\n'

/** A raw keep-alive connection that collects everything the server sends. */
export class RawConnection {
  private chunks: Buffer[] = []
  /** The server closed its side (FIN) or the connection. */
  ended = false
  closed = false

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => this.chunks.push(c))
    socket.on('end', () => (this.ended = true))
    socket.on('close', () => {
      this.ended = true
      this.closed = true
    })
    socket.on('error', () => {})
  }

  static open(port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: opts.allowHalfOpen ?? false })
      socket.once('error', reject)
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve(new RawConnection(socket))
      })
    })
  }

  write(b: string | Buffer): void {
    this.socket.write(b)
  }

  buf(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0] ?? Buffer.alloc(0)
  }

  text(): string {
    return this.buf().toString('utf8')
  }

  /** Waits for `n` complete responses (from the start of the connection). */
  async replies(n: number): Promise<RawResponse[]> {
    return waitFor(
      () => {
        const r = parseAll(this.buf(), this.ended)
        return r.length >= n ? r : null
      },
      { message: `${n} replies` },
    )
  }

  async waitFor(pred: (text: string) => boolean, what: string): Promise<void> {
    try {
      await waitFor(() => pred(this.text()), { intervalMs: 10, message: what })
    } catch (e) {
      throw new Error(`${(e as Error).message}; received ${JSON.stringify(this.text().slice(0, 800))}`)
    }
  }

  close(): void {
    this.socket.destroy()
  }
}

export interface Exchange {
  /** Everything the server sent. */
  readonly raw: Buffer
  /** The responses in it. */
  readonly responses: RawResponse[]
  /** How the connection ended: the server closed it (FIN), reset it, or `timeoutMs` passed. */
  readonly end: 'closed' | 'reset' | 'timeout'
}

/**
 * Sends `parts` (one write each) on a new connection, then half-closes (FIN) unless `fin` is
 * false, and resolves with everything the server sent until it closed the connection, or until
 * `timeoutMs` (default 10 s) passed.
 */
export function exchange(port: number, parts: (string | Buffer)[], opts: { fin?: boolean; timeoutMs?: number } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const chunks: Buffer[] = []
    let reset = false
    let settled = false
    const done = (end: Exchange['end']): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      const raw = Buffer.concat(chunks)
      resolve({ raw, responses: parseAll(raw, true), end })
    }
    const timer = setTimeout(() => done('timeout'), opts.timeoutMs ?? 10_000)
    socket.on('connect', () => {
      for (const p of parts) socket.write(p)
      if (opts.fin !== false) socket.end()
    })
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => (reset = true))
    socket.on('end', () => done('closed'))
    socket.on('close', () => done(reset ? 'reset' : 'closed'))
  })
}
