// Large string values in a JSON body go to Redis as the body's own bytes.
//
// A command body is JSON text (`["set","key","<value>"]`, as @upstash/redis sends it). Decoding a
// 64 KiB or 1 MiB value into a JavaScript string, and encoding that string back into UTF-8 on the
// way to Redis, cost more than everything else such a request does (bench/README.md, "Big values":
// at 64 KiB most of the gateway's CPU was the socket's UTF-8 encoding of the command; JSON.parse of
// a 1 MiB body takes milliseconds). So before the parse, every string literal of at least
// LIFT_BYTES that is plain (printable ASCII, no escapes) is taken out of the text: the text keeps an
// empty literal `""` in its place, JSON.parse checks and builds the (now small) rest as before, and
// the value is put back as a view of the body (a Buffer, not a copy), which the RESP encoder writes
// as it is. Memory for such a request is the body itself.
//
// Nothing changes in what is accepted: a plain literal is valid JSON whatever surrounds it, and an
// empty literal is too, so the shortened text is valid exactly when the body is; its bytes are the
// value JSON.parse would have decoded, byte for byte. Anything else (escapes, UTF-8, control
// characters, short strings) is left in the text for JSON.parse.

import { Buffer, isAscii } from 'node:buffer'

/** String literals this long (bytes between the quotes) or longer are lifted when plain. */
export const LIFT_BYTES = 16 * 1024

const QUOTE = 0x22
const BACKSLASH = 0x5c

/** A body's JSON text with its large plain values lifted out, and where to put them back. */
export interface LiftedBody {
  readonly text: string
  /** Null when nothing was lifted. */
  readonly lifted: Lifted | null
}

export interface Lifted {
  /** Ordinal of each lifted literal among all string literals of the body, ascending. */
  readonly ordinals: number[]
  readonly values: Buffer[]
}

/**
 * `body` as text, its large plain string literals emptied. Linear: each byte is looked at by a
 * native search (quotes, backslashes, ASCII and control characters), a constant number of times.
 */
export function liftValues(body: Buffer): LiftedBody {
  if (body.length < LIFT_BYTES + 2) return { text: body.toString('utf8'), lifted: null }
  let text = ''
  let from = 0
  let ordinal = 0
  let lifted: Lifted | null = null
  for (let at = body.indexOf(QUOTE); at >= 0; at = body.indexOf(QUOTE, at + 1)) {
    const end = closingQuote(body, at)
    // Not closed: JSON.parse reports it.
    if (end < 0) break
    const value = body.subarray(at + 1, end)
    if (value.length >= LIFT_BYTES && plain(value)) {
      text += body.toString('utf8', from, at + 1)
      from = end
      lifted ??= { ordinals: [], values: [] }
      lifted.ordinals.push(ordinal)
      lifted.values.push(value)
    }
    ordinal++
    at = end
  }
  if (lifted === null) return { text: body.toString('utf8'), lifted: null }
  return { text: text + body.toString('utf8', from), lifted }
}

/** Index of the quote closing the literal opened at `open`, or -1. */
function closingQuote(body: Buffer, open: number): number {
  let q = open
  for (;;) {
    q = body.indexOf(QUOTE, q + 1)
    if (q < 0) return -1
    // Escaped when an odd number of backslashes precede it.
    let k = q - 1
    while (body[k] === BACKSLASH) k--
    if ((q - 1 - k) % 2 === 0) return q
  }
}

/**
 * Printable ASCII and DEL without a backslash: JSON.parse would decode these bytes to the same
 * characters, one each. Native searches, about 0.3 ns a byte in all (a loop in JavaScript took 1).
 */
function plain(v: Buffer): boolean {
  if (!isAscii(v) || v.includes(BACKSLASH)) return false
  for (let c = 0; c < 0x20; c++) if (v.includes(c)) return false
  return true
}

/**
 * Puts lifted values back into what JSON.parse made of the text: the arrays of a command
 * (`depth` 1) or of a batch of commands (`depth` 2), in document order. Any other shape (an object,
 * an array where a value belongs) stops it: such a body is refused by the checks that follow, and
 * its placeholders, empty strings, go nowhere.
 */
export function putBack(parsed: unknown, lifted: Lifted, depth: 1 | 2): void {
  let ordinal = 0
  let next = 0
  const fill = (args: unknown[]): boolean => {
    for (let i = 0; i < args.length; i++) {
      const a = args[i]
      if (typeof a === 'string') {
        if (lifted.ordinals[next] === ordinal++) args[i] = lifted.values[next++]
      } else if (a !== null && typeof a === 'object') return false
    }
    return true
  }
  if (!Array.isArray(parsed)) return
  if (depth === 1) {
    fill(parsed)
    return
  }
  for (const c of parsed) {
    if (!Array.isArray(c) || !fill(c)) return
    if (next === lifted.values.length) return
  }
}
