// Tests for read-your-writes sync tokens (`upstash-sync-token`, README "Routing"): what SyncTokens writes,
// parseToken reads back, and every malformed or hostile token parses to null (never throws).

import { describe, expect, it, test } from 'vitest'
import { parseToken, SyncTokens, type SyncPosition } from './sync-token.js'

const tokens = new SyncTokens()
const formatToken = (p: SyncPosition, afterWrite: boolean): string => tokens.format(p, afterWrite)

const REPLID = '8a9e3c1f0b2d4e6f8a9e3c1f0b2d4e6f8a9e3c1f'
const pos: SyncPosition = { instance: 'orders', replId: REPLID, offset: 123456 }

const nonceOf = (t: string): string => t.split(':').at(-1) ?? ''

describe('formatToken / parseToken', () => {
  it('round-trips instance, replication id and offset for write and read tokens', () => {
    for (const afterWrite of [true, false]) {
      const t = formatToken(pos, afterWrite)
      expect(t.startsWith('rg1:orders:')).toBe(true)
      expect(parseToken(t)).toEqual(pos)
    }
  })

  it('round-trips edge values: offset 0, the unknown replid "0", a 63-char instance name, 16-digit offsets', () => {
    const cases: SyncPosition[] = [
      { instance: 'a', replId: '0', offset: 0 },
      { instance: 'x'.repeat(63), replId: 'f'.repeat(40), offset: 1 },
      { instance: 'orders-eu-1', replId: REPLID, offset: Number.MAX_SAFE_INTEGER },
    ]
    for (const p of cases) expect(parseToken(formatToken(p, true))).toEqual(p)
  })

  it('the nonce changes after every write token and is 0 for read tokens', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 50; i++) {
      const w = formatToken(pos, true)
      expect(nonceOf(w)).not.toBe('0')
      seen.add(w)
      const r = formatToken(pos, false)
      expect(nonceOf(r)).toBe('0')
      expect(r).toBe(`rg1:orders:${REPLID}:123456:0`)
    }
    // Same position, yet every write produced a distinct token.
    expect(seen.size).toBe(50)
  })

  it('read tokens do not advance the nonce', () => {
    const a = nonceOf(formatToken(pos, true))
    for (let i = 0; i < 5; i++) formatToken(pos, false)
    const b = nonceOf(formatToken(pos, true))
    expect(parseInt(b, 36)).toBe((parseInt(a, 36) + 1) % 0x100000000)
  })
})

describe('parseToken: malformed tokens are null', () => {
  const good = `rg1:orders:${REPLID}:42:1`

  it('accepts the well-formed baseline', () => {
    expect(parseToken(good)).toEqual({ instance: 'orders', replId: REPLID, offset: 42 })
  })

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['empty (the SDK starts with "")', ''],
    ['prefix only', 'rg1:'],
    ['wrong prefix', `rg2:orders:${REPLID}:42:1`],
    ['upper-case prefix', `RG1:orders:${REPLID}:42:1`],
    ['no prefix', `orders:${REPLID}:42:1`],
    ['an Upstash-style opaque token', 'eyJzb21lIjoidG9rZW4ifQ=='],
    ['too few parts', `rg1:orders:${REPLID}:42`],
    ['too many parts', `rg1:orders:${REPLID}:42:1:extra`],
    ['non-hex replid', `rg1:orders:xyz:42:1`],
    ['upper-case hex replid', `rg1:orders:${REPLID.toUpperCase()}:42:1`],
    ['empty replid', `rg1:orders::42:1`],
    ['replid longer than 64', `rg1:orders:${'a'.repeat(65)}:42:1`],
    ['negative offset', `rg1:orders:${REPLID}:-1:1`],
    ['fractional offset', `rg1:orders:${REPLID}:1.5:1`],
    ['exponent offset', `rg1:orders:${REPLID}:1e9:1`],
    ['hex offset', `rg1:orders:${REPLID}:0x10:1`],
    ['empty offset', `rg1:orders:${REPLID}::1`],
    ['huge offset (17 digits)', `rg1:orders:${REPLID}:12345678901234567:1`],
    ['huge offset (300 digits)', `rg1:orders:${REPLID}:${'9'.repeat(200)}:1`],
    ['too long', `rg1:${'a'.repeat(300)}:${REPLID}:42:1`],
    ['whitespace around', ` ${good} `],
  ])('%s', (_, token) => {
    expect(parseToken(token)).toBeNull()
  })

  it('an offset that is not a safe integer is rejected, never silently rounded', () => {
    // 16 digits pass the length check, but 9007199254740993 is not representable as a JS number:
    // Number() would round it to ...992, weakening read-your-writes by one byte.
    const p = parseToken(`rg1:orders:${REPLID}:9007199254740993:1`)
    if (p !== null) expect(String(p.offset)).toBe('9007199254740993')
    const q = parseToken(`rg1:orders:${REPLID}:9999999999999999:1`)
    if (q !== null) expect(String(q.offset)).toBe('9999999999999999')
  })

  it('never throws on arbitrary input', () => {
    const inputs = ['rg1:::::', 'rg1::::', 'rg1:%:%:%:%', 'rg1:\u0000:0:0:0', 'rg1:a:0:0:0\n', ':'.repeat(256)]
    for (const s of inputs) expect(() => parseToken(s)).not.toThrow()
  })
})

describe('formatToken for reads (remembers the last token)', () => {
  test('each token is the one formatted from its position, whatever came before', () => {
    const positions: SyncPosition[] = []
    for (const instance of ['a', 'b']) for (const replId of ['f'.repeat(40), '0'.repeat(40)]) for (const offset of [0, 1, 1234]) positions.push({ instance, replId, offset })
    let seed = 5
    for (let i = 0; i < 2_000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      const p = positions[seed % positions.length]!
      // Equal text in new strings too.
      const q = i % 3 === 0 ? { ...p, instance: [p.instance].join(''), replId: [p.replId].join('') } : p
      expect(formatToken(q, false)).toBe(`rg1:${p.instance}:${p.replId}:${p.offset}:0`)
      if (i % 7 === 0) expect(parseToken(formatToken(p, true))).toEqual(p)
    }
  })
})
