// The command bodies clients send, parsed without JSON.parse.
//
// @upstash/redis (and every client that calls JSON.stringify) sends a batch as compact JSON:
// `[["get","k1"],["set","k2","v"],["expire","k2",10]]`. JSON.parse builds the same arrays, but it
// looks each string up in V8's string table, and for a 100-command pipeline that is the largest
// single cost of the request (bench/README.md, "Pipelines and transactions"). This parser takes
// the common shape only: arrays of strings without escapes or control characters, and integers
// written as JSON.stringify writes them; it returns null for anything else (whitespace, escapes,
// fractions, exponents, booleans, objects, nesting, a truncated body), and the caller gives that
// body to JSON.parse. So what is accepted, what is refused and with which message stay
// JSON.parse's; this only reaches the same arrays sooner (plain-body.test.ts checks both agree).

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN = 0x5b
const CLOSE = 0x5d
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39

/**
 * The longest string taken. Command names and keys are short; a body with a longer string (a value)
 * goes to JSON.parse, whose native scan of a long string is faster than a loop here.
 */
const SHORT_CHARS = 64

/** Digits of an integer taken as it is: up to 15, always below 2^53, so it is exact as JSON's number. */
const MAX_DIGITS = 15

/** A batch body `[[...],[...]]`, each command's elements as JSON.parse would give them (integers as their text), or null. */
export function plainBatch(text: string): string[][] | null {
  if (text.charCodeAt(0) !== OPEN) return null
  const out: string[][] = []
  let i = 1
  for (;;) {
    const cmd: string[] = []
    i = readCommand(text, i, cmd)
    if (i < 0) return null
    out.push(cmd)
    const c = text.charCodeAt(i)
    if (c === COMMA) i++
    else if (c === CLOSE && i + 1 === text.length) return out
    else return null
  }
}

/** A command body `[...]`, as plainBatch's commands, or null. */
export function plainCommand(text: string): string[] | null {
  const cmd: string[] = []
  return readCommand(text, 0, cmd) === text.length ? cmd : null
}

/** Parses the command array at `i` into `cmd`; the index after its `]`, or -1. An empty array is left to JSON.parse too. */
function readCommand(text: string, i: number, cmd: string[]): number {
  if (text.charCodeAt(i) !== OPEN) return -1
  i++
  for (;;) {
    const c = text.charCodeAt(i)
    let end: number
    if (c === QUOTE) {
      end = stringEnd(text, i + 1)
      if (end < 0) return -1
      cmd.push(text.slice(i + 1, end))
      end++
    } else {
      end = integerEnd(text, i)
      if (end < 0) return -1
      cmd.push(text.slice(i, end))
    }
    const d = text.charCodeAt(end)
    if (d === COMMA) i = end + 1
    else if (d === CLOSE) return end + 1
    else return -1
  }
}

/**
 * The index of the quote closing a string whose text starts at `from`, or -1 when the string has an
 * escape or a control character, is not closed, or is longer than SHORT_CHARS.
 */
function stringEnd(text: string, from: number): number {
  const last = Math.min(from + SHORT_CHARS, text.length - 1)
  for (let j = from; j <= last; j++) {
    const d = text.charCodeAt(j)
    if (d === QUOTE) return j
    if (d === BACKSLASH || d < 0x20) return -1
  }
  return -1
}

/** The end of an integer at `i` written as JSON.stringify writes it (no leading zero, no `-0`), or -1. */
function integerEnd(text: string, i: number): number {
  const start = i
  if (text.charCodeAt(i) === MINUS) i++
  const first = text.charCodeAt(i)
  if (first === ZERO) return i === start && !isDigit(text.charCodeAt(i + 1)) ? i + 1 : -1
  if (!(first > ZERO && first <= NINE)) return -1
  const from = i
  while (isDigit(text.charCodeAt(i))) i++
  return i - from <= MAX_DIGITS ? i : -1
}

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE
}
