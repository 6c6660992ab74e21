// A stable, process-independent string hash for consistent hashing: MurmurHash3 x86_32
// (Austin Appleby, public domain; reference: SMHasher `MurmurHash3_x86_32`) over the UTF-8 bytes
// of the string. No per-process seed and no Math.random: every gateway process, on every platform
// and version, maps the same string to the same value, which is what makes sticky routing agree
// across gateway replicas. Changing this function (or its seeds) remaps every sticky client, so the
// golden values in hash.test.ts and maglev.test.ts must only change deliberately.

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

const encoder = new TextEncoder()
let scratch = new Uint8Array(256)

/** MurmurHash3 x86_32 of the UTF-8 encoding of `str`, as an unsigned 32-bit integer. */
export function murmur3(str: string, seed: number): number {
  const n = str.length
  // Client ids and endpoint ids are almost always ASCII: hash code units directly, no encoding.
  for (let i = 0; i < n; i++) {
    if (str.charCodeAt(i) >= 0x80) return murmur3NonAscii(str, seed)
  }
  let h = seed | 0
  const blocks = n & ~3
  let i = 0
  for (; i < blocks; i += 4) {
    let k =
      str.charCodeAt(i) | (str.charCodeAt(i + 1) << 8) | (str.charCodeAt(i + 2) << 16) | (str.charCodeAt(i + 3) << 24)
    k = Math.imul(k, C1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, C2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const rem = n & 3
  if (rem !== 0) {
    let k = 0
    if (rem === 3) k ^= str.charCodeAt(i + 2) << 16
    if (rem >= 2) k ^= str.charCodeAt(i + 1) << 8
    k ^= str.charCodeAt(i)
    k = Math.imul(k, C1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, C2)
    h ^= k
  }
  return fmix(h ^ n)
}

function murmur3NonAscii(str: string, seed: number): number {
  // Lone surrogates become U+FFFD, as TextEncoder does everywhere.
  if (str.length * 3 > scratch.length) scratch = new Uint8Array(str.length * 3)
  const len = encoder.encodeInto(str, scratch).written
  return murmur3Bytes(scratch, len, seed)
}

/** MurmurHash3 x86_32 of `bytes[0..len)`. */
export function murmur3Bytes(bytes: Uint8Array, len: number, seed: number): number {
  let h = seed | 0
  const blocks = len & ~3
  let i = 0
  for (; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)
    k = Math.imul(k, C1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, C2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const rem = len & 3
  if (rem !== 0) {
    let k = 0
    if (rem === 3) k ^= bytes[i + 2]! << 16
    if (rem >= 2) k ^= bytes[i + 1]! << 8
    k ^= bytes[i]!
    k = Math.imul(k, C1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, C2)
    h ^= k
  }
  return fmix(h ^ len)
}

/** MurmurHash3's finaliser: a 32-bit bijection with full avalanche. */
export function fmix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
