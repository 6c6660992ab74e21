// The scenarios of `npm run bench`: what the gateway, webdis and the hello-world server are sent.

import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { TOKEN } from './procs.js'
import type { HttpRequestSpec } from './wrk.js'

export const SMALL = 'v'.repeat(32)
export const BIG = 'x'.repeat(64 * 1024)
export const HUGE = 'x'.repeat(1024 * 1024)
export const KEY = 'bench:k'

export const GW_HEADERS = {
  Authorization: `Bearer ${TOKEN}`,
  'Content-Type': 'application/json',
  // What @upstash/redis sends by default.
  'Upstash-Encoding': 'base64',
}

export interface Scenario {
  readonly id: string
  readonly title: string
  readonly connections: number
  /** Redis commands per HTTP request (gateway). */
  readonly commands: number
  /** Gateway request, or 'sdk' for the SDK driver. */
  readonly gateway: ((base: string) => HttpRequestSpec) | 'sdk'
  /** Webdis request and what it is (null: webdis cannot do it). */
  readonly webdis: { req: (url: string) => HttpRequestSpec; commands: number; note: string } | null
  /** Expected gateway `result` (after base64 decoding), for the check before the runs. */
  readonly expect?: (result: unknown) => boolean
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')
export const gwPost = (url: string, body: unknown): HttpRequestSpec => ({
  method: 'POST',
  url,
  headers: GW_HEADERS,
  bodies: [JSON.stringify(body)],
})
const pipelineKeys = (n: number): string[] => Array.from({ length: n }, (_, i) => `bench:p${i}`)

/**
 * What the SDK sent with auto-pipelining (bench/sdk-driver.ts with SDK_CAPTURE): the bodies of its
 * /pipeline requests, replayed by wrk in the sdk-wrk scenario, and the commands per request.
 */
export interface SdkTraffic {
  readonly bodies: readonly string[]
  /** Commands per request: mean, and min / median / max. */
  readonly commands: number
  readonly sizes: { min: number; median: number; max: number }
}
let sdkTraffic: SdkTraffic | null = null

/** Reads a capture file of sdk-driver.ts; only its /pipeline requests are kept (all of them, as the SDK sends them). */
export function useSdkCapture(file: string): SdkTraffic {
  const all = JSON.parse(readFileSync(file, 'utf8')) as { path: string; body: string }[]
  const bodies = all.filter((r) => r.path.endsWith('/pipeline')).map((r) => r.body)
  if (bodies.length === 0) throw new Error(`sdk capture ${file}: no /pipeline requests among ${all.length}`)
  const lengths = bodies.map((b) => (JSON.parse(b) as unknown[]).length).sort((a, b) => a - b)
  const commands = lengths.reduce((n, x) => n + x, 0) / lengths.length
  sdkTraffic = { bodies, commands, sizes: { min: lengths[0]!, median: lengths[lengths.length >> 1]!, max: lengths.at(-1)! } }
  return sdkTraffic
}

export const SCENARIOS: Scenario[] = [
  ...[1, 50].map(
    (c): Scenario => ({
      id: `get-c${c}`,
      title: `GET, ${c} conn`,
      connections: c,
      commands: 1,
      gateway: (base) => gwPost(base, ['get', KEY]),
      webdis: { req: (u) => ({ method: 'GET', url: `${u}/GET/${KEY}` }), commands: 1, note: 'GET /GET/key' },
      expect: (r) => r === b64(SMALL),
    }),
  ),
  ...[1, 50].map(
    (c): Scenario => ({
      id: `set-c${c}`,
      title: `SET, ${c} conn`,
      connections: c,
      commands: 1,
      gateway: (base) => gwPost(base, ['set', 'bench:s', SMALL]),
      webdis: { req: (u) => ({ method: 'GET', url: `${u}/SET/bench:s/${SMALL}` }), commands: 1, note: 'GET /SET/key/value' },
      expect: (r) => r === 'OK',
    }),
  ),
  ...[10, 100].map(
    (n): Scenario => ({
      id: `pipeline-${n}`,
      title: `pipeline of ${n} GET, 50 conn`,
      connections: 50,
      commands: n,
      gateway: (base) => gwPost(`${base}/pipeline`, pipelineKeys(n).map((k) => ['get', k])),
      webdis: {
        req: (u) => ({ method: 'GET', url: `${u}/MGET/${pipelineKeys(n).join('/')}` }),
        commands: n,
        note: `no pipelines: MGET of ${n} keys (one command), counted as ${n}`,
      },
      expect: (r) => Array.isArray(r) && r.length === n,
    }),
  ),
  {
    id: 'multi-exec-10',
    title: 'multi-exec of 10 SET, 50 conn',
    connections: 50,
    commands: 10,
    gateway: (base) => gwPost(`${base}/multi-exec`, Array.from({ length: 10 }, (_, i) => ['set', `bench:m${i}`, SMALL])),
    webdis: {
      req: (u) => ({ method: 'GET', url: `${u}/MSET/${Array.from({ length: 10 }, (_, i) => `bench:m${i}/${SMALL}`).join('/')}` }),
      commands: 10,
      note: 'no MULTI/EXEC: MSET of 10 keys (atomic, one command), counted as 10',
    },
    expect: (r) => Array.isArray(r) && r.length === 10,
  },
  ...[
    { id: '64k', size: '64 KiB', value: BIG, read: 'bench:big', written: 'bench:big2' },
    { id: '1m', size: '1 MiB', value: HUGE, read: 'bench:huge', written: 'bench:huge2' },
  ].flatMap(({ id, size, value, read, written }): Scenario[] => [
    {
      id: `get-${id}`,
      title: `GET ${size} value, 50 conn`,
      connections: 50,
      commands: 1,
      gateway: (base) => gwPost(base, ['get', read]),
      webdis: { req: (u) => ({ method: 'GET', url: `${u}/GET/${read}` }), commands: 1, note: 'GET /GET/key' },
      expect: (r) => r === b64(value),
    },
    {
      id: `set-${id}`,
      title: `SET ${size} value, 50 conn`,
      connections: 50,
      commands: 1,
      gateway: (base) => gwPost(base, ['set', written, value]),
      webdis: {
        req: (u) => ({ method: 'PUT', url: `${u}/SET/${written}`, bodies: [value] }),
        commands: 1,
        note: 'PUT /SET/key with the value as body',
      },
      expect: (r) => r === 'OK',
    },
  ]),
  {
    id: 'sdk-wrk',
    title: '@upstash/redis auto-pipelined bodies, wrk, 50 conn',
    connections: 50,
    get commands(): number {
      return sdkTraffic?.commands ?? 1
    },
    gateway: (base) => {
      if (sdkTraffic === null) throw new Error('sdk-wrk: no captured SDK traffic (captureSdkTraffic)')
      return { method: 'POST', url: `${base}/pipeline`, headers: GW_HEADERS, bodies: sdkTraffic.bodies }
    },
    webdis: null,
    expect: (r) => Array.isArray(r),
  },
  {
    id: 'sdk-50',
    title: '@upstash/redis, auto-pipelining, 50 callers',
    connections: 50,
    commands: 1,
    gateway: 'sdk',
    webdis: null,
  },
]

/** The keys the scenarios read. */
export async function seed(redisPort: number): Promise<void> {
  const r = new Redis({ port: redisPort, host: '127.0.0.1' })
  const p = r.pipeline()
  p.set(KEY, SMALL)
  p.set('bench:big', BIG)
  p.set('bench:huge', HUGE)
  for (const k of pipelineKeys(100)) p.set(k, SMALL)
  await p.exec()
  r.disconnect()
}

