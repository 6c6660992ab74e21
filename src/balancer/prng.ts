// A small seeded PRNG for deterministic tests, simulations and the benchmark (fast-check is not a
// dependency). sfc32 (Chris Doty-Humphrey's "Small Fast Counting" generator, from PractRand),
// seeded through splitmix32 so that nearby seeds give unrelated streams. Not for production
// randomness: the gateway injects Math.random as `PickContext.random`.

/** A deterministic uniform source in [0, 1), with integer helpers. */
export interface Prng {
  /** Uniform in [0, 1), 32 bits of precision. Safe to pass as `PickContext.random`. */
  readonly next: () => number
  /** Uniform integer in [0, n). */
  int(n: number): number
  /** Uniform element of a non-empty list. */
  pick<T>(list: readonly T[]): T
  /** Exponentially distributed with the given mean (for arrival/service times in simulations). */
  exp(mean: number): number
}

export function createPrng(seed: number): Prng {
  let s = seed >>> 0
  const split = (): number => {
    s = (s + 0x9e3779b9) | 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    return (z ^ (z >>> 16)) >>> 0
  }
  let a = split()
  let b = split()
  let c = split()
  let d = 1
  const u32 = (): number => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return t >>> 0
  }
  for (let i = 0; i < 12; i++) u32() // warm up, as the reference does
  const next = (): number => u32() / 4294967296
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: <T>(list: readonly T[]): T => {
      if (list.length === 0) throw new RangeError('pick from an empty list')
      return list[Math.floor(next() * list.length)]!
    },
    exp: (mean) => -Math.log(1 - next()) * mean,
  }
}
