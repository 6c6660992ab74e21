// Shebang flags Redis does not know, and EVALSHA of the client's sha (scripts.ts). Pure: no Redis.

import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { RedisReplyError } from '../core/errors.js'
import {
  KNOWN_SHEBANG_FLAGS,
  ScriptShas,
  prepareScriptBatch,
  prepareScriptCall,
  rewriteShebang,
  scriptSha,
} from './scripts.js'

const sha1 = (s: string | Buffer): string => createHash('sha1').update(s).digest('hex')
const BODY = '\n  return redis.call("GET", KEYS[1])\n'

describe('rewriteShebang', () => {
  it('drops unknown flags and keeps the ones Redis knows, in order', () => {
    expect(rewriteShebang(`#!lua flags=allow-key-locking${BODY}`)).toBe(`#!lua${BODY}`)
    expect(rewriteShebang(`#!lua flags=allow-key-locking,no-writes${BODY}`)).toBe(`#!lua flags=no-writes${BODY}`)
    expect(rewriteShebang(`#!lua flags=no-writes,allow-key-locking,allow-oom${BODY}`)).toBe(`#!lua flags=no-writes,allow-oom${BODY}`)
    expect(rewriteShebang(`#!lua   flags=allow-stale\tflags=x,no-cluster,allow-cross-slot-keys\r${BODY}`)).toBe(
      `#!lua flags=allow-stale,no-cluster,allow-cross-slot-keys${BODY}`,
    )
    // An empty flag (`a,,b`) is unknown to Redis too.
    expect(rewriteShebang(`#!lua flags=no-writes,,allow-oom${BODY}`)).toBe(`#!lua flags=no-writes,allow-oom${BODY}`)
  })

  it('leaves alone what needs nothing or is not plainly `#!lua flags=`: Redis judges it', () => {
    for (const s of [
      'return 1',
      '',
      '#',
      '-- #!lua flags=allow-key-locking\nreturn 1',
      ' #!lua flags=allow-key-locking\nreturn 1',
      '#!lua\nreturn 1',
      '#!lua flags=\nreturn 1',
      '#!lua flags=no-writes,allow-oom\nreturn 1',
      `#!lua flags=${[...KNOWN_SHEBANG_FLAGS].join(',')}\nreturn 1`,
      '#!lua flags=allow-key-locking', // no line break: "Invalid script shebang"
      '#!js flags=allow-key-locking\nreturn 1', // another engine
      '#!lua name=lib flags=allow-key-locking\nreturn 1', // not a flags option
      '#!lua "flags=allow-key-locking"\nreturn 1', // quoted: sdssplitargs's rules, not ours
      '#!lua flags=allow-key-locking\u00e9\nreturn 1', // non-ASCII
      '#!lua flags=allow-key-locking\u000b\nreturn 1', // control character
      `#!lua flags=${'x,'.repeat(600)}\nreturn 1`, // first line too long to look at
    ]) {
      expect(rewriteShebang(s), JSON.stringify(s)).toBeNull()
      expect(rewriteShebang(Buffer.from(s)), JSON.stringify(s)).toBeNull()
    }
  })

  it('is binary-safe: a Buffer comes back as a Buffer, bytes after the first line untouched', () => {
    const tail = Buffer.from([0x0a, 0x00, 0xff, 0xfe, 0x72, 0x65, 0x74, 0x0a])
    const script = Buffer.concat([Buffer.from('#!lua flags=allow-key-locking,no-writes'), tail])
    const out = rewriteShebang(script)
    expect(Buffer.isBuffer(out)).toBe(true)
    expect(out).toEqual(Buffer.concat([Buffer.from('#!lua flags=no-writes'), tail]))
  })

  it('is a pure function of the text (every gateway replica makes the same script, the same sha)', () => {
    const s = `#!lua flags=allow-key-locking${BODY}`
    expect(scriptSha(rewriteShebang(s)!)).toBe(scriptSha(rewriteShebang(Buffer.from(s))!))
    expect(scriptSha(s)).toBe(sha1(Buffer.from(s, 'utf8')))
    expect(scriptSha('#!lua flags=allow-key-locking\nreturn "\u00e9"')).toBe(sha1(Buffer.from('#!lua flags=allow-key-locking\nreturn "\u00e9"', 'utf8')))
  })
})

describe('ScriptShas', () => {
  it('remembers at most `capacity` shas, least recently used out first', () => {
    const shas = new ScriptShas(3)
    const k = (i: number) => String(i).padStart(40, '0')
    shas.learn(k(1), 'r1')
    shas.learn(k(2), 'r2')
    shas.learn(k(3), 'r3')
    expect(shas.lookup(k(1))).toBe('r1') // 1 is now the most recent
    shas.learn(k(4), 'r4')
    expect(shas.size).toBe(3)
    expect(shas.lookup(k(2))).toBeUndefined()
    expect(shas.lookup(k(1))).toBe('r1')
    expect(shas.lookup(k(3))).toBe('r3')
    expect(shas.lookup(k(4))).toBe('r4')
  })

  it('looks up case-insensitively, strings and Buffers, and only 40-character shas', () => {
    const shas = new ScriptShas()
    const sha = 'ab'.repeat(20)
    shas.learn(sha, 'cd'.repeat(20))
    expect(shas.lookup(sha.toUpperCase())).toBe('cd'.repeat(20))
    expect(shas.lookup(Buffer.from(sha))).toBe('cd'.repeat(20))
    expect(shas.lookup(sha.slice(1))).toBeUndefined()
    expect(shas.lookup(undefined)).toBeUndefined()
  })
})

describe('prepareScriptCall', () => {
  const text = `#!lua flags=allow-key-locking,no-writes${BODY}`
  const rewritten = `#!lua flags=no-writes${BODY}`
  const orig = sha1(text)
  const rew = sha1(rewritten)

  it('EVAL and EVAL_RO send the rewritten text and learn original sha -> rewritten sha', () => {
    const shas = new ScriptShas()
    const call = prepareScriptCall(shas, ['eval', text, '1', 'k'])!
    expect(call.args).toEqual(['eval', rewritten, '1', 'k'])
    expect(shas.lookup(orig)).toBe(rew)
    expect(prepareScriptCall(new ScriptShas(), ['EVAL_RO', text, '0'])!.args).toEqual(['EVAL_RO', rewritten, '0'])
    expect(prepareScriptCall(new ScriptShas(), [Buffer.from('Eval'), Buffer.from(text), '0'])!.args).toEqual([
      Buffer.from('Eval'),
      Buffer.from(rewritten),
      '0',
    ])
  })

  it('EVALSHA and EVALSHA_RO of a learned sha keep their name and send the rewritten sha', () => {
    const shas = new ScriptShas()
    expect(prepareScriptCall(shas, ['evalsha', orig, '0'])).toBeNull() // not learned yet: as is (NOSCRIPT, then EVAL)
    prepareScriptCall(shas, ['eval', text, '0'])
    expect(prepareScriptCall(shas, ['evalsha', orig, '1', 'k', 'a'])!.args).toEqual(['evalsha', rew, '1', 'k', 'a'])
    expect(prepareScriptCall(shas, ['EVALSHA_RO', orig.toUpperCase(), '0'])!.args).toEqual(['EVALSHA_RO', rew, '0'])
    expect(prepareScriptCall(shas, ['evalsha', 'f'.repeat(40), '0'])).toBeNull()
  })

  it('errors naming the rewritten sha name the client sha', () => {
    const shas = new ScriptShas()
    const call = prepareScriptCall(shas, ['eval', text, '0'])!
    expect(call.error(`ERR Write commands are not allowed from read-only scripts. script: ${rew}, on @user_script:2.`)).toBe(
      `ERR Write commands are not allowed from read-only scripts. script: ${orig}, on @user_script:2.`,
    )
    expect(call.error('NOSCRIPT No matching script. Please use EVAL.')).toBe('NOSCRIPT No matching script. Please use EVAL.')
  })

  it('SCRIPT LOAD sends the rewritten text, learns, and answers the original sha', async () => {
    const shas = new ScriptShas()
    const call = prepareScriptCall(shas, ['SCRIPT', 'load', text])!
    expect(call.args).toEqual(['SCRIPT', 'load', rewritten])
    expect(call.reply(Buffer.from(rew))).toEqual(Buffer.from(orig))
    expect(await call.run(Promise.resolve(Buffer.from(rew)))).toEqual(Buffer.from(orig))
    expect(shas.lookup(orig)).toBe(rew)
    expect(prepareScriptCall(shas, ['script', 'load', 'return 1'])).toBeNull()
  })

  it('SCRIPT EXISTS asks about the rewritten sha of a learned one', () => {
    const shas = new ScriptShas()
    expect(prepareScriptCall(shas, ['script', 'exists', orig])).toBeNull()
    prepareScriptCall(shas, ['eval', text, '0'])
    const other = 'a'.repeat(40)
    expect(prepareScriptCall(shas, ['SCRIPT', 'EXISTS', other, orig])!.args).toEqual(['SCRIPT', 'EXISTS', other, rew])
    expect(prepareScriptCall(shas, ['script', 'exists', other])).toBeNull()
  })

  it('run() maps a RedisReplyError and passes other failures through', async () => {
    const shas = new ScriptShas()
    const call = prepareScriptCall(shas, ['eval', text, '0'])!
    await expect(call.run(Promise.reject(new RedisReplyError(`ERR x script: ${rew}`)))).rejects.toThrow(`ERR x script: ${orig}`)
    const other = new Error('boom')
    await expect(call.run(Promise.reject(other))).rejects.toBe(other)
  })

  it('anything else is null, and costs no sha', () => {
    const shas = new ScriptShas()
    for (const args of [['get', 'k'], ['evals', 'x'], ['eval'], ['eval', 'return 1', '0'], ['script', 'flush'], ['script'], ['fcall', 'f', '0'], []]) {
      expect(prepareScriptCall(shas, args)).toBeNull()
    }
    expect(shas.size).toBe(0)
  })
})

describe('prepareScriptBatch', () => {
  it('changes only the items that need it and maps their replies back', () => {
    const shas = new ScriptShas()
    const text = `#!lua flags=allow-key-locking${BODY}`
    const orig = sha1(text)
    const rew = sha1(`#!lua${BODY}`)
    const batch = prepareScriptBatch(shas, [['SET', 'k', 'v'], ['SCRIPT', 'LOAD', text], ['EVALSHA', orig, '0'], ['GET', 'k']])!
    expect(batch.commands).toEqual([['SET', 'k', 'v'], ['SCRIPT', 'LOAD', `#!lua${BODY}`], ['EVALSHA', rew, '0'], ['GET', 'k']])
    expect(
      batch.items([
        { ok: true, value: Buffer.from('OK') },
        { ok: true, value: Buffer.from(rew) },
        { ok: false, error: `ERR boom script: ${rew}` },
        { ok: true, value: Buffer.from('v') },
      ]),
    ).toEqual([
      { ok: true, value: Buffer.from('OK') },
      { ok: true, value: Buffer.from(orig) },
      { ok: false, error: `ERR boom script: ${orig}` },
      { ok: true, value: Buffer.from('v') },
    ])
    expect(prepareScriptBatch(shas, [['GET', 'k'], ['EVAL', 'return 1', '0']])).toBeNull()
  })
})

describe('per-gateway state', () => {
  it('each ScriptShas (one per gateway) remembers its own shas; other commands pass as they are', () => {
    const a = new ScriptShas()
    const b = new ScriptShas()
    const text = `#!lua flags=allow-key-locking${BODY}`
    expect(prepareScriptCall(a, ['GET', 'k'])).toBeNull()
    expect(prepareScriptBatch(a, [['GET', 'k'], ['SET', 'k', 'v']])).toBeNull()
    expect(prepareScriptCall(a, ['EVAL', text, '0'])).not.toBeNull()
    expect(a.size).toBe(1)
    expect(b.size).toBe(0)
    expect(prepareScriptCall(b, ['EVALSHA', sha1(text), '0'])).toBeNull()
    expect(prepareScriptBatch(a, [['GET', 'k'], ['EVALSHA', sha1(text), '0']])!.commands[1]).toEqual(['EVALSHA', sha1(`#!lua${BODY}`), '0'])
  })
})

describe('rewriteShebang properties', () => {
  const flag = fc.constantFrom(...KNOWN_SHEBANG_FLAGS, 'allow-key-locking', 'x', 'no-write', '')
  const body = fc.string({ maxLength: 200 })

  it('keeps every byte after the first line, keeps the known flags in order, and is idempotent', () => {
    fc.assert(
      fc.property(fc.array(flag, { minLength: 1, maxLength: 6 }), body, (flags, rest) => {
        const script = `#!lua flags=${flags.join(',')}\n${rest}`
        const out = rewriteShebang(script)
        const known = flags.filter((f) => KNOWN_SHEBANG_FLAGS.has(f))
        // `flags=` alone names no flag (Redis splits an empty list into nothing).
        if (known.length === flags.length || flags.join(',') === '') return out === null
        const expected = (known.length > 0 ? `#!lua flags=${known.join(',')}` : '#!lua') + `\n${rest}`
        return out === expected && rewriteShebang(out) === null && Buffer.from(rewriteShebang(Buffer.from(script)) as Buffer).equals(Buffer.from(expected))
      }),
    )
  })

  it('never touches a script that does not start with #!', () => {
    fc.assert(fc.property(body, (s) => s.startsWith('#!') || rewriteShebang(s) === null))
  })
})
