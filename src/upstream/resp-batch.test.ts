// Tests for the flat RESP encoding of a batch: byte for byte what the per-command encoder sends,
// and null (the per-command encoder then) for whatever it does not take.

import { Buffer } from 'node:buffer'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Arg } from '../core/command.js'
import { encodeAsciiBatch } from './resp-batch.js'

/** RESP as the protocol defines it: `*n`, then `$len` and the bytes of each argument. */
function resp(list: readonly (readonly Arg[])[]): Buffer {
  const parts: Buffer[] = []
  for (const args of list) {
    parts.push(Buffer.from(`*${args.length}\r\n`))
    for (const a of args) {
      const bytes = typeof a === 'string' ? Buffer.from(a, 'utf8') : a
      parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'))
    }
  }
  return Buffer.concat(parts)
}

const ascii = fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 120 })
const command = (arg: fc.Arbitrary<Arg>): fc.Arbitrary<Arg[]> => fc.array(arg, { minLength: 1, maxLength: 12 })

describe('encodeAsciiBatch', () => {
  it('writes what the protocol says for any batch of ASCII commands (property)', () => {
    fc.assert(
      fc.property(fc.array(command(ascii), { minLength: 1, maxLength: 30 }), (list) => {
        const text = encodeAsciiBatch(list)
        expect(text).not.toBeNull()
        expect(Buffer.from(text!, 'latin1').equals(resp(list))).toBe(true)
      }),
      { numRuns: 500 },
    )
  })

  it('writes lengths of one, two and more digits, and argument counts over 100', () => {
    const list: Arg[][] = [['GET', ''], ['SET', 'k', 'x'.repeat(99)], ['SET', 'k', 'y'.repeat(12_345)], ['MGET', ...Array.from({ length: 150 }, (_, i) => `k${i}`)]]
    expect(Buffer.from(encodeAsciiBatch(list)!, 'latin1').equals(resp(list))).toBe(true)
  })

  it('leaves to the per-command encoder a non-ASCII character, a Buffer, and a batch over its scratch (null)', () => {
    expect(encodeAsciiBatch([['GET', 'k'], ['SET', 'k', 'é']])).toBeNull()
    expect(encodeAsciiBatch([['SET', 'k', '\u{1F600}']])).toBeNull()
    // Long arguments are copied natively, and checked the same: a character past 0x7f, a lone surrogate.
    expect(encodeAsciiBatch([['SET', 'k', 'v'.repeat(40) + 'é']])).toBeNull()
    expect(encodeAsciiBatch([['SET', 'k', 'é' + 'v'.repeat(40)]])).toBeNull()
    expect(encodeAsciiBatch([['SET', 'k', 'v'.repeat(20) + '\uD800' + 'v'.repeat(20)]])).toBeNull()
    expect(encodeAsciiBatch([['SET', 'k', 'v'.repeat(20) + '\x80']])).toBeNull()
    expect(encodeAsciiBatch([['SET', 'k', Buffer.from('v')]])).toBeNull()
    expect(encodeAsciiBatch([['SET', 'k', 'x'.repeat(70_000)]])).toBeNull()
    expect(encodeAsciiBatch(Array.from({ length: 3_000 }, (_, i) => ['SET', `key:${i}`, 'v'.repeat(20)]))).toBeNull()
    // And a batch that fits right after one that did not is encoded whole.
    const list = [['GET', 'a'], ['GET', 'b']]
    expect(Buffer.from(encodeAsciiBatch(list)!, 'latin1').equals(resp(list))).toBe(true)
  })

  it('mixes of ASCII and other arguments: null exactly when some argument is not ASCII text (property)', () => {
    const arg = fc.oneof(
      ascii,
      fc.string({ maxLength: 8 }),
      // Long enough to be copied natively (NATIVE_FROM), with any code points, surrogates included.
      fc.string({ unit: 'binary', minLength: 16, maxLength: 40 }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 16, maxLength: 40 }).map((cs) => String.fromCharCode(...cs)),
      fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u)),
    )
    fc.assert(
      fc.property(fc.array(command(arg), { minLength: 1, maxLength: 10 }), (list) => {
        const plain = list.every((args) => args.every((a) => typeof a === 'string' && /^[\x00-\x7f]*$/.test(a)))
        const text = encodeAsciiBatch(list)
        expect(text !== null).toBe(plain)
        if (text !== null) expect(Buffer.from(text, 'latin1').equals(resp(list))).toBe(true)
      }),
      { numRuns: 500 },
    )
  })
})
