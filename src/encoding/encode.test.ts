// Tests for reply encoding (README "Replies" and "Encoding"): raw RESP replies
// in, Upstash REST JSON text out. Outputs are compared as text where exactness matters (integers
// beyond 2^53) and through JSON.parse where the question is "is this valid JSON of that string".

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { encodeValue, errorJson, jsonBytesBound, respBytesBound, respError, respValue, resultBase64, resultJson } from './encode.js'
import type { RawReply } from '../core/reply.js'

const b = (s: string): Buffer => Buffer.from(s, 'utf8')
const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64')

describe('encodeValue: strings', () => {
  it('UTF-8 mode emits bulk strings as JSON strings', () => {
    expect(encodeValue(b('hello'), false)).toBe('"hello"')
    expect(encodeValue(b(''), false)).toBe('""')
  })

  it('base64 mode emits the base64 of the raw bytes', () => {
    expect(encodeValue(b('hello'), true)).toBe(`"${b64('hello')}"`)
    expect(encodeValue(b('hello'), true)).toBe('"aGVsbG8="')
    expect(encodeValue(b(''), true)).toBe('""')
  })

  it('base64 mode keeps the status reply OK plain, and only exactly OK', () => {
    expect(encodeValue(b('OK'), true)).toBe('"OK"')
    expect(encodeValue(b('ok'), true)).toBe(`"${b64('ok')}"`)
    expect(encodeValue(b('OKK'), true)).toBe(`"${b64('OKK')}"`)
    expect(encodeValue(b('O'), true)).toBe(`"${b64('O')}"`)
    // Other status replies are base64 like any string.
    expect(encodeValue(b('PONG'), true)).toBe(`"${b64('PONG')}"`)
    expect(encodeValue(b('QUEUED'), true)).toBe(`"${b64('QUEUED')}"`)
    expect(encodeValue(b('OK'), false)).toBe('"OK"')
  })

  it('binary data with invalid UTF-8: exact bytes in base64, U+FFFD in UTF-8 mode', () => {
    const raw = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41, 0xc3])
    const enc = encodeValue(raw, true)
    expect(Buffer.from(JSON.parse(enc) as string, 'base64').equals(raw)).toBe(true)
    expect(enc).toBe(`"${raw.toString('base64')}"`)

    const text = JSON.parse(encodeValue(raw, false)) as string
    expect(text).toBe('\uFFFD\uFFFD\u0000\uFFFDA\uFFFD')
  })

  it('every byte value round-trips exactly through base64', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const out = JSON.parse(encodeValue(all, true)) as string
    expect(Buffer.from(out, 'base64').equals(all)).toBe(true)
  })

  it('UTF-8 mode escapes quotes, backslashes, newlines, control characters and keeps unicode', () => {
    const tricky = [
      'he said "hi"',
      'back\\slash',
      'line1\nline2\r\n',
      'tab\there',
      '\u0000\u0001\u0007\u001b\u001f\u007f',
      'é ü ß 中文 日本語',
      '😀 emoji (surrogate pair)',
      '\u2028\u2029 line separators',
      '</script><script>',
      '{"json":"inside"}',
    ]
    for (const s of tricky) {
      const out = encodeValue(b(s), false)
      expect(() => JSON.parse(out)).not.toThrow()
      expect(JSON.parse(out)).toBe(s)
      // Raw control characters are never emitted unescaped (JSON forbids U+0000..U+001F in strings).
      // eslint-disable-next-line no-control-regex
      expect(out).not.toMatch(/[\u0000-\u001f]/)
    }
  })
})

describe('encodeValue: integers, null and other scalars', () => {
  it('integer replies are emitted as exact JSON numbers, also beyond 2^53', () => {
    expect(encodeValue('0', false)).toBe('0')
    expect(encodeValue('42', true)).toBe('42')
    expect(encodeValue('-17', false)).toBe('-17')
    expect(encodeValue('9007199254740993', false)).toBe('9007199254740993')
    expect(encodeValue('9007199254740993', true)).toBe('9007199254740993')
    expect(encodeValue('-9223372036854775808', false)).toBe('-9223372036854775808')
    expect(resultJson('9223372036854775807', true)).toBe('{"result":9223372036854775807}')
  })

  it('integers stay numbers (not strings) in both modes', () => {
    expect(JSON.parse(resultJson('5', true))).toEqual({ result: 5 })
    expect(JSON.parse(resultJson('5', false))).toEqual({ result: 5 })
  })

  it('null (nil) stays null in both modes', () => {
    expect(encodeValue(null, false)).toBe('null')
    expect(encodeValue(null, true)).toBe('null')
    expect(resultJson(null, true)).toBe('{"result":null}')
    expect(JSON.parse(resultJson(null, false))).toEqual({ result: null })
  })

  it('JS numbers: finite as JSON numbers, non-finite as null (never invalid JSON)', () => {
    expect(encodeValue(3, false)).toBe('3')
    expect(encodeValue(1.5, true)).toBe('1.5')
    expect(encodeValue(Number.NaN, false)).toBe('null')
    expect(encodeValue(Number.POSITIVE_INFINITY, false)).toBe('null')
  })
})

describe('encodeValue: arrays', () => {
  it('empty array', () => {
    expect(encodeValue([], false)).toBe('[]')
    expect(encodeValue([], true)).toBe('[]')
    expect(resultJson([], true)).toBe('{"result":[]}')
  })

  it('nested arrays mixing strings, integers and nulls (UTF-8)', () => {
    const v: RawReply = [b('a'), '1', null, [b('b'), [], ['9007199254740993', null]], b('OK')]
    const out = encodeValue(v, false)
    expect(out).toBe('["a",1,null,["b",[],[9007199254740993,null]],"OK"]')
  })

  it('nested arrays in base64: every string encoded recursively, OK too, numbers and nulls untouched', () => {
    // The SDK keeps only a top-level "OK" as is; inside arrays it base64-decodes every string, so
    // an unencoded "OK" there would decode to garbage ("8").
    const v: RawReply = [b('a'), '1', null, [b('b'), [], ['7', null, b('OK')]], b('ok')]
    const out = encodeValue(v, true)
    expect(out).toBe(`["${b64('a')}",1,null,["${b64('b')}",[],[7,null,"${b64('OK')}"]],"${b64('ok')}"]`)
    expect(JSON.parse(out)).toEqual([b64('a'), 1, null, [b64('b'), [], [7, null, b64('OK')]], b64('ok')])
  })

  it('a top-level OK stays plain under base64', () => {
    expect(resultJson(b('OK'), true)).toBe('{"result":"OK"}')
  })

  it('an HGETALL-style flat array of binary fields keeps order and bytes', () => {
    const field = Buffer.from([0x00, 0xff])
    const out = JSON.parse(encodeValue([field, b('v1'), b('f2'), b('')], true)) as string[]
    expect(out.map((s) => Buffer.from(s, 'base64'))).toEqual([field, b('v1'), b('f2'), b('')])
  })

  it('an error nested in an array is emitted as its message text (base64 in base64 mode)', () => {
    const err = new Error('WRONGTYPE Operation against a key holding the wrong kind of value')
    expect(JSON.parse(encodeValue([b('x'), err, '3'], false))).toEqual([
      'x',
      'WRONGTYPE Operation against a key holding the wrong kind of value',
      3,
    ])
    const decoded = (JSON.parse(encodeValue([err], true)) as string[]).map((s) => Buffer.from(s, 'base64').toString('utf8'))
    expect(decoded).toEqual([err.message])
  })

  it('an error message needing escapes still yields valid JSON', () => {
    const err = new Error('ERR bad "thing"\nsecond line')
    expect(JSON.parse(encodeValue([err], false))).toEqual([err.message])
  })
})

describe('resultJson / errorJson', () => {
  it('resultJson wraps the encoded value', () => {
    expect(resultJson(b('v'), false)).toBe('{"result":"v"}')
    expect(resultJson(b('v'), true)).toBe(`{"result":"${b64('v')}"}`)
    expect(resultJson(b('OK'), true)).toBe('{"result":"OK"}')
  })

  it('errorJson is {error: ...} with no result (as Upstash), the full Redis message, escaped', () => {
    const msg = 'WRONGTYPE Operation against a key holding the wrong kind of value'
    expect(errorJson(msg)).toBe(`{"error":"${msg}"}`)
    const tricky = 'ERR "quoted"\n\u0001 é'
    expect(JSON.parse(errorJson(tricky))).toEqual({ error: tricky })
  })
})

describe('base64 results are ASCII', () => {
  // Replies as resp-parser.ts hands them over: any bytes, integer text, nil, nested arrays, and error
  // replies inside arrays, with any text in them.
  const reply: fc.Arbitrary<RawReply> = fc.letrec<{ value: RawReply }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      fc.constant(Buffer.from('OK')),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((n) => n.toString()),
      fc.constant(null),
      fc.string({ unit: 'binary', maxLength: 20 }).map((s) => new Error(s)),
      fc.array(tie('value'), { maxLength: 5 }),
    ),
  })).value

  it('every character of resultJson(v, true) is below 0x80, and it is valid JSON', () => {
    fc.assert(
      fc.property(reply, (v) => {
        const text = resultJson(v, true)
        for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false
        JSON.parse(text)
        return Buffer.byteLength(text, 'utf8') === text.length
      }),
      { numRuns: 500 },
    )
  })

  it('without base64 a result can be non-ASCII (which is why only base64 results are flagged)', () => {
    const text = resultJson(b('h\u00e9llo'), false)
    expect(Buffer.byteLength(text, 'utf8')).toBeGreaterThan(text.length)
  })
})

describe('jsonBytesBound: never below the bytes of the JSON it bounds', () => {
  const { reply } = fc.letrec<{ reply: RawReply }>((tie) => ({
    reply: fc.oneof(
      { depthSize: 'small' },
      fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
      fc.constantFrom(Buffer.alloc(100, 0), Buffer.alloc(100, 0xff), Buffer.from('"\\'.repeat(20)), Buffer.from('\u00e9\u{1f600}')),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
      fc.constant(null),
      fc.string().map((m) => new Error(m)),
      fc.array(tie('reply'), { maxLength: 5 }),
    ),
  }))

  it('for any reply, in UTF-8 and base64 mode', () => {
    fc.assert(
      fc.property(reply, fc.boolean(), (v, base64) => {
        expect(jsonBytesBound(v, base64)).toBeGreaterThanOrEqual(Buffer.byteLength(encodeValue(v, base64), 'utf8'))
      }),
      { numRuns: 500, seed: 15 },
    )
  })

  it('exact for base64 strings, and six times the bytes for a string of NULs (each is \\u0000)', () => {
    const nul = Buffer.alloc(1000)
    expect(jsonBytesBound(nul, true)).toBe(encodeValue(nul, true).length)
    expect(jsonBytesBound(nul, false)).toBe(encodeValue(nul, false).length)
    expect(encodeValue(nul, false).length).toBe(6002)
  })
})

describe('RESP2 replies (Upstash-Response-Format: resp2)', () => {
  it('encodes each reply type as a TCP client reads it; a top-level OK as +OK', () => {
    expect(respValue(Buffer.from('OK'))).toBe('+OK\r\n')
    expect(respValue([Buffer.from('OK')])).toBe('*1\r\n$2\r\nOK\r\n')
    expect(respValue(Buffer.from('bar'))).toBe('$3\r\nbar\r\n')
    expect(respValue(null)).toBe('$-1\r\n')
    expect(respValue('12345678901234567890')).toBe(':12345678901234567890\r\n')
    expect(respValue([Buffer.from('a'), [null, '1'], new Error('ERR x')])).toBe('*3\r\n$1\r\na\r\n*2\r\n$-1\r\n:1\r\n-ERR x\r\n')
    // Bytes stay bytes: the latin1 string is the wire form.
    const bin = Buffer.from([0, 0xff, 0x0d, 0x0a, 0xc3, 0xa9])
    expect(Buffer.from(respValue(bin), 'latin1')).toEqual(Buffer.concat([Buffer.from('$6\r\n'), bin, Buffer.from('\r\n')]))
    expect(Buffer.from(respError('ERR é\r\nx'), 'latin1').toString('utf8')).toBe('-ERR é x\r\n')
  })

  it('respBytesBound is never below the encoded length', () => {
    const values: RawReply[] = [null, Buffer.alloc(0), Buffer.from('OK'), '1', '-12345', [], [[], [null]], [Buffer.alloc(100_000)], new Error('boom'), 3.5]
    for (const v of values) expect(respBytesBound(v), JSON.stringify(v)).toBeGreaterThanOrEqual(respValue(v).length)
  })
})

describe('resultBase64', () => {
  it('is resultJson(v, true), as bytes once large, for values around the slice boundaries', () => {
    for (const n of [0, 5, 16 * 1024, 48 * 1024 - 1, 48 * 1024, 48 * 1024 + 1, 96 * 1024 + 2, 1024 * 1024 + 1]) {
      const v = Buffer.alloc(n)
      for (let i = 0; i < n; i++) v[i] = (i * 7919) & 0xff
      const got = resultBase64(v)
      const want = resultJson(v, true)
      expect(typeof got === 'string' ? got : got.toString('latin1')).toBe(want)
      // Large results are bytes, sent without a UTF-8 pass; small ones stay text.
      expect(typeof got === 'string').toBe(want.length < 16 * 1024)
    }
    const arr = [Buffer.alloc(30_000, 1), 42, null]
    expect(String(resultBase64(arr))).toBe(resultJson(arr, true))
  })
})
