// Parses the Upstash REST request forms from the raw request line and body.
// Works on the raw URL (never a normalised one), so `..` and encoded slashes in a name are
// just characters of a name, which then fails validation: a URL can never reach another route.
// What one request may carry is bounded before anything is built from it: the number of
// commands and arguments (limits.maxCommands, limits.maxArgs: 413) and how deep a JSON body nests
// (400), by one linear pass over any body long enough to exceed them.

import type { Buffer } from 'node:buffer'
import { BadRequestError, NotFoundError, TooLargeError } from '../core/errors.js'
import type { TargetKind } from '../core/topology.js'
import { liftValues, putBack } from './big-values.js'
import { plainBatch, plainCommand } from './plain-body.js'

export type Form =
  | { readonly type: 'command' } // POST {base} with a JSON array body
  | { readonly type: 'pipeline' }
  | { readonly type: 'multi-exec' }
  | { readonly type: 'subscribe'; readonly pattern: boolean; readonly names: readonly string[] }
  | { readonly type: 'monitor' } // {base}/monitor: MONITOR as Server-Sent Events (admin tokens)
  | { readonly type: 'path'; readonly args: readonly string[] } // {base}/{command}/{arg}...

export interface ParsedUrl {
  readonly kind: TargetKind
  readonly name: string
  readonly form: Form
  readonly token: string | null
  /** Query parameters other than _token, in order, as KEY VALUE pairs for the path form. */
  readonly queryArgs: readonly string[]
}

const INSTANCES = '/v1/instances/'
const GROUPS = '/v1/groups/'

function decode(seg: string, what: string): string {
  if (!seg.includes('%')) return seg
  try {
    return decodeURIComponent(seg)
  } catch {
    throw new BadRequestError(`${what} has an invalid percent-encoding`)
  }
}

const COMMAND_FORM: Form = { type: 'command' }
const PIPELINE_FORM: Form = { type: 'pipeline' }
const MULTI_EXEC_FORM: Form = { type: 'multi-exec' }
const MONITOR_FORM: Form = { type: 'monitor' }
const NO_ARGS: readonly string[] = []

/**
 * Whether `s` is a valid instance or group name (NAME_RE: a DNS label of lower-case letters,
 * digits and inner hyphens, 1-63 long), by a loop rather than the regex: this runs per request.
 */
export function isName(s: string): boolean {
  const n = s.length
  if (n === 0 || n > 63 || s.charCodeAt(0) === 0x2d || s.charCodeAt(n - 1) === 0x2d) return false
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d)) return false
  }
  return true
}

export function parseUrl(rawUrl: string): ParsedUrl {
  const q = rawUrl.indexOf('?')
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
  let kind: TargetKind
  let from: number
  if (path.startsWith(INSTANCES)) {
    kind = 'instance'
    from = INSTANCES.length
  } else if (path.startsWith(GROUPS)) {
    kind = 'group'
    from = GROUPS.length
  } else {
    throw new NotFoundError('no such route; use /v1/instances/{name} or /v1/groups/{name}')
  }
  // The name, then what follows it: nothing (or a single trailing slash, harmless: `{base}/`) is
  // the command form; the rest is split into segments, where empty ones are empty arguments.
  const slash = path.indexOf('/', from)
  const rawName = slash < 0 ? path.slice(from) : path.slice(from, slash)
  const name = rawName.includes('%') ? safeDecode(rawName) : rawName
  if (name === null || !isName(name)) {
    throw new NotFoundError(`unknown ${kind} '${truncate(name ?? rawName)}'`)
  }
  let token: string | null = null
  let queryArgs: string[] | readonly string[] = NO_ARGS
  if (q >= 0) {
    const args: string[] = []
    // Strict form decoding: `+` is a space, and an invalid %-escape is a 400 (URLSearchParams would
    // silently keep it as literal text).
    for (const pair of rawUrl.slice(q + 1).split('&')) {
      if (pair === '') continue
      const eq = pair.indexOf('=')
      const k = decode((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '), 'query parameter')
      const v = eq < 0 ? '' : decode(pair.slice(eq + 1).replace(/\+/g, ' '), 'query parameter')
      if (k === '_token') token = v
      else args.push(k, v)
    }
    if (args.length > 0) queryArgs = args
  }
  let form: Form
  if (slash < 0 || slash === path.length - 1) form = COMMAND_FORM
  else {
    const segs = path.slice(slash + 1).split('/')
    if (segs.length > 1 && segs[segs.length - 1] === '') segs.pop()
    const first = segs[0]!
    if (segs.length === 1 && first === 'pipeline') form = PIPELINE_FORM
    else if (segs.length === 1 && first === 'multi-exec') form = MULTI_EXEC_FORM
    else if (segs.length === 1 && first.toLowerCase() === 'monitor') form = MONITOR_FORM
    else if (first.toLowerCase() === 'subscribe' || first.toLowerCase() === 'psubscribe') {
      form = {
        type: 'subscribe',
        pattern: first.toLowerCase() === 'psubscribe',
        names: segs.slice(1).map((s) => decode(s, 'channel')),
      }
    } else form = { type: 'path', args: segs.map((s, i) => decode(s, i === 0 ? 'command' : 'argument')) }
  }
  return { kind, name, form, token, queryArgs }
}

/**
 * The route template of a raw URL, for span names: the same route rules as parseUrl, but no name,
 * command or argument (the path form carries keys in the path). Never throws.
 */
export function routeTemplate(rawUrl: string): string {
  const q = rawUrl.indexOf('?')
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
  const prefix = path.startsWith(INSTANCES) ? INSTANCES : path.startsWith(GROUPS) ? GROUPS : null
  if (prefix === null) return '/{unknown}'
  const base = `${prefix}{name}`
  const segs = path.slice(prefix.length).split('/')
  if (segs.length > 1 && segs[segs.length - 1] === '') segs.pop()
  if (segs.length === 1) return base
  const first = segs[1]!
  if (segs.length === 2 && (first === 'pipeline' || first === 'multi-exec')) return `${base}/${first}`
  const lower = first.toLowerCase()
  if (lower === 'subscribe' || lower === 'psubscribe') return `${base}/${lower}/{channels}`
  if (segs.length === 2 && lower === 'monitor') return `${base}/monitor`
  return `${base}/{command...}`
}

function safeDecode(s: string): string | null {
  try {
    return decodeURIComponent(s)
  } catch {
    return null
  }
}

export function truncate(s: string, n = 64): string {
  return s.length > n ? `${s.slice(0, n)}...` : s
}

/** Where an argument sits, for error messages only: `body[2]` or `body[1][2]` (built on error). */
function argWhere(where: string | number, i: number): string {
  return typeof where === 'number' ? `body[${where}][${i}]` : `${where}[${i}]`
}

function toArg(v: unknown, where: string | number, i: number): string {
  switch (typeof v) {
    case 'string':
      return v
    case 'number':
      if (!Number.isFinite(v)) throw new BadRequestError(`${argWhere(where, i)} is not a finite number`)
      // JSON.parse has already rounded an integer beyond 2^53; refuse rather than send another number.
      if (Number.isInteger(v) && !Number.isSafeInteger(v)) {
        throw new BadRequestError(
          `${argWhere(where, i)} is an integer too large for a JSON number to carry exactly; send it as a string`,
        )
      }
      return String(v)
    case 'boolean':
      return v ? 'true' : 'false'
    default:
      throw new BadRequestError(
        `${argWhere(where, i)} must be a string, number or boolean, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`,
      )
  }
}

/**
 * One command from a JSON array: `["SET","k","v"]`. `where` names it in error messages: a string,
 * or the index of the command in a batch body (`body[i]`); error texts are only built on error,
 * since this runs for every command of every pipeline.
 */
function command(v: unknown, where: string | number): Arg[] {
  if (!Array.isArray(v)) throw new BadRequestError(`${whereText(where)} must be a JSON array like ["SET","key","value"]`)
  if (v.length === 0) throw new BadRequestError(`${whereText(where)} is an empty command`)
  // The array came from JSON.parse and is ours: numbers and booleans become their text in place,
  // with no copy of the (usual) all-string command. Buffers are large values lifted from the body
  // (big-values.ts).
  for (let i = 0; i < v.length; i++) {
    const a: unknown = v[i]
    if (typeof a !== 'string' && !(a instanceof Uint8Array)) v[i] = toArg(a, where, i)
  }
  const out = v as Arg[]
  if (out[0]!.length === 0) throw new BadRequestError(`${whereText(where)} has an empty command name`)
  return out
}

function whereText(where: string | number): string {
  return typeof where === 'number' ? `body[${where}]` : where
}

/** What one request may carry: limits.maxArgs and limits.maxCommands. */
export interface BodyLimits {
  /** Arguments of one request, the command names included, all commands of a batch together. */
  readonly maxArgs: number
  /** Commands in one pipeline or transaction. */
  readonly maxCommands: number
}

// Over these, nothing is sent; the request was read whole, so the connection stays usable.
function tooManyArgs(limits: BodyLimits): TooLargeError {
  return new TooLargeError(`request has more than ${limits.maxArgs} arguments (limits.maxArgs); send it in parts`)
}
function tooManyCommands(limits: BodyLimits): TooLargeError {
  return new TooLargeError(`request has more than ${limits.maxCommands} commands (limits.maxCommands); send it in parts`)
}

/** Refuses a path-form request with more arguments (path segments, body, query pairs) than limits.maxArgs. */
export function checkArgCount(n: number, limits: BodyLimits): void {
  if (n > limits.maxArgs) throw tooManyArgs(limits)
}

/**
 * Bodies up to this many characters are parsed without a scan first: too short to nest deep enough
 * to cost JSON.parse anything, and (below twice a count limit) to hold more elements than the limit.
 */
const UNSCANNED_CHARS = 16 * 1024

const QUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * One pass over a body before JSON.parse builds anything from it, throwing what a request over
 * the limits gets: more commands or arguments than allowed (413), or arrays or objects nested two
 * levels deeper than the format has them (400; one level deeper is left to the parse, whose answer
 * names the element). Strings are skipped whole, escapes included: brackets and commas in them
 * count for nothing. Invalid JSON is left for JSON.parse to report. `argDepth`: 1 for a command
 * (a flat array), 2 for a batch (an array of them).
 */
function scanBody(text: string, argDepth: 1 | 2, limits: BodyLimits): void {
  const n = text.length
  if (n <= UNSCANNED_CHARS && n <= 2 * limits.maxArgs && n <= 2 * limits.maxCommands) return
  let depth = 0
  let args = 0
  let commands = 0
  // The last character outside strings and whitespace: an array closed right after it opened was
  // empty, and its first element, counted when it opened, is taken back.
  let prev = 0
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    switch (c) {
      case QUOTE:
        i = stringEnd(text, i)
        if (i < 0) return
        break
      case 0x5b: // [
      case 0x7b: // {
        if (++depth > argDepth + 1) {
          throw new BadRequestError(
            argDepth === 1
              ? 'body nests arrays or objects too deep: a command is a flat array like ["SET","key","value"]'
              : 'body nests arrays or objects too deep: a list of commands is an array of flat arrays like [["SET","k","v"],["GET","k"]]',
          )
        }
        // The opening of a list counts its first element (taken back if it stays empty).
        if (depth === argDepth) args++
        else if (depth === 1) commands++
        break
      case 0x5d: // ]
      case 0x7d: // }
        if (prev === 0x5b || prev === 0x7b) {
          if (depth === argDepth) args--
          else if (depth === 1) commands--
        }
        depth--
        break
      case 0x2c: // ,
        if (depth === argDepth) args++
        else if (depth === 1) commands++
        break
      case 0x20:
      case 0x09:
      case 0x0a:
      case 0x0d:
        continue
    }
    if (args > limits.maxArgs) throw tooManyArgs(limits)
    if (commands > limits.maxCommands) throw tooManyCommands(limits)
    prev = c
  }
}

/** Index of the quote closing the string opened at `open`, or -1 when it is not closed. */
function stringEnd(text: string, open: number): number {
  let q = open
  for (;;) {
    q = text.indexOf('"', q + 1)
    if (q < 0) return -1
    // Escaped when an odd number of backslashes precede it; each run is counted once.
    let k = q - 1
    while (text.charCodeAt(k) === BACKSLASH) k--
    if ((q - 1 - k) % 2 === 0) return q
  }
}

export function parseJson(text: string): unknown {
  if (text.length === 0) throw new BadRequestError('request body is empty; expected a JSON array')
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new BadRequestError(`request body is not valid JSON: ${(e as Error).message}`)
  }
}

/** An argument of a command from a body: text, or a large value as the body's own bytes (big-values.ts). */
export type Arg = string | Buffer

/** A JSON command body, `["SET","k","v"]`; a Buffer's large plain values stay bytes (big-values.ts). */
export function parseCommandBody(body: string | Buffer, limits: BodyLimits): Arg[] {
  const { text, lifted } = typeof body === 'string' ? { text: body, lifted: null } : liftValues(body)
  scanBody(text, 1, limits)
  // (A body with lifted values goes to JSON.parse: putBack counts its string literals, and the
  // plain parser gives integers as text.)
  const v = (lifted === null ? plainCommand(text) : null) ?? parseJson(text)
  if (lifted !== null) putBack(v, lifted, 1)
  return command(v, 'body')
}

/** A JSON batch body (pipeline, transaction), `[["SET","k","v"],["GET","k"]]`, as parseCommandBody. */
export function parseBatchBody(body: string | Buffer, limits: BodyLimits): Arg[][] {
  const { text, lifted } = typeof body === 'string' ? { text: body, lifted: null } : liftValues(body)
  scanBody(text, 2, limits)
  const v = (lifted === null ? plainBatch(text) : null) ?? parseJson(text)
  if (!Array.isArray(v)) throw new BadRequestError('body must be a JSON array of commands like [["SET","k","v"],["GET","k"]]')
  if (v.length === 0) throw new BadRequestError('body is an empty list of commands')
  if (lifted !== null) putBack(v, lifted, 2)
  const out = new Array<Arg[]>(v.length)
  for (let i = 0; i < v.length; i++) out[i] = command(v[i], i)
  return out
}
