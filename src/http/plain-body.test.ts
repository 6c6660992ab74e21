// Tests for the parser of plain command bodies: whatever it takes, it reads exactly as JSON.parse
// does (numbers as their text, as request-parse.ts turns them into arguments), and whatever it
// does not take is left to JSON.parse (null), however the text is broken.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { plainBatch, plainCommand } from './plain-body.js'

/** What the request parser makes of JSON.parse's value: numbers and booleans as their text. */
function viaJson(text: string): unknown {
  const asArg = (a: unknown): unknown => (typeof a === 'number' || typeof a === 'boolean' ? String(a) : a)
  const v: unknown = JSON.parse(text)
  if (!Array.isArray(v)) return v
  return v.map((c: unknown) => (Array.isArray(c) ? c.map(asArg) : asArg(c)))
}

const element = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('get', 'SET', 'bench:p1', '', 'a"b', 'a\\b', 'tab\there', 'x'.repeat(64), 'x'.repeat(65)),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(),
  fc.boolean(),
)
const cmd = fc.array(element, { minLength: 0, maxLength: 6 })

describe('plainBatch', () => {
  it('reads the compact bodies of JSON.stringify as JSON.parse does, or leaves them to it', () => {
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 8 }), (batch) => {
        const text = JSON.stringify(batch)
        const v = plainBatch(text)
        if (v !== null) expect(v).toEqual(viaJson(text))
      }),
      { numRuns: 2_000 },
    )
  })

  it('takes what @upstash/redis sends: strings and integers', () => {
    const text = JSON.stringify([['get', 'bench:p0'], ['set', 'k', 'v', 'ex', 10], ['incrby', 'n', -5], ['zadd', 'z', 0, 'm'], ['échec', '✓ ok']])
    expect(plainBatch(text)).toEqual([['get', 'bench:p0'], ['set', 'k', 'v', 'ex', '10'], ['incrby', 'n', '-5'], ['zadd', 'z', '0', 'm'], ['échec', '✓ ok']])
  })

  it('never accepts text that JSON.parse refuses, and agrees on what both accept', () => {
    // Bodies made of the characters that matter to the grammar, most of them broken.
    const piece = fc.constantFrom('[', ']', ',', '"', '\\', '"a"', '"get"', '0', '1', '-', '12', '1.5', '1e3', ' ', '\n', 'true', 'null', '{}', '\u0001', 'é')
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 24 }), (parts) => {
        const text = parts.join('')
        const v = plainBatch(text)
        if (v === null) return
        expect(() => JSON.parse(text)).not.toThrow()
        expect(v).toEqual(viaJson(text))
      }),
      { numRuns: 20_000 },
    )
  })

  it('leaves to JSON.parse what it does not take', () => {
    const cases = [
      '', '[', '[]', '[[]]', '[[', '[["get"', '[["get",', '[["get"]', '[["get"]]x', '[["get"]] ', ' [["get"]]', '[ ["get"]]',
      '[["a\\"b"]]', '[["a\\nb"]]', '[["tab\tin"]]', '[["get"],]', '[["get"],[]]', '[["get",]]', '[[,"get"]]', '[["get"]["set"]]',
      '[["incr",-0]]', '[["incr",01]]', '[["incr",1.5]]', '[["incr",1e3]]', '[["incr",-]]', '[["incr",1234567890123456]]',
      '[["x",true]]', '[["x",null]]', '[["x",{}]]', '[["x",["y"]]]', '[["get","k"]', `[["set","k","${'x'.repeat(65)}"]]`,
    ]
    for (const text of cases) expect(plainBatch(text), text).toBeNull()
  })

  it('takes the integers JSON.stringify writes, up to 15 digits', () => {
    expect(plainBatch('[["x",0,-1,999999999999999,-999999999999999]]')).toEqual([['x', '0', '-1', '999999999999999', '-999999999999999']])
  })
})

describe('plainCommand', () => {
  it('reads one compact command as JSON.parse does, or leaves it to it', () => {
    fc.assert(
      fc.property(cmd, (c) => {
        const text = JSON.stringify(c)
        const v = plainCommand(text)
        if (v !== null) expect(v).toEqual(viaJson(text))
      }),
      { numRuns: 2_000 },
    )
    expect(plainCommand('["SET","k","v"]')).toEqual(['SET', 'k', 'v'])
    for (const text of ['["SET","k","v"]]', '["SET","k","v"', '["SET"] ', '[["SET"]]', '[]', '"SET"']) expect(plainCommand(text), text).toBeNull()
  })
})
