// Lua scripts whose shebang names flags the backend does not know.
//
// Since 2.1.0, @upstash/ratelimit's scripts start with `#!lua flags=allow-key-locking`, a flag only
// Upstash's servers know: Redis 7 and Valkey refuse the script (`ERR Unexpected flag in script
// shebang`). The gateway drops such flags from the first line and keeps the ones Redis knows, so
// `no-writes` and friends still apply. The rewrite is a pure function of the text, so every gateway
// replica makes the same rewritten text, with the same sha.
//
// A client runs `EVALSHA sha1(original)`, and on NOSCRIPT `EVAL original`. Redis only knows
// sha1(rewritten), so each gateway remembers original sha -> rewritten sha for the scripts
// it rewrote (learned from the EVAL or SCRIPT LOAD that carried the text; LRU, bounded), and sends
// EVALSHA/EVALSHA_RO of a remembered sha as EVALSHA/EVALSHA_RO of the rewritten one. A sha it does
// not remember goes as is: Redis says NOSCRIPT, the client sends EVAL, the gateway learns. So each
// gateway replica costs one NOSCRIPT round trip per script, once; after a backend restart or
// SCRIPT FLUSH the rewritten sha gets NOSCRIPT and the client EVALs again, as with Redis alone.
// SCRIPT LOAD of such a text answers the original text's sha (what the client computes and will
// send), and SCRIPT EXISTS asks about the rewritten sha of a remembered one. Error replies that
// name the rewritten sha (`script: <sha>`) name the client's sha instead.
//
// Nothing else changes: the command keeps its name (EVAL stays EVAL, EVAL_RO stays EVAL_RO), so its
// class, the token check and the Redis ACL user it runs as are exactly those of the original
// request, and Redis still checks every command the script calls against that user. A script with
// no shebang, or with only flags Redis knows, is sent byte-identical; the test on the hot path is a
// compare of the command name's length and first bytes, and of the script's first two bytes.

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { RedisReplyError } from '../core/errors.js'
import type { ItemResult, RawReply } from '../core/reply.js'
import type { Arg } from '../core/command.js'

type Args = readonly Arg[]

/**
 * Shebang flags that Redis 7.0+ (and Valkey) know: `scripts_flags_def` in Redis's script.c. Any
 * other flag (Upstash's `allow-key-locking`, a typo) is dropped; these are kept.
 */
export const KNOWN_SHEBANG_FLAGS: ReadonlySet<string> = new Set(['no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'])

export const SCRIPT_DEFAULTS = {
  /** Remembered original -> rewritten shas per gateway (about 200 bytes each). */
  capacity: 4096,
} as const

/** Bytes of a first line the rewrite looks at; a longer shebang line is left to Redis. */
const MAX_SHEBANG_LINE = 1024

/**
 * The text Redis should run instead of `script`, or null to send it as it is: when it does not
 * start with `#!`, when its first line is not plainly `#!lua flags=...` (unquoted, ASCII; anything
 * else is left for Redis to judge), or when every flag is one Redis knows. The rewritten first line
 * is `#!lua` plus ` flags=<known flags>` when any is left; the line break and everything after it
 * are kept, so line numbers in errors do not move. Same type out as in (string or Buffer).
 */
export function rewriteShebang(script: Arg): Arg | null {
  let line: string
  let nl: number
  if (typeof script === 'string') {
    if (script.charCodeAt(0) !== 0x23 || script.charCodeAt(1) !== 0x21) return null
    nl = script.indexOf('\n')
    if (nl < 0 || nl > MAX_SHEBANG_LINE) return null
    line = script.slice(0, nl)
  } else {
    if (script.length < 2 || script[0] !== 0x23 || script[1] !== 0x21) return null
    nl = script.indexOf(0x0a)
    if (nl < 0 || nl > MAX_SHEBANG_LINE) return null
    line = script.toString('latin1', 0, nl)
  }
  const parts = splitShebang(line)
  if (parts === null || parts[0] !== '#!lua' || parts.length < 2) return null
  const kept: string[] = []
  let dropped = false
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!
    if (!p.startsWith('flags=')) return null // Redis: "Unknown lua shebang option"; its error, not ours
    if (p.length === 6) continue // `flags=`: no flag
    for (const f of p.slice(6).split(',')) {
      if (KNOWN_SHEBANG_FLAGS.has(f)) kept.push(f)
      else dropped = true
    }
  }
  if (!dropped) return null
  const head = kept.length > 0 ? `#!lua flags=${kept.join(',')}` : '#!lua'
  if (typeof script === 'string') return head + script.slice(nl)
  return Buffer.concat([Buffer.from(head, 'latin1'), script.subarray(nl)])
}

/**
 * The words of a shebang line as Redis's sdssplitargs reads them, for the plain case only: words of
 * printable ASCII without quotes or backslashes, separated by spaces or tabs (a trailing CR too).
 * Anything else is null: the text is then sent as is and Redis answers for it.
 */
function splitShebang(line: string): string[] | null {
  const end = line.length > 0 && line.charCodeAt(line.length - 1) === 0x0d ? line.length - 1 : line.length
  for (let i = 0; i < end; i++) {
    const c = line.charCodeAt(i)
    if (c === 0x20 || c === 0x09) continue
    if (c < 0x21 || c > 0x7e || c === 0x22 || c === 0x27 || c === 0x5c) return null
  }
  return line.slice(0, end).split(/[ \t]+/).filter((w) => w.length > 0)
}

/** sha1 hex of a script as Redis computes it (over its bytes; a string is sent as UTF-8). */
export function scriptSha(script: Arg): string {
  return createHash('sha1').update(script).digest('hex')
}

/** original sha -> rewritten sha, least recently used first out; one per gateway (the data plane's `scripts`). */
export class ScriptShas {
  private readonly map = new Map<string, string>()

  constructor(readonly capacity: number = SCRIPT_DEFAULTS.capacity) {}

  get size(): number {
    return this.map.size
  }

  learn(original: string, rewritten: string): void {
    this.map.delete(original)
    this.map.set(original, rewritten)
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value!)
  }

  /** The rewritten sha for a client's sha (any case, string or Buffer), or undefined. */
  lookup(sha: Arg | undefined): string | undefined {
    if (this.map.size === 0 || sha === undefined || sha.length !== 40) return undefined
    const key = (typeof sha === 'string' ? sha : sha.toString('latin1')).toLowerCase()
    const hit = this.map.get(key)
    if (hit !== undefined) {
      this.map.delete(key)
      this.map.set(key, hit)
    }
    return hit
  }
}

/**
 * The rewritten text and its sha for a script with unknown flags (learning original -> rewritten),
 * or null when it needs no rewrite.
 */
export function rewriteScript(shas: ScriptShas, script: Arg): { text: Arg; original: string; rewritten: string } | null {
  const text = rewriteShebang(script)
  if (text === null) return null
  const original = scriptSha(script)
  const rewritten = scriptSha(text)
  shas.learn(original, rewritten)
  return { text, original, rewritten }
}

/** A command changed for the backend, and how to give its reply back in the client's terms. */
export class ScriptCall {
  constructor(
    /** What to send. */
    readonly args: Args,
    /** The client's sha and the one Redis knows, for replies and errors that name it; null: none. */
    private readonly original: string | null,
    private readonly rewritten: string | null,
    /** SCRIPT LOAD: the reply is the sha, answered as the client's. */
    private readonly load: boolean,
  ) {}

  /** The reply value as the client should see it. */
  reply(v: RawReply): RawReply {
    if (this.load && this.original !== null && Buffer.isBuffer(v)) return Buffer.from(this.original, 'latin1')
    return v
  }

  /** A Redis error message as the client should see it. */
  error(message: string): string {
    if (this.rewritten === null || this.original === null) return message
    return message.includes(this.rewritten) ? message.split(this.rewritten).join(this.original) : message
  }

  /** Maps the outcome of running `args`: its reply, or its RedisReplyError. */
  run(p: Promise<RawReply>): Promise<RawReply> {
    return p.then(
      (v) => this.reply(v),
      (err: unknown) => {
        if (err instanceof RedisReplyError) {
          const m = this.error(err.message)
          if (m !== err.message) throw new RedisReplyError(m)
        }
        throw err
      },
    )
  }
}

/** Which script command args[0] is: 1 EVAL/EVAL_RO, 2 EVALSHA/EVALSHA_RO, 3 SCRIPT, 0 anything else. */
function scriptCommand(a0: Arg | undefined): 0 | 1 | 2 | 3 {
  if (a0 === undefined) return 0
  switch (a0.length) {
    case 4:
      return sameWord(a0, 'eval') ? 1 : 0
    case 6:
      return sameWord(a0, 'script') ? 3 : 0
    case 7:
      return sameWord(a0, 'evalsha') ? 2 : sameWord(a0, 'eval_ro') ? 1 : 0
    case 10:
      return sameWord(a0, 'evalsha_ro') ? 2 : 0
    default:
      return 0
  }
}

/** ASCII case-insensitive equality with a lower-case word of the same length. */
function sameWord(a: Arg, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = typeof a === 'string' ? a.charCodeAt(i) : a[i]!
    if (c >= 0x41 && c <= 0x5a) c |= 0x20
    if (c !== lower.charCodeAt(i)) return false
  }
  return true
}

/**
 * What to send instead of `args`, or null (the usual case) to send `args` as they are. Pure but for
 * `shas`, which it reads and teaches.
 */
export function prepareScriptCall(shas: ScriptShas, args: Args): ScriptCall | null {
  switch (scriptCommand(args[0])) {
    case 0:
      return null
    case 1: {
      const script = args[1]
      if (script === undefined) return null
      const r = rewriteScript(shas, script)
      if (r === null) return null
      return new ScriptCall(replaceAt(args, 1, r.text), r.original, r.rewritten, false)
    }
    case 2: {
      const rewritten = shas.lookup(args[1])
      if (rewritten === undefined) return null
      const original = args[1]!
      return new ScriptCall(replaceAt(args, 1, rewritten), typeof original === 'string' ? original : original.toString('latin1'), rewritten, false)
    }
    case 3: {
      const sub = args[1]
      if (sub === undefined) return null
      if (sub.length === 4 && sameWord(sub, 'load') && args.length === 3) {
        const r = rewriteScript(shas, args[2]!)
        if (r === null) return null
        return new ScriptCall(replaceAt(args, 2, r.text), r.original, r.rewritten, true)
      }
      if (sub.length === 6 && sameWord(sub, 'exists') && shas.size > 0) {
        let out: Arg[] | null = null
        for (let i = 2; i < args.length; i++) {
          const rewritten = shas.lookup(args[i])
          if (rewritten === undefined) continue
          out ??= [...args]
          out[i] = rewritten
        }
        return out === null ? null : new ScriptCall(out, null, null, false)
      }
      return null
    }
  }
}

function replaceAt(args: Args, i: number, v: Arg): Arg[] {
  const out = [...args]
  out[i] = v
  return out
}

/** A pipeline or transaction changed for the backend: `commands` to send, and the items mapped back. */
export class ScriptBatch {
  constructor(
    readonly commands: readonly Args[],
    /** Per sent command, its ScriptCall or undefined. */
    private readonly calls: readonly (ScriptCall | undefined)[],
  ) {}

  items(items: ItemResult[]): ItemResult[] {
    for (let i = 0; i < items.length && i < this.calls.length; i++) items[i] = this.itemAt(i, items[i]!)
    return items
  }

  /** Item `i` of the batch as the client should see it. */
  itemAt(i: number, it: ItemResult): ItemResult {
    const c = this.calls[i]
    if (c === undefined) return it
    return it.ok ? { ok: true, value: c.reply(it.value) } : { ok: false, error: c.error(it.error) }
  }

  run(p: Promise<ItemResult[]>): Promise<ItemResult[]> {
    return p.then((items) => this.items(items))
  }
}

/** prepareScriptCall for each command of a batch; null when none changes. */
export function prepareScriptBatch(shas: ScriptShas, commands: readonly Args[]): ScriptBatch | null {
  let calls: (ScriptCall | undefined)[] | null = null
  for (let i = 0; i < commands.length; i++) {
    const c = prepareScriptCall(shas, commands[i]!)
    if (c === null) continue
    calls ??= new Array<ScriptCall | undefined>(commands.length)
    calls[i] = c
  }
  if (calls === null) return null
  return new ScriptBatch(
    commands.map((args, i) => calls[i]?.args ?? args),
    calls,
  )
}
