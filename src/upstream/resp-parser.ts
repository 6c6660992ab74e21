// A streaming RESP2 reply parser for RespConnection. Iterative, never recursive: a reply nested
// at any depth Redis (or a hostile server) can produce cannot overflow the stack. Every reply is
// charged before its bytes are kept (the sink's request lease, or the connection's own cap), and a
// reply that is refused (too large, nested deeper than REPLY_MAX_DEPTH, or no longer wanted
// because its request timed out or its client left) is skipped as it arrives, never buffered: the
// connection stays in step and usable. A reply that breaks the protocol (an unknown type byte, a
// bad length, a bulk string not ended by CRLF, an over-long line, a reply nobody asked for) is
// fatal: the connection must be reset, since nothing after it can be trusted.
//
// Values, as the rest of the gateway expects them (encode.ts): a bulk or status string is a
// Buffer, an integer is its decimal text (exact beyond 2^53), nil is null, a multi-bulk is an
// array, an error reply is a ReplyError (inside arrays too: EXEC results). RESP3 types never
// appear (the gateway never sends HELLO 3) and are protocol errors here. A sink may ask for an
// array reply as its bytes instead (ChargedSink.raw: COMMAND INFO, read by its own reader in
// command-table.ts): checked element by element as a skipped reply is, charged, never built.

import { Buffer } from 'node:buffer'
import { TooLargeError } from '../core/errors.js'
import { REPLY_ELEMENT_BYTES } from '../resilience/byte-budget.js'
import { integerText } from '../core/reply.js'

/** Arrays nested deeper than this make the reply a 413 (real replies rarely pass 3 or 4). */
export const REPLY_MAX_DEPTH = 128

/**
 * Longest status, error or integer line accepted (Redis's own error lines are short; a line
 * without CRLF past this is a broken or hostile server, not a reply to keep waiting for).
 */
export const MAX_LINE_BYTES = 64 * 1024

/** A Redis error reply. */
export class ReplyError extends Error {
  override readonly name = 'ReplyError'
}

/** Redis (or whatever answered) broke RESP2: the connection cannot be used any more. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError'
}

/** What one reply's sink offers the parser (RespConnection's ReplySink). */
export interface ChargedSink {
  /** Asked before a reply's bytes are kept: null keeps them, an Error refuses the whole reply. */
  charge?(bytes: number): Error | null
  /** True once the reply is not wanted any more: it is delivered as null and skipped. */
  readonly done?: boolean
  /**
   * An array reply as its RESP bytes (a RespBytes), checked but not built into values: for a reply
   * its reader walks once and mostly skips (COMMAND INFO: ~90 KB, ~10,000 elements). Other replies
   * (an error, nil, an empty array, a scalar) arrive as values. Charged like any reply, per piece.
   */
  readonly raw?: boolean
}

/** An array reply's RESP bytes, for a sink that asked for them (ChargedSink.raw). */
export class RespBytes {
  constructor(readonly bytes: Buffer) {}
}

export interface ParserOutput {
  /** The sink of the reply that begins now (not consumed); undefined when no command awaits one. */
  peek(): ChargedSink | undefined
  /** One whole reply, in order: a value, a ReplyError, or the refusal that replaced it. */
  reply(value: unknown): void
  /** The stream broke the protocol: reset the connection. The parser ignores input until reset(). */
  fatal(err: ProtocolError): void
}

const CR = 13
const LF = 10
const INCOMPLETE = -1
const FAILED = -2
/** Digits accepted in a length (Redis's own limits are far below 2^53). */
const MAX_LENGTH_DIGITS = 15
/** Digits of an integer reply (int64). */
const MAX_INTEGER_DIGITS = 19

// The status replies of writes and of each command queued in a transaction, shared: no Buffer per
// reply for the most common ones (a transaction of 10 SETs has 21). Nothing writes into a reply.
const OK_STATUS = Buffer.from('OK')
const QUEUED_STATUS = Buffer.from('QUEUED')

/** The status line's text `buf[from, to)` as a Buffer. */
function status(buf: Buffer, from: number, to: number): Buffer {
  if (bytesAre(buf, from, to, OK_STATUS)) return OK_STATUS
  if (bytesAre(buf, from, to, QUEUED_STATUS)) return QUEUED_STATUS
  return buf.subarray(from, to)
}

/** Whether `buf[from, to)` holds the bytes of `lit`. */
function bytesAre(buf: Buffer, from: number, to: number, lit: Buffer): boolean {
  if (to - from !== lit.length) return false
  for (let i = 0; i < lit.length; i++) if (buf[from + i] !== lit[i]) return false
  return true
}

export class RespParser {
  /** Bytes of an incomplete line, kept until the rest arrives. */
  private rest: Buffer | null = null
  /** Arrays being filled, outermost first, and the next index of each. */
  private readonly arrays: unknown[][] = []
  private readonly filled: number[] = []
  /** The reply in progress: its sink, and the bytes charged to the connection's own cap. */
  private sink: ChargedSink | undefined = undefined
  private charged = 0
  /** A bulk string's bytes still to come, and where they go (null: skipped). */
  private bulkLeft = 0
  private bulk: Buffer | null = null
  private bulkAt = 0
  /** CR and LF still expected after a bulk string's bytes. */
  private crlfLeft = 0
  /**
   * Skipping a refused reply (already answered with its refusal), or passing over one being
   * captured as bytes: elements still to pass over.
   */
  private skip = 0
  /** The reply being captured as bytes (ChargedSink.raw): pieces of earlier chunks, and where this chunk's begins. */
  private captured: Buffer[] | null = null
  private captureFrom = 0
  private broken = false

  constructor(
    private readonly out: ParserOutput,
    /** Reply bytes kept for a sink that does not charge itself. */
    private readonly maxReplyBytes: number,
  ) {}

  /** Passing over the rest of a refused reply (already answered): what comes meanwhile is not read. */
  get skipping(): boolean {
    // A skipped bulk string's bytes are counted down in bulkLeft with nowhere to go.
    return this.captured === null && (this.skip > 0 || (this.bulk === null && (this.bulkLeft > 0 || this.crlfLeft > 0)))
  }

  /** Forgets everything (the connection was reset). */
  reset(): void {
    this.rest = null
    this.arrays.length = 0
    this.filled.length = 0
    this.sink = undefined
    this.charged = 0
    this.bulkLeft = 0
    this.bulk = null
    this.bulkAt = 0
    this.crlfLeft = 0
    this.skip = 0
    this.captured = null
    this.broken = false
  }

  /** Parses the next bytes of the stream. The parser may keep slices of `chunk`: do not reuse it. */
  execute(chunk: Buffer): void {
    if (this.broken) return
    let buf = chunk
    if (this.rest !== null) {
      buf = Buffer.concat([this.rest, chunk])
      this.rest = null
    }
    const len = buf.length
    let pos = 0
    if (this.captured !== null) this.captureFrom = 0
    while (pos < len) {
      if (this.bulkLeft > 0) {
        const n = Math.min(this.bulkLeft, len - pos)
        if (this.bulk !== null) buf.copy(this.bulk, this.bulkAt, pos, pos + n)
        this.bulkAt += n
        this.bulkLeft -= n
        pos += n
        if (this.bulkLeft > 0) break
        this.crlfLeft = 2
      } else if (this.crlfLeft > 0) {
        if (buf[pos] !== (this.crlfLeft === 2 ? CR : LF)) {
          this.fail('a bulk string is not followed by CRLF')
          return
        }
        pos++
        if (--this.crlfLeft === 0) {
          const b = this.bulk
          this.bulk = null
          // A skipped bulk string (b null) was answered for when the skip began.
          if (b !== null) this.value(b)
        }
      } else {
        const next = this.element(buf, pos, len)
        if (next === FAILED) return
        if (next === INCOMPLETE) {
          if (len - pos > MAX_LINE_BYTES) return void this.fail(`a line longer than ${MAX_LINE_BYTES} bytes`)
          this.rest = buf.subarray(pos)
          break
        }
        pos = next
      }
      if (this.captured !== null && this.skip === 0 && this.bulkLeft === 0 && this.crlfLeft === 0) this.capture(buf, pos, true)
    }
    if (this.captured !== null) this.capture(buf, pos, false)
  }

  /**
   * Keeps the captured reply's bytes of `buf` up to `pos`, charged first; `whole`: the reply ends
   * there, and goes out as a RespBytes. A refusal goes out instead, and the rest is skipped.
   */
  private capture(buf: Buffer, pos: number, whole: boolean): void {
    const captured = this.captured!
    const piece = buf.subarray(this.captureFrom, pos)
    this.captureFrom = pos
    const refused = piece.length > 0 ? this.charge(piece.length) : null
    if (refused !== null || whole) this.captured = null
    if (refused !== null) return this.deliver(refused)
    if (whole) return this.deliver(new RespBytes(captured.length === 0 ? piece : Buffer.concat([...captured, piece])))
    if (piece.length > 0) captured.push(piece)
  }

  /** Parses one element's header (and a scalar's value) at `pos`; the position after it, or INCOMPLETE/FAILED. */
  private element(buf: Buffer, pos: number, len: number): number {
    const type = buf[pos]!
    // `end`: the LF that ends the element's line. Found before anything else is decided, so an
    // incomplete line is simply parsed again when the rest arrives.
    let end: number
    // A length (bulk string, array; -1 is nil, other negatives are errors) or an integer's value.
    let n = 0
    let neg = false
    if (type === 0x24 || type === 0x2a || type === 0x3a) {
      let i = pos + 1
      if (i < len && buf[i] === 0x2d) {
        neg = true
        i++
      }
      const first = i
      while (i < len) {
        const c = buf[i]!
        if (c < 0x30 || c > 0x39) break
        n = n * 10 + (c - 0x30)
        i++
      }
      const digits = i - first
      if (digits > (type === 0x3a ? MAX_INTEGER_DIGITS : MAX_LENGTH_DIGITS)) {
        return this.fail(type === 0x3a ? 'a malformed integer' : 'a length with too many digits')
      }
      if (i + 1 >= len) return INCOMPLETE
      if (buf[i] !== CR || buf[i + 1] !== LF || digits === 0) return this.fail(type === 0x3a ? 'a malformed integer' : 'a malformed length')
      end = i + 1
      if (neg && type !== 0x3a) {
        if (n !== 1) return this.fail(`a negative length (-${n})`)
        n = -1
      }
    } else if (type === 0x2b || type === 0x2d) {
      // +status, -error: a JavaScript loop beats indexOf's native call on lines this short.
      let i = pos + 1
      while (i < len) {
        const c = buf[i]!
        if (c === CR || c === LF) break
        i++
      }
      if (i < len && buf[i] === LF) return this.fail('a line not ended by CRLF')
      if (i + 1 >= len) return INCOMPLETE
      if (buf[i + 1] !== LF) return this.fail('a line not ended by CRLF')
      end = i + 1
    } else {
      return this.fail(`unknown reply type byte 0x${type.toString(16).padStart(2, '0')}`)
    }
    if (this.arrays.length === 0 && this.skip === 0) {
      // A new reply begins.
      const sink = this.out.peek()
      if (sink === undefined) return this.fail('a reply that no command asked for')
      this.sink = sink
      this.charged = 0
      if (sink.done === true) this.startSkip(null)
      else if (sink.raw === true && type === 0x2a && n > 0) {
        // Passed over like a refused reply, its bytes kept (capture()).
        this.captured = []
        this.captureFrom = pos
        this.skip = 1
      }
    }
    if (this.skip > 0) return this.skipElement(type, n, end)
    switch (type) {
      case 0x24: {
        // $<len>: a bulk string, charged before it is kept.
        if (n < 0) this.value(null)
        else {
          if (n >= 4096 && this.sink?.done === true) return this.refuse(null, type, n, end)
          const refused = n > 0 ? this.charge(n) : null
          if (refused !== null) return this.refuse(refused, type, n, end)
          if (end + 1 + n + 2 <= len) {
            // Whole in this chunk: a slice of it, no copy.
            if (buf[end + 1 + n] !== CR || buf[end + 2 + n] !== LF) return this.fail('a bulk string is not followed by CRLF')
            this.value(buf.subarray(end + 1, end + 1 + n))
            return end + n + 3
          }
          this.bulk = Buffer.allocUnsafe(n)
          this.bulkAt = 0
          this.bulkLeft = n
          if (n === 0) this.crlfLeft = 2
        }
        return end + 1
      }
      case 0x2a: {
        // *<n>: an array; its elements are charged a slot each up front.
        if (n <= 0) {
          this.value(n < 0 ? null : [])
          return end + 1
        }
        if (this.arrays.length >= REPLY_MAX_DEPTH) {
          return this.refuse(new TooLargeError(`reply is nested deeper than ${REPLY_MAX_DEPTH} levels`), type, n, end)
        }
        const refused = this.sink?.done === true ? null : this.charge(n * REPLY_ELEMENT_BYTES)
        if (refused !== null || this.sink?.done === true) return this.refuse(refused, type, n, end)
        this.arrays.push(new Array<unknown>(n))
        this.filled.push(0)
        return end + 1
      }
      case 0x3a: {
        // :<integer>, kept as its decimal text (exact: past 2^53 the digits are copied, not computed).
        this.value(integerText(buf, pos, end, neg ? -n : n))
        return end + 1
      }
      default: {
        // +status or -error; inside an array their bytes count like a bulk string's.
        if (this.arrays.length > 0) {
          const refused = this.charge(end - pos)
          if (refused !== null) return this.refuse(refused, type, 0, end)
        }
        this.value(type === 0x2b ? status(buf, pos + 1, end - 1) : new ReplyError(buf.toString('utf8', pos + 1, end - 1)))
        return end + 1
      }
    }
  }

  /** Charges reply bytes to the sink, or to the connection's own cap when the sink does not charge. */
  private charge(bytes: number): Error | null {
    const sink = this.sink
    if (sink?.charge !== undefined) return sink.charge(bytes)
    this.charged += bytes
    return this.charged > this.maxReplyBytes ? new TooLargeError(`reply is larger than ${this.maxReplyBytes} bytes`) : null
  }

  /**
   * The reply in progress is refused at the element just parsed (its header: `type`, length `n`):
   * the sink gets `verdict` now, not after the rest has streamed past (a 10 GB bulk string is
   * answered at once), and everything still to come of the reply, that element included, is skipped.
   */
  private refuse(verdict: unknown, type: number, n: number, end: number): number {
    this.startSkip(verdict)
    return this.skipElement(type, n, end)
  }

  /** Passes over one element of a skipped reply (its header parsed: `type`, length `n`). */
  private skipElement(type: number, n: number, end: number): number {
    this.skip--
    if (type === 0x2a) {
      if (n > 0) this.skip += n
    } else if (type === 0x24 && n >= 0) {
      this.bulk = null
      this.bulkAt = 0
      this.bulkLeft = n
      if (n === 0) this.crlfLeft = 2
    }
    return end + 1
  }


  /**
   * Answers the reply in progress with `verdict` and skips the rest of it. Elements still to pass:
   * the one being parsed and the innermost array's slots after it, and each outer array's slots
   * after the array it is filling.
   */
  private startSkip(verdict: unknown): void {
    const arrays = this.arrays
    const top = arrays.length - 1
    let left = top < 0 ? 1 : arrays[top]!.length - this.filled[top]!
    for (let d = 0; d < top; d++) left += arrays[d]!.length - this.filled[d]! - 1
    this.skip = left
    arrays.length = 0
    this.filled.length = 0
    this.deliver(verdict)
  }

  /** A whole value: into the array being filled, or, at the top, out as the reply. */
  private value(v: unknown): void {
    const arrays = this.arrays
    let d = arrays.length - 1
    while (d >= 0) {
      const a = arrays[d]!
      const i = this.filled[d]!
      a[i] = v
      if (i + 1 < a.length) {
        this.filled[d] = i + 1
        return
      }
      // The array is full: it is the value that goes one level up.
      arrays.pop()
      this.filled.pop()
      v = a
      d--
    }
    this.deliver(v)
  }

  private deliver(v: unknown): void {
    this.sink = undefined
    this.out.reply(v)
  }

  private fail(why: string): number {
    this.broken = true
    this.rest = null
    this.bulk = null
    this.captured = null
    this.out.fatal(new ProtocolError(`Redis protocol error: ${why}`))
    return FAILED
  }
}
