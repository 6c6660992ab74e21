// The RESP encoding of a batch of commands (a pipeline, a transaction) as one flat string.
//
// RespConnection encodes a command by string concatenation, which is cheapest for one command; for
// a batch it leaves a rope of ~5 pieces per argument that the socket write must walk and flatten
// before it can encode it (V8's String::WriteToFlat: 4-5 % of a 100-command pipeline's CPU, and
// the concatenations themselves about as much; bench/README.md, "Pipelines and transactions").
// Commands of ASCII text, the usual case, are written here into one scratch buffer (short arguments
// byte by byte, longer ones by Buffer#write) and taken out as one flat string instead; anything else
// (a Buffer argument, a non-ASCII character, a batch larger than the scratch) is left to the
// per-command encoder (null).

import { Buffer } from 'node:buffer'
import type { Arg } from '../core/command.js'

/** Commands in a batch from which this encoding is used; below, concatenation is as cheap. */
export const BATCH_MIN_COMMANDS = 8

/** The largest batch encoded here; a larger one is rare and its per-command cost is amortised anyway. */
const SCRATCH_BYTES = 64 * 1024

let scratch: Buffer | null = null

/**
 * Arguments this long are copied by Buffer#write; shorter ones a character at a time, which is
 * cheaper than the call below ~16 characters. Over a sliced string (the body parser's values) the
 * character loop costs ~30 instructions a character. A batch of 10 SETs of 500-character values
 * encodes 5-6x faster this way; with 32-character values, 3.6 % fewer instructions per transaction
 * and no difference in time (bench/README.md, "Pipelines and transactions", fifth pass).
 */
const NATIVE_FROM = 16

/** `list` as RESP text (`*2\r\n$3\r\nGET\r\n...`), or null when it is not all ASCII strings or does not fit. */
export function encodeAsciiBatch(list: readonly (readonly Arg[])[]): string | null {
  const out = (scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES))
  // Room kept for the longest header (`*` or `$`, 10 digits, CRLF) and an argument's CRLF.
  const limit = SCRATCH_BYTES - 16
  let o = 0
  for (const args of list) {
    o = header(out, o, 0x2a, args.length)
    for (const a of args) {
      if (typeof a !== 'string' || o + a.length > limit) return null
      o = header(out, o, 0x24, a.length)
      if (a.length >= NATIVE_FROM) {
        // As many bytes as characters: all ASCII (any other character takes 2-3 bytes in UTF-8).
        if (out.write(a, o, 'utf8') !== a.length) return null
        o += a.length
      } else {
        for (let i = 0; i < a.length; i++) {
          const c = a.charCodeAt(i)
          if (c > 0x7f) return null
          out[o++] = c
        }
      }
      out[o++] = 0x0d
      out[o++] = 0x0a
    }
    if (o > limit) return null
  }
  return out.toString('latin1', 0, o)
}

/** Writes `*n\r\n` or `$n\r\n` at `o`; the index after it. */
function header(out: Buffer, o: number, type: number, n: number): number {
  out[o++] = type
  if (n < 10) out[o++] = 0x30 + n
  else if (n < 100) {
    out[o++] = 0x30 + ((n / 10) | 0)
    out[o++] = 0x30 + (n % 10)
  } else o += out.write(String(n), o, 'latin1')
  out[o++] = 0x0d
  out[o++] = 0x0a
  return o
}
