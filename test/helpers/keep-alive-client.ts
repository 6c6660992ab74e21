// One HTTP/1.1 keep-alive connection over a raw socket, for tests that must see exactly what
// happens to a connection while a server shuts down: whether a request written on it was
// answered, with which `Connection` header, and whether the server closed it while idle.
// A client that behaves like undici: it never writes on a connection the server has ended, and
// does not reuse one after a `Connection: close` reply.

import net from 'node:net'
import { parseResponse, type RawResponse } from './raw-http.js'

export class ConnectionRefused extends Error {
  override readonly name = 'ConnectionRefused'
}

/** A request was written on an open connection and no complete response came back. */
export class RequestLost extends Error {
  override readonly name = 'RequestLost'
}

export class KeepAliveConnection {
  /** The server ended (or reset) the connection; it must not be written on any more. */
  closed = false
  private buf = Buffer.alloc(0)
  private waiting: { resolve: (r: RawResponse) => void; reject: (e: Error) => void } | null = null

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk])
      this.tryParse(false)
    })
    const gone = (why: string) => (): void => {
      this.closed = true
      this.tryParse(true)
      this.fail(new RequestLost(`connection ${why} before a complete response; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`))
    }
    socket.on('end', gone('ended by the server'))
    socket.on('close', gone('closed'))
    socket.on('error', (e) => gone(`failed (${(e as NodeJS.ErrnoException).code ?? e.message})`)())
  }

  /** Connects; rejects with ConnectionRefused when nothing listens (the client would go elsewhere). */
  static open(port: number, host = '127.0.0.1'): Promise<KeepAliveConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port })
      socket.setNoDelay(true)
      const onError = (e: NodeJS.ErrnoException): void => {
        reject(e.code === 'ECONNREFUSED' ? new ConnectionRefused(`connect to ${host}:${port} refused`) : e)
      }
      socket.once('error', onError)
      socket.once('connect', () => {
        socket.off('error', onError)
        resolve(new KeepAliveConnection(socket))
      })
    })
  }

  /**
   * Writes one request and resolves with its response. Rejects with RequestLost when the
   * connection ends or breaks before the response is complete, or after `timeoutMs`.
   */
  request(method: string, target: string, headers: Record<string, string> = {}, body = '', timeoutMs = 30_000): Promise<RawResponse> {
    if (this.closed) return Promise.reject(new Error('request on a connection the server closed: the client must reconnect'))
    if (this.waiting) return Promise.reject(new Error('one request at a time'))
    const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
    if (body !== '' || method === 'POST') lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
    return new Promise<RawResponse>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new RequestLost(`no response within ${timeoutMs}ms`)), timeoutMs)
      this.waiting = {
        resolve: (r) => {
          clearTimeout(timer)
          resolve(r)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      this.socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`)
    })
  }

  /** The client's own close (after `Connection: close`, or when done). */
  close(): void {
    this.closed = true
    this.socket.destroy()
  }

  private tryParse(ended: boolean): void {
    if (!this.waiting) return
    let res: RawResponse | null
    try {
      res = parseResponse(this.buf, ended)
    } catch (e) {
      this.fail(e as Error)
      return
    }
    if (!res) return
    // parseResponse reads one response; keep whatever follows it (nothing, without pipelining).
    this.buf = this.buf.subarray(responseLength(res))
    const w = this.waiting
    this.waiting = null
    w.resolve(res)
  }

  private fail(e: Error): void {
    const w = this.waiting
    if (!w) return
    this.waiting = null
    w.reject(e)
  }
}

// Bytes of head plus body of a parsed response (content-length bodies; chunked ones are consumed whole).
function responseLength(res: RawResponse): number {
  const headEnd = res.raw.indexOf('\r\n\r\n') + 4
  if (res.headers['content-length'] !== undefined) return headEnd + Number(res.headers['content-length'])
  return res.raw.length
}
