import { Buffer } from 'node:buffer'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BadRequestError } from '../core/errors.js'
import { LIFT_BYTES, liftValues } from './big-values.js'
import { parseBatchBody, parseCommandBody, type Arg, type BodyLimits } from './request-parse.js'

const LIMITS: BodyLimits = { maxArgs: 100_000, maxCommands: 10_000 }
const big = (c = 'x', n = LIFT_BYTES): string => c.repeat(n)
/** What Redis receives for an argument: its UTF-8 bytes. */
const bytes = (a: Arg): Buffer => (typeof a === 'string' ? Buffer.from(a, 'utf8') : a)
const sameBytes = (got: readonly Arg[], want: readonly string[]): void => {
  expect(got.length).toBe(want.length)
  got.forEach((a, i) => expect(bytes(a).equals(Buffer.from(want[i]!, 'utf8'))).toBe(true))
}

describe('liftValues', () => {
  it('takes a large plain value out of the text and hands back a view of the body', () => {
    const value = big('a', LIFT_BYTES + 5)
    const body = Buffer.from(JSON.stringify(['SET', 'k', value, 'EX', 10]))
    const { text, lifted } = liftValues(body)
    expect(text).toBe('["SET","k","","EX",10]')
    expect(lifted?.ordinals).toEqual([2])
    const v = lifted!.values[0]!
    expect(v.toString('latin1')).toBe(value)
    // A view, not a copy: memory for the request is the body.
    expect(v.buffer).toBe(body.buffer)
  })

  it('leaves short, escaped, non-ASCII and control-character values to JSON.parse', () => {
    for (const value of [big('x', LIFT_BYTES - 1), big('x') + '\\n', big('x') + '"', big('é'), big('x') + '\t']) {
      // The tab goes in raw (JSON.stringify would escape it): invalid JSON, and must stay refused.
      const body = value.endsWith('\t') ? Buffer.from(`["SET","k","${value}"]`) : Buffer.from(JSON.stringify(['SET', 'k', value]))
      expect(liftValues(body).lifted).toBeNull()
    }
  })

  it('counts every string literal, empty ones included, to find its place again', () => {
    const a = big('a')
    const b = big('b')
    const body = Buffer.from(JSON.stringify([['SET', '', a], ['GET', 'k'], ['MSET', 'k1', b, 'k2', '']]))
    const { text, lifted } = liftValues(body)
    expect(JSON.parse(text)).toEqual([['SET', '', ''], ['GET', 'k'], ['MSET', 'k1', '', 'k2', '']])
    expect(lifted?.ordinals).toEqual([2, 7])
  })
})

describe('parseCommandBody and parseBatchBody on a body with large values', () => {
  it('sends the same bytes as JSON.parse would, the large plain values as Buffers', () => {
    const v = big('v', 70_000)
    const args = parseCommandBody(Buffer.from(JSON.stringify(['set', 'k', v])), LIMITS)
    expect(Buffer.isBuffer(args[2])).toBe(true)
    sameBytes(args, ['set', 'k', v])
    const cmds = parseBatchBody(Buffer.from(JSON.stringify([['set', 'a', v], ['get', 'a'], ['set', 'b', `${v}é`]])), LIMITS)
    expect(Buffer.isBuffer(cmds[0]![2])).toBe(true)
    expect(typeof cmds[2]![2]).toBe('string')
    sameBytes(cmds[0]!, ['set', 'a', v])
    sameBytes(cmds[2]!, ['set', 'b', `${v}é`])
  })

  it('refuses what JSON.parse refuses', () => {
    const v = big()
    for (const text of [
      `["set","k","${v}"`, // truncated
      `["set","k","${v}" "x"]`, // missing comma
      `["set","k","${v}",]`, // trailing comma
      `["set","k",x"${v}"]`, // garbage before the value
      `["set","k","${v}\t"]`, // raw control character
      `["set","k","${v}"]]`, // trailing garbage
      `"${v}"`, // not an array
    ]) {
      expect(() => parseCommandBody(text, LIMITS)).toThrow(BadRequestError)
      // The lifted text is shorter after a lifted value, so only the offsets in the message differ.
      expect(() => parseCommandBody(Buffer.from(text), LIMITS)).toThrow(BadRequestError)
    }
  })

  it('refuses a large value where a command or an argument cannot be', () => {
    const v = big()
    expect(() => parseBatchBody(Buffer.from(JSON.stringify([['set', 'k', v], { a: v }])), LIMITS)).toThrow(/body\[1\] must be a JSON array/)
    expect(() => parseBatchBody(Buffer.from(JSON.stringify([v, ['get', 'k']])), LIMITS)).toThrow(/body\[0\] must be a JSON array/)
    expect(() => parseCommandBody(Buffer.from(JSON.stringify(['set', { k: v }, v])), LIMITS)).toThrow(/must be a string, number or boolean/)
  })

  it('gives the bytes JSON.parse would for any mix of values (property)', () => {
    const value = fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.constantFrom('x', 'é', '\\', '"', '\n', '\u0001', '~', '\u007f').map((c) => c.repeat(LIFT_BYTES)),
      fc.tuple(fc.string({ maxLength: 3 }), fc.nat({ max: 3 })).map(([s, n]) => big('y', LIFT_BYTES + n) + s),
      fc.integer(),
    )
    fc.assert(
      fc.property(fc.array(fc.array(value, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 }), (batch) => {
        batch = batch.map((c) => ['set', ...c])
        const want = JSON.parse(JSON.stringify(batch)) as unknown[][]
        const got = parseBatchBody(Buffer.from(JSON.stringify(batch)), LIMITS)
        got.forEach((cmd, i) => sameBytes(cmd, want[i]!.map(String)))
      }),
      { numRuns: 150 },
    )
  })
})
