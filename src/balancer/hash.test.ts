// MurmurHash3 x86_32 against the published reference vectors: sticky routing across gateway
// processes and versions depends on this function never changing.

import { describe, expect, test } from 'vitest'
import { murmur3, murmur3Bytes } from './hash.js'

describe('murmur3 (x86_32, UTF-8)', () => {
  test.each([
    ['', 0, 0x00000000],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['\0\0\0\0', 0, 0x2362f9de],
    ['a', 0x9747b28c, 0x7fa09ea6],
    ['abc', 0x9747b28c, 0xc84a62dd],
    ['aaaa', 0x9747b28c, 0x5a97808a],
    ['Hello, world!', 0x9747b28c, 0x24884cba],
    ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
    ['ππππππππ', 0x9747b28c, 0xd58063c1], // non-ASCII: hashed as UTF-8 bytes
  ])('murmur3(%j, %i) = %i', (input, seed, expected) => {
    expect(murmur3(input, seed)).toBe(expected)
  })

  test('the ASCII fast path equals hashing the UTF-8 bytes', () => {
    const enc = new TextEncoder()
    for (const s of ['', 'x', 'client-42', '10.0.0.1:6379', '[fd00::1]:6379', 'é', 'a\u{1F600}b', '\ud800']) {
      const bytes = enc.encode(s)
      expect(murmur3(s, 7)).toBe(murmur3Bytes(bytes, bytes.length, 7))
    }
  })

  test('long non-ASCII strings grow the scratch buffer correctly', () => {
    const s = 'ü'.repeat(1000)
    const bytes = new TextEncoder().encode(s)
    expect(murmur3(s, 3)).toBe(murmur3Bytes(bytes, bytes.length, 3))
  })
})
