// What the fast lane writes: a reply's status line and headers (Date, Content-Length and the
// keep-alive or close lines, as node:http would send them), and the lane's own replies (a 500 for a
// handler that failed, a 408 for a request that did not arrive in time).

import { Buffer } from 'node:buffer'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastResponse } from './types.js'

/**
 * Writes `res` with `cors` (header lines) after its status line. `closing`: the reply says
 * connection: close; else it ends with `keepAlive` (keepAliveLines()).
 */
export function writeReply(socket: Socket, res: FastResponse, cors: string, closing: boolean, keepAlive: string): void {
  const body = res.body
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length
  const head = `${statusLine(res.status)}${cors}${res.headers}content-length: ${length}\r\ndate: ${httpDate()}\r\n${closing ? CLOSING : keepAlive}`
  if (typeof body === 'string') {
    socket.write(head + body)
    return
  }
  // One write of both to the kernel.
  socket.cork()
  socket.write(head)
  socket.write(body)
  socket.uncork()
}

/** The closing header lines of a kept-alive reply, advertising the server's keep-alive timeout. */
export function keepAliveLines(timeoutMs: number): string {
  const s = Math.floor(timeoutMs / 1000)
  return s > 0 ? `connection: keep-alive\r\nkeep-alive: timeout=${s}\r\n\r\n` : 'connection: keep-alive\r\n\r\n'
}

const CLOSING = 'connection: close\r\n\r\n'

/** The reply to a request whose handler or render failed. */
export const INTERNAL: FastResponse = {
  status: 500,
  headers: 'content-type: application/json\r\n',
  body: '{"error":"INTERNAL unexpected gateway error"}',
  close: true,
}

const TIMEOUT_BODY = '{"error":"TIMEOUT request not received in time"}'

/**
 * The 408 for a request that did not arrive in time, as node:http's side sends it (server.ts), with
 * `cors` (header lines that need no request header: the request has not arrived whole).
 */
export function timeoutReply(cors: string): string {
  return `HTTP/1.1 408 Request Timeout\r\n${cors}content-type: application/json\r\ncontent-length: ${TIMEOUT_BODY.length}\r\nupstash-sync-token: \r\nconnection: close\r\n\r\n${TIMEOUT_BODY}`
}

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
