// The HTTP/1.1 the fast lane reads: the request line and header section of a request it may serve
// itself, the table of header names it knows, and the search for the end of a header section.
//
// It is deliberately narrow. parseHead() accepts a request only when it is unambiguous: GET or
// POST, HTTP/1.1, an origin-form target of visible ASCII without a backslash, at most `maxHeaders`
// well-formed header lines with no duplicate names, Host present, a body framed by at most one
// Content-Length (no Transfer-Encoding, Expect or Upgrade), and Content-Length and Connection
// values without bytes llhttp reads differently (a TAB: llhttp refuses `Content-Length: 5<TAB>` and
// does not read `Connection: close<TAB>` as close). Anything else, valid or not, is null: the
// connection goes to node:http, whose parser answers it. Being conservative costs only speed,
// never meaning.

import { Buffer } from 'node:buffer'
import type { FastRequest } from './types.js'

/** The blank line that ends a header section. */
export const HEAD_END = Buffer.from('\r\n\r\n', 'latin1')

/** A request header's value by lower-case name, from FastRequest.headers. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1]
  return undefined
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

export interface ParsedHead {
  readonly req: Omit<FastRequest, 'body' | 'lease' | 'bodyRefused'>
  readonly contentLength: number
  /** The client asked to close the connection after this request. */
  readonly close: boolean
}

/**
 * The request line and headers of `buf[0, end)` (`end`: where the blank line's CRLF CRLF starts;
 * those four bytes must be in `buf`, the loops stop on them), or null when the lane must hand the
 * request over. It runs for every request, so it reads the bytes once, without regular expressions
 * or split(), and keeps the headers in a flat array: common header names are recognised from the
 * bytes and given as constant lower-case strings, and the values the lane itself needs
 * (Content-Length, Connection) are read from the bytes (bench/README.md, "Fast lane").
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
  const text = buf.toString('latin1', 0, end)
  const headers: string[] = []
  // More lines than allowed are node:http's to refuse; the duplicate check below is bounded by it.
  const maxCount = 2 * maxHeaders
  let host = false
  let contentLength = 0
  let close = false
  while (i < last) {
    if (headers.length === maxCount) return null
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
    // Known names are constants, so these comparisons are mostly by identity.
    for (let k = 0; k < headers.length; k += 2) if (headers[k] === name) return null
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
    headers.push(name, vs === ve ? '' : text.slice(vs, ve))
  }
  if (!host) return null
  return { req: { method, url: text.slice(urlStart, urlEnd), headers }, contentLength, close }
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
 * value is left to it. One leading byte is not looked at: llhttp takes a TAB there too.
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

// Byte classes as 256-entry tables: one lookup per byte in the loops above.

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
