// Unit tests for duration and size parsing: accepted spellings, and that bad input says what is accepted.
import { describe, expect, it } from 'vitest'
import { parseDuration, parseSize } from './duration.js'

describe('parseDuration', () => {
  it.each([
    ['150ms', 150],
    ['2s', 2000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h0m1s', 3_601_000],
    ['0', 0],
    ['0s', 0],
    ['250', 250],
    [' 2s ', 2000],
    [150, 150],
    [0, 0],
    [2.5, 2.5],
  ] as const)('%j -> %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms)
  })

  it.each(['', 'abc', '-1s', '-5', '2 s', '2S', '1d', 's', '.5s', '1.s', '2s1', '1e3', 'ms', '1,5s', 'NaN'])(
    'rejects %j with a message saying what is accepted',
    (input) => {
      expect(() => parseDuration(input)).toThrow(/invalid duration .*expected .*"150ms"/)
    },
  )

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('rejects the number %d', (input) => {
    expect(() => parseDuration(input)).toThrow(/invalid duration/)
  })
})

describe('parseSize', () => {
  it.each([
    ['10MiB', 10 * 1024 * 1024],
    ['512KiB', 512 * 1024],
    ['1GiB', 1024 ** 3],
    ['10MB', 10_000_000],
    ['100kb', 100_000],
    ['64Ki', 65_536],
    ['1Mi', 1_048_576],
    ['1.5KiB', 1536],
    ['1.1KiB', 1126],
    ['0', 0],
    ['1048576', 1_048_576],
    ['7B', 7],
    [' 2mib ', 2 * 1024 * 1024],
    [1024, 1024],
    [0, 0],
  ] as const)('%j -> %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes)
  })

  it.each(['', 'abc', '-1', '-1MiB', '1.5', '10 MiB', '10M', '10k', '1e6', 'MiB', '10XB', '1constructor', '99999999999999999999'])(
    'rejects %j with a message saying what is accepted',
    (input) => {
      expect(() => parseSize(input)).toThrow(/invalid size/)
    },
  )

  it('names the accepted units', () => {
    expect(() => parseSize('lots')).toThrow(/KiB, MiB, GiB/)
  })

  it.each([-1, 1.5, Number.NaN, 2 ** 60])('rejects the number %d', (input) => {
    expect(() => parseSize(input)).toThrow(/invalid size/)
  })
})
