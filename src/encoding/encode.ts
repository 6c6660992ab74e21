// Encodes raw Redis replies (Buffers, integer strings, arrays, nulls) as Upstash REST JSON.
// Writes JSON text directly instead of building an intermediate object tree and stringifying it.
//
// Reply values as RespConnection's parser (resp-parser.ts) hands them over:
//   Buffer  -> a bulk or status string (RESP2 cannot tell them apart once parsed)
//   string  -> an integer reply, as decimal text (exact even beyond 2^53)
//   null    -> nil
//   array   -> multi-bulk, recursively
//   Error   -> an error reply nested in an array (EXEC results)

import { Buffer } from 'node:buffer'
import type { RawReply } from '../core/reply.js'


const OK = Buffer.from('OK')

function isOk(b: Buffer): boolean {
  return b.length === 2 && b[0] === 0x4f && b[1] === 0x4b
}

/**
 * JSON text of one reply value. With base64, every string is the base64 of its raw bytes, except a
 * top-level `OK` (the status reply of SET and friends): the SDK keeps a top-level "OK" as is, and
 * a bulk "OK" reads back the same. Inside arrays the SDK decodes every string, so "OK" there is
 * encoded like any other ("T0s="). Without base64, strings are UTF-8 (invalid sequences become
 * U+FFFD: use base64 for binary data).
 */
export function encodeValue(v: RawReply, base64: boolean, topLevel = true): string {
  if (v === null || v === undefined) return 'null'
  if (Buffer.isBuffer(v)) {
    if (base64) return topLevel && isOk(v) ? '"OK"' : `"${v.toString('base64')}"`
    return JSON.stringify(v.toString('utf8'))
  }
  if (typeof v === 'string') return v // integer reply text is already a valid JSON number
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null'
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]'
    let out = '['
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ','
      out += encodeValue(v[i]!, base64, false)
    }
    return out + ']'
  }
  if (v instanceof Error) {
    // An error inside an array reply (rare: nested EXEC). Upstash has no form for it; send its text.
    return base64 ? `"${Buffer.from(v.message).toString('base64')}"` : JSON.stringify(v.message)
  }
  return 'null'
}

/** What a byte of a string can become in UTF-8 JSON at most: `\u0000` (6), `\"` (2), U+FFFD (3). */
const UTF8_JSON_BYTES = Uint8Array.from({ length: 256 }, (_, c) => (c < 0x20 ? 6 : c === 0x22 || c === 0x5c ? 2 : c >= 0x80 ? 3 : 1))

/**
 * An upper bound of the bytes of encodeValue(v)'s text, computed without building it: exact for
 * base64 and for ASCII text, and at most a few times over for bytes that JSON escapes or that are
 * not valid UTF-8. Charged before a big reply is encoded (data-handler.ts), so that a reply whose
 * JSON is six times its raw size (a string of 0x00 bytes) cannot hold memory the budget did not see.
 */
export function jsonBytesBound(v: RawReply, base64: boolean): number {
  if (v === null || v === undefined) return 4
  if (Buffer.isBuffer(v)) {
    if (base64) return Math.ceil(v.length / 3) * 4 + 2
    let n = 2
    for (let i = 0; i < v.length; i++) n += UTF8_JSON_BYTES[v[i]!]!
    return n
  }
  if (typeof v === 'string') return v.length
  if (typeof v === 'number') return 24
  if (Array.isArray(v)) {
    let n = 2
    for (const x of v) n += jsonBytesBound(x, base64) + 1
    return n
  }
  if (v instanceof Error) return base64 ? Math.ceil(Buffer.byteLength(v.message) / 3) * 4 + 2 : Buffer.byteLength(v.message) * 6 + 2
  return 4
}

/** `{"result":...}` for a successful command. */
export function resultJson(v: RawReply, base64: boolean): string {
  return `{"result":${encodeValue(v, base64)}}`
}

/**
 * Results in base64 this long (characters) or longer go out as bytes: below it, one string write of
 * head and body costs less than a copy and two writes.
 */
const LARGE_RESULT_CHARS = 16 * 1024

/** Raw bytes are base64-encoded this many at a time (a multiple of 3: no padding in between). */
const BASE64_SLICE = 48 * 1024

/**
 * resultJson(v, true), as text or, when large, as the bytes to send: it is ASCII, so a copy is its
 * bytes, with no UTF-8 pass over it (which cost as much as everything else of a 64 KiB reply). A
 * large string value is encoded slice by slice straight into the reply's buffer: one base64 string
 * of a 1 MiB value is made outside V8's heap and allocated and freed on every call, and joining it
 * to its braces cost 5 ms more (bench/README.md, "Big values").
 */
export function resultBase64(v: RawReply): string | Buffer<ArrayBuffer> {
  if (Buffer.isBuffer(v) && v.length >= BASE64_SLICE) {
    const out = Buffer.allocUnsafe(13 + Math.ceil(v.length / 3) * 4)
    let at = out.write('{"result":"', 0, 'latin1')
    for (let i = 0; i < v.length; i += BASE64_SLICE) at += out.write(v.toString('base64', i, Math.min(v.length, i + BASE64_SLICE)), at, 'latin1')
    out.write('"}', at, 'latin1')
    return out
  }
  const text = resultJson(v, true)
  return text.length >= LARGE_RESULT_CHARS ? Buffer.from(text, 'latin1') : text
}

/**
 * `{"error":"..."}` for a command Redis answered with an error (or a pipeline item that failed):
 * Upstash's shape, with no `result` field (the SDK's `keepErrors` results have `result` undefined).
 */
export function errorJson(message: string): string {
  return `{"error":${JSON.stringify(message)}}`
}

export { OK as OK_BUFFER }

/**
 * A reply as RESP2 bytes, for `Upstash-Response-Format: resp2`, as a latin1 string (one character
 * per byte: written as latin1, it is the bytes). Strings are bulk strings, except a top-level `OK`,
 * sent as the status reply `+OK` as Upstash's docs show (`SET` answers `+OK\r\n`); RESP2 parsing
 * cannot tell other status replies from bulk strings any more, and both read back as the same
 * string. Integers are `:n`, nil is `$-1`, arrays `*n`, an error inside an array `-message`.
 */
export function respValue(v: RawReply, topLevel = true): string {
  if (v === null || v === undefined) return '$-1\r\n'
  if (Buffer.isBuffer(v)) {
    if (topLevel && isOk(v)) return '+OK\r\n'
    return `$${v.length}\r\n${v.toString('latin1')}\r\n`
  }
  if (typeof v === 'string') return `:${v}\r\n`
  if (typeof v === 'number') return Number.isInteger(v) ? `:${v}\r\n` : respBulkText(String(v))
  if (Array.isArray(v)) {
    let out = `*${v.length}\r\n`
    for (const x of v) out += respValue(x, false)
    return out
  }
  if (v instanceof Error) return respError(v.message)
  return '$-1\r\n'
}

/** `-message\r\n`: a Redis error reply (line breaks, which RESP cannot carry in one, become spaces). */
export function respError(message: string): string {
  return `-${Buffer.from(message.replace(/[\r\n]+/g, ' '), 'utf8').toString('latin1')}\r\n`
}

function respBulkText(s: string): string {
  const b = Buffer.from(s, 'utf8')
  return `$${b.length}\r\n${b.toString('latin1')}\r\n`
}

/** An upper bound of respValue(v)'s length, computed without building it (charged before). */
export function respBytesBound(v: RawReply): number {
  if (v === null || v === undefined) return 5
  if (Buffer.isBuffer(v)) return v.length + 16
  if (typeof v === 'string') return v.length + 3
  if (typeof v === 'number') return 40
  if (Array.isArray(v)) {
    let n = 16
    for (const x of v) n += respBytesBound(x)
    return n
  }
  if (v instanceof Error) return Buffer.byteLength(v.message) + 3
  return 5
}
