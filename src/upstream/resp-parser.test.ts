import { Buffer } from 'node:buffer'
import fc from 'fast-check'
import RedisParser from 'redis-parser'
import { describe, expect, test } from 'vitest'
import { TooLargeError } from '../core/errors.js'
import { REPLY_ELEMENT_BYTES } from '../resilience/byte-budget.js'
import { MAX_LINE_BYTES, ProtocolError, REPLY_MAX_DEPTH, ReplyError, RespBytes, RespParser, type ChargedSink } from './resp-parser.js'

interface Sink extends ChargedSink {
  charges: number[]
}

/** A parser whose replies go, in order, to the sinks given (a sink per expected reply). */
function harness(opts: { maxReplyBytes?: number; sinks?: Sink[]; limit?: number } = {}) {
  const replies: unknown[] = []
  const fatals: ProtocolError[] = []
  const sinks = opts.sinks ?? []
  let next = 0
  let peeks = 0
  const parser = new RespParser(
    {
      peek: () => {
        peeks++
        if (opts.sinks === undefined) return next < (opts.limit ?? Infinity) ? {} : undefined
        return sinks[next]
      },
      reply: (v) => {
        next++
        replies.push(v)
      },
      fatal: (e) => fatals.push(e),
    },
    opts.maxReplyBytes ?? 512 * 1024 * 1024,
  )
  return { parser, replies, fatals, peeks: () => peeks }
}

function sink(limit = Infinity, done = false): Sink {
  let used = 0
  const s: Sink = {
    charges: [],
    done,
    charge(n: number) {
      s.charges.push(n)
      used += n
      return used > limit ? new TooLargeError(`over ${limit}`) : null
    },
  }
  return s
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1')

/** Feeds the stream in pieces cut at the given offsets. */
function feed(parser: RespParser, data: Buffer, cuts: number[] = []): void {
  let at = 0
  for (const c of [...cuts].sort((x, y) => x - y)) {
    if (c <= at || c >= data.length) continue
    parser.execute(data.subarray(at, c))
    at = c
  }
  parser.execute(data.subarray(at))
}

/** Replies as plain data, for comparison: Buffers as text, errors as {error}. */
function plain(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('latin1')
  if (Array.isArray(v)) return v.map(plain)
  if (v instanceof Error) return { error: v.message, name: v.name }
  return v
}

/** Any reply tree (bulk, status, integer, error, nil, arrays of them), and its RESP bytes. */
type Tree = { kind: 'bulk'; v: Buffer } | { kind: 'status'; v: string } | { kind: 'int'; v: bigint } | { kind: 'err'; v: string } | { kind: 'nil' } | { kind: 'arr'; v: Tree[] }
const line = fc.string({ maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, ' '))
const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.uint8Array({ maxLength: 40 }).map((v) => ({ kind: 'bulk' as const, v: Buffer.from(v) })),
    line.map((v) => ({ kind: 'status' as const, v })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({ kind: 'int' as const, v })),
    line.map((v) => ({ kind: 'err' as const, v: `ERR ${v}` })),
    fc.constant({ kind: 'nil' as const }),
    fc.array(tie('tree'), { maxLength: 5 }).map((v) => ({ kind: 'arr' as const, v })),
  ),
}))
const encode = (t: Tree): Buffer => {
  switch (t.kind) {
    case 'bulk':
      return Buffer.concat([b(`$${t.v.length}\r\n`), t.v, b('\r\n')])
    case 'status':
      return Buffer.from(`+${t.v}\r\n`)
    case 'int':
      return b(`:${t.v}\r\n`)
    case 'err':
      return Buffer.from(`-${t.v}\r\n`)
    case 'nil':
      return b('$-1\r\n')
    case 'arr':
      return Buffer.concat([b(`*${t.v.length}\r\n`), ...t.v.map(encode)])
  }
}

describe('values', () => {
  test('every RESP2 type, in order, with integers as decimal text and errors as ReplyError', () => {
    const h = harness()
    feed(h.parser, b('+OK\r\n-ERR wrong\r\n:42\r\n:-9223372036854775808\r\n$3\r\nfoo\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n*3\r\n$1\r\na\r\n:1\r\n*1\r\n-E inner\r\n+\r\n'))
    expect(h.fatals).toEqual([])
    expect(h.replies.map(plain)).toEqual([
      'OK',
      { error: 'ERR wrong', name: 'ReplyError' },
      '42',
      '-9223372036854775808',
      'foo',
      '',
      null,
      null,
      [],
      ['a', '1', [{ error: 'E inner', name: 'ReplyError' }]],
      '',
    ])
    expect(h.replies[1]).toBeInstanceOf(ReplyError)
  })


  test('+OK and +QUEUED are one shared Buffer each (no view per reply); other statuses are their own bytes', () => {
    const { parser, replies } = harness()
    const data = b('+OK\r\n+QUEUED\r\n*2\r\n+OK\r\n+QUEUED\r\n+OK\r\n+OKAY\r\n+QUEUE\r\n+ok\r\n+PONG\r\n')
    // In one piece, and cut in the middle of the statuses.
    feed(parser, data)
    feed(parser, data, [2, 8, 20, 33])
    const texts = (v: unknown): unknown => (Array.isArray(v) ? v.map(texts) : (v as Buffer).toString('latin1'))
    const one = ['OK', 'QUEUED', ['OK', 'QUEUED'], 'OK', 'OKAY', 'QUEUE', 'ok', 'PONG']
    expect(replies.map(texts)).toEqual([...one, ...one])
    const [ok, queued, arr] = replies as [Buffer, Buffer, Buffer[]]
    expect(replies[3]).toBe(ok)
    expect(replies[8]).toBe(ok)
    expect(arr[0]).toBe(ok)
    expect(arr[1]).toBe(queued)
    expect(replies[9]).toBe(queued)
    expect(replies[4]).not.toBe(ok)
    expect(replies[12]).not.toBe(replies[4])
  })
  test('binary-safe: a bulk string holding CRLF, NUL and bytes over 0x7f comes back byte for byte', () => {
    const h = harness()
    const payload = Buffer.from([0, 13, 10, 0xff, 0x80, 36, 42, 13, 10])
    feed(h.parser, Buffer.concat([b(`$${payload.length}\r\n`), payload, b('\r\n')]))
    expect(h.replies).toEqual([payload])
  })

  test('a stream cut at every byte parses the same as whole', () => {
    const data = b('*2\r\n$5\r\nhello\r\n*2\r\n:7\r\n+PONG\r\n-ERR x y\r\n$10\r\n0123456789\r\n')
    const whole = harness()
    feed(whole.parser, data)
    for (let i = 1; i < data.length; i++) {
      const h = harness()
      feed(h.parser, data, [i])
      expect(h.replies.map(plain)).toEqual(whole.replies.map(plain))
    }
    const bytewise = harness()
    feed(bytewise.parser, data, Array.from({ length: data.length }, (_, i) => i))
    expect(bytewise.replies.map(plain)).toEqual(whole.replies.map(plain))
  })

  // Any reply tree (`tree` below), cut anywhere: the same values as redis-parser (ioredis's parser,
  // which the gateway used before) for every input both can parse.
  const reference = (data: Buffer): unknown[] => {
    const out: unknown[] = []
    const p = new RedisParser({
      returnBuffers: true,
      stringNumbers: true,
      returnReply: (r: unknown) => out.push(r),
      returnError: (e: Error) => out.push(e),
      returnFatalError: (e: Error) => {
        throw e
      },
    })
    p.execute(data)
    return out
  }

  test('any reply tree, cut anywhere, parses as redis-parser parses it (property)', () => {
    fc.assert(
      fc.property(fc.array(tree, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (trees, cuts) => {
        const data = Buffer.concat(trees.map(encode))
        const h = harness()
        feed(h.parser, data, cuts.map((c) => c % (data.length + 1)))
        expect(h.fatals).toEqual([])
        expect(h.replies.map(plain)).toEqual(reference(data).map(plain))
      }),
      { numRuns: 300, seed: 15 },
    )
  })
})

describe('depth: no stack to overflow', () => {
  const nested = (levels: number): Buffer => b(`${'*1\r\n'.repeat(levels)}:1\r\n`)

  test(`${REPLY_MAX_DEPTH} levels are kept; one more makes the reply a 413, and the next reply is parsed as usual`, () => {
    const h = harness()
    feed(h.parser, Buffer.concat([nested(REPLY_MAX_DEPTH), nested(REPLY_MAX_DEPTH + 1), b('+NEXT\r\n')]))
    expect(h.fatals).toEqual([])
    let v = h.replies[0]
    for (let i = 0; i < REPLY_MAX_DEPTH; i++) v = (v as unknown[])[0]
    expect(v).toBe('1')
    expect(h.replies[1]).toBeInstanceOf(TooLargeError)
    expect((h.replies[1] as Error).message).toMatch(/nested deeper than 128 levels/)
    expect(plain(h.replies[2])).toBe('NEXT')
  })

  test('1,000,000 levels (as a hostile server could send), in one piece and in 4 KiB reads: one 413, no RangeError', () => {
    const data = Buffer.concat([nested(1_000_000), b(':2\r\n')])
    for (const step of [data.length, 4096]) {
      const h = harness()
      const cuts: number[] = []
      for (let i = step; i < data.length; i += step) cuts.push(i)
      feed(h.parser, data, cuts)
      expect(h.fatals).toEqual([])
      expect(h.replies).toHaveLength(2)
      expect(h.replies[0]).toBeInstanceOf(TooLargeError)
      expect(h.replies[1]).toBe('2')
    }
  })

  test('a deep reply whose siblings follow it: everything after the refused element is skipped to the end of the reply', () => {
    // [[[ ...129 deep... ], "x", [1, 2]], "y"] then a second reply.
    const deep = nested(REPLY_MAX_DEPTH)
    const data = Buffer.concat([b('*2\r\n*3\r\n'), deep, b('$1\r\nx\r\n*2\r\n:1\r\n:2\r\n$1\r\ny\r\n:3\r\n')])
    const h = harness()
    feed(h.parser, data)
    expect(h.replies).toHaveLength(2)
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    expect(h.replies[1]).toBe('3')
  })
})

describe('charging: nothing kept that was not paid for', () => {
  test('bulk bytes, array slots and (inside arrays) status lines are charged to the sink before they are kept', () => {
    const s = sink()
    const h = harness({ sinks: [s] })
    feed(h.parser, b('*3\r\n$5\r\nhello\r\n+OK\r\n:1\r\n'))
    expect(s.charges).toEqual([3 * REPLY_ELEMENT_BYTES, 5, 4]) // "+OK\r" is 4 bytes
    expect(plain(h.replies[0])).toEqual(['hello', 'OK', '1'])
  })

  test('a bulk string over the sink\'s limit is skipped as it streams (never allocated) and the reply is the refusal', () => {
    const s1 = sink(1000)
    const s2 = sink()
    const h = harness({ sinks: [s1, s2] })
    const big = Buffer.alloc(1_000_000, 0x61)
    const data = Buffer.concat([b(`$${big.length}\r\n`), big, b('\r\n$2\r\nok\r\n')])
    const cuts: number[] = []
    for (let i = 65536; i < data.length; i += 65536) cuts.push(i)
    feed(h.parser, data, cuts)
    expect(h.fatals).toEqual([])
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    expect(s1.charges).toEqual([1_000_000])
    expect(plain(h.replies[1])).toBe('ok')
  })

  test('a refusal in the middle of an array skips the rest of that reply only', () => {
    const s1 = sink(200)
    const s2 = sink()
    const h = harness({ sinks: [s1, s2] })
    // 2 slots (96) + "abc" (3) fit; the 200-byte bulk does not.
    feed(h.parser, b(`*2\r\n$3\r\nabc\r\n*2\r\n$200\r\n${'z'.repeat(200)}\r\n:5\r\n*1\r\n$2\r\nok\r\n`))
    expect(h.replies).toHaveLength(2)
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    expect(plain(h.replies[1])).toEqual(['ok'])
  })

  test('an array declaring 2^31 elements is refused at its header and answered at once: no 2^31-slot array, no wait for them', () => {
    const s1 = sink(10 * 1024 * 1024)
    const h = harness({ sinks: [s1, sink()] })
    // The server then sends only three of them and a reply for the next command: the skip cannot
    // know, so it eats into it (the next command waits until the connection is reset).
    feed(h.parser, b('*2147483648\r\n:1\r\n:2\r\n:3\r\n+NEXT\r\n'))
    expect(s1.charges).toEqual([2147483648 * REPLY_ELEMENT_BYTES])
    expect(h.replies).toHaveLength(1)
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    expect(h.fatals).toEqual([])
  })

  test('a refused bulk string is answered before its bytes have streamed past, and the parser says it is skipping until they have', () => {
    const s1 = sink(1000)
    const h = harness({ sinks: [s1, sink()] })
    expect(h.parser.skipping).toBe(false)
    h.parser.execute(b('$2000\r\nabc'))
    expect(h.replies).toHaveLength(1)
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    expect(h.parser.skipping).toBe(true)
    h.parser.execute(b(`${'x'.repeat(1997)}\r`))
    expect(h.parser.skipping).toBe(true)
    h.parser.execute(b('\n+OK\r\n'))
    expect(h.parser.skipping).toBe(false)
    expect(plain(h.replies[1])).toBe('OK')
  })

  test('a sink that does not charge is held to the connection\'s own cap', () => {
    const h = harness({ maxReplyBytes: 100 })
    feed(h.parser, b(`$101\r\n${'a'.repeat(101)}\r\n$100\r\n${'b'.repeat(100)}\r\n*3\r\n:1\r\n:2\r\n:3\r\n`))
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    expect((h.replies[1] as Buffer).length).toBe(100)
    expect(h.replies[2]).toBeInstanceOf(TooLargeError) // 3 slots of 48 bytes
  })

  test('a reply not wanted any more (its request timed out, its client left) is skipped, charged nothing, and delivered as null', () => {
    const gone = sink(Infinity, true)
    const h = harness({ sinks: [gone, sink()] })
    feed(h.parser, b(`*2\r\n$5000\r\n${'q'.repeat(5000)}\r\n:1\r\n$2\r\nok\r\n`))
    expect(gone.charges).toEqual([])
    expect(h.replies[0]).toBeNull()
    expect(plain(h.replies[1])).toBe('ok')
  })

  test('a request that gives up while its big reply streams in: the rest is skipped, not stored', () => {
    const s: Sink & { done: boolean } = { ...sink(), done: false }
    const h = harness({ sinks: [s, sink()] })
    // An array of two 100 KB strings: the first is being received when the request gives up.
    const part = 'r'.repeat(100_000)
    const data = b(`*2\r\n$100000\r\n${part}\r\n$100000\r\n${part}\r\n$2\r\nok\r\n`)
    h.parser.execute(data.subarray(0, 50_000))
    s.done = true
    h.parser.execute(data.subarray(50_000))
    // The first string was already allocated (and charged); the second is never kept.
    expect(s.charges).toEqual([2 * REPLY_ELEMENT_BYTES, 100_000])
    expect(h.replies[0]).toBeNull()
    expect(plain(h.replies[1])).toBe('ok')
  })
})

describe('raw: an array reply as its bytes (ChargedSink.raw)', () => {
  /** A stream of: a nested array (bulk strings with CR, LF and "*" inside, nil, errors, integers), then a plain reply. */
  const ARRAY = b('*5\r\n$5\r\na\r\n*2\r\n*3\r\n+flag\r\n:-12\r\n$-1\r\n*-1\r\n*0\r\n-ERR inner\r\n')
  const AFTER = b('$2\r\nok\r\n')
  const raw = (): Sink => ({ ...sink(), raw: true })

  test('cut anywhere: the same bytes, and the next reply parsed as before', () => {
    const stream = Buffer.concat([ARRAY, AFTER])
    for (let c1 = 1; c1 < stream.length; c1++) {
      for (const c2 of [c1 + 1, c1 + 7, stream.length - 1]) {
        const h = harness({ sinks: [raw(), sink()] })
        feed(h.parser, stream, [c1, c2])
        expect(h.fatals).toEqual([])
        expect(h.replies).toHaveLength(2)
        expect(h.replies[0]).toBeInstanceOf(RespBytes)
        expect((h.replies[0] as RespBytes).bytes.equals(ARRAY)).toBe(true)
        expect(plain(h.replies[1])).toBe('ok')
      }
    }
  })

  test('two captured replies in one chunk, and a bulk string longer than the chunks', () => {
    const big = b(`*2\r\n$100000\r\n${'x'.repeat(100_000)}\r\n:1\r\n`)
    const h = harness({ sinks: [raw(), raw(), raw()] })
    const stream = Buffer.concat([ARRAY, ARRAY, big])
    feed(h.parser, stream, [10, ARRAY.length * 2 + 5000, ARRAY.length * 2 + 70_000])
    expect(h.fatals).toEqual([])
    expect(h.replies.map((r) => (r as RespBytes).bytes.toString('latin1'))).toEqual([ARRAY, ARRAY, big].map((x) => x.toString('latin1')))
  })

  test('not an array with elements: the value, as without raw', () => {
    const h = harness({ sinks: [raw(), raw(), raw(), raw(), raw()] })
    feed(h.parser, b('-ERR wrong number of arguments\r\n*0\r\n*-1\r\n+OK\r\n:7\r\n'))
    expect(h.replies.map(plain)).toEqual([{ error: 'ERR wrong number of arguments', name: 'ReplyError' }, [], null, 'OK', '7'])
  })

  test('charged piece by piece; over the limit the refusal goes out and the rest is skipped, the stream stays in step', () => {
    const s = { ...sink(40), raw: true }
    const h = harness({ sinks: [s, sink()] })
    const stream = Buffer.concat([ARRAY, AFTER])
    feed(h.parser, stream, [30, 50])
    expect(h.replies).toHaveLength(2)
    expect(h.replies[0]).toBeInstanceOf(TooLargeError)
    // 26 + 20: the line cut at byte 30 is charged with the piece that completes it.
    expect(s.charges).toEqual([26, 20])
    expect(plain(h.replies[1])).toBe('ok')
    expect(h.fatals).toEqual([])
  })

  test('not "skipping" while it captures (a slow reply keeps its connection); a protocol error in it is fatal', () => {
    const h = harness({ sinks: [raw()] })
    h.parser.execute(b('*2\r\n$5\r\nab'))
    expect(h.parser.skipping).toBe(false)
    h.parser.execute(b('cde\r\n?\r\n'))
    expect(h.fatals).toHaveLength(1)
    expect(h.replies).toEqual([])
  })

  test('any reply: the captured bytes parse to what the parser gives without raw', () => {
    fc.assert(
      fc.property(tree, fc.array(fc.nat(), { maxLength: 4 }), (v, cuts) => {
        const data = encode(v)
        const plainH = harness()
        feed(plainH.parser, data)
        const rawH = harness({ sinks: [raw()] })
        feed(rawH.parser, data, cuts.map((c) => c % data.length))
        const got = rawH.replies[0]
        if (!(got instanceof RespBytes)) {
          expect(plain(got)).toEqual(plain(plainH.replies[0]))
          return
        }
        expect(got.bytes.equals(data)).toBe(true)
        const again = harness()
        feed(again.parser, got.bytes)
        expect(plain(again.replies[0])).toEqual(plain(plainH.replies[0]))
      }),
    )
  })
})

describe('protocol errors: fatal, once, and nothing after', () => {
  const cases: [string, string, RegExp][] = [
    ['an unknown type byte', '?what\r\n', /unknown reply type byte 0x3f/],
    ['a RESP3 map (never asked for)', '%1\r\n+a\r\n+b\r\n', /unknown reply type byte 0x25/],
    ['a negative bulk length other than -1', '$-5\r\n', /negative length \(-5\)/],
    ['a negative array length other than -1', '*-7\r\n', /negative length \(-7\)/],
    ['a length that is not a number', '$abc\r\n', /malformed length/],
    ['an empty length', '$\r\n', /malformed length/],
    ['a length with too many digits', '$99999999999999999\r\n', /too many digits/],
    ['a bulk string not ended by CRLF', '$3\r\nfooXY', /not followed by CRLF/],
    ['a line ended by LF alone', '+OK\n', /not ended by CRLF/],
    ['an integer that is not one', ':12a\r\n', /malformed integer/],
    ['an integer with too many digits', `:${'9'.repeat(30)}\r\n`, /malformed integer/],
  ]
  for (const [what, data, message] of cases) {
    test(what, () => {
      const h = harness()
      feed(h.parser, b(`${data}+AFTER\r\n`))
      expect(h.fatals).toHaveLength(1)
      expect(h.fatals[0]!.message).toMatch(message)
      expect(h.replies).toEqual([])
      h.parser.execute(b('+STILL IGNORED\r\n'))
      expect(h.replies).toEqual([])
      // reset(): a new connection's stream.
      h.parser.reset()
      h.parser.execute(b('+FRESH\r\n'))
      expect(plain(h.replies[0])).toBe('FRESH')
    })
  }

  test('a bulk string split before its bad terminator fails when the terminator arrives', () => {
    const h = harness()
    feed(h.parser, b('$3\r\nfoo!!'), [5, 7, 8])
    expect(h.fatals).toHaveLength(1)
  })

  test(`a line over ${MAX_LINE_BYTES} bytes without CRLF fails once it passes the limit, without buffering more`, () => {
    const h = harness()
    const piece = b(`+${'x'.repeat(16 * 1024 - 1)}`)
    h.parser.execute(piece)
    for (let i = 0; i < 3; i++) h.parser.execute(b('x'.repeat(16 * 1024)))
    expect(h.fatals).toEqual([])
    h.parser.execute(b('x'.repeat(16 * 1024)))
    expect(h.fatals).toHaveLength(1)
    expect(h.fatals[0]!.message).toMatch(/longer than 65536 bytes/)
  })

  test('a reply that no command asked for', () => {
    const h = harness({ limit: 1 })
    feed(h.parser, b('+ONE\r\n+TWO\r\n'))
    expect(plain(h.replies[0])).toBe('ONE')
    expect(h.fatals[0]!.message).toMatch(/no command asked for/)
  })

  test('seeded garbage never throws: every byte string ends in replies, a wait for more, or one fatal error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 5 }), (bytes, cuts) => {
        const h = harness()
        const data = Buffer.from(bytes)
        feed(h.parser, data, cuts.map((c) => c % (data.length + 1)))
        expect(h.fatals.length).toBeLessThanOrEqual(1)
      }),
      { numRuns: 2000, seed: 15 },
    )
  })
})
