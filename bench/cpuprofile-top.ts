// Text flame graph of a V8 .cpuprofile (from `node --cpu-prof`): the top functions by self time,
// by inclusive time, self time per module (our files, each npm package, Node internals, GC), and
// optionally a folded-stacks file for flamegraph.pl / speedscope / inferno.
// Usage: npx tsx bench/cpuprofile-top.ts <file.cpuprofile> [--top N] [--folded out.folded] [--json]
//        [--from MS --to MS]  (only samples in that window, ms from the start of the profile)

import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath, pathToFileURL } from 'node:url'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  hitCount?: number
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
  timeDeltas?: number[]
}

export interface Entry {
  name: string
  where: string
  module: string
  selfPct: number
  totalPct: number
  selfMs: number
}

export interface Summary {
  durationMs: number
  samples: number
  /** Share of samples in which the process was busy (not idle). */
  busyPct: number
  bySelf: Entry[]
  byTotal: Entry[]
  byModule: { module: string; selfPct: number }[]
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

function moduleOf(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)'
  if (url.startsWith('node:')) {
    // node:internal/deps/undici/undici -> node:undici (fetch's Request/Response/Headers),
    // node:internal/http/... -> node:http, node:internal/streams/writable -> node:streams
    const parts = url.replace(/^node:(internal\/)?/, '').split('/')
    if (parts[0] === 'deps') return `node:${parts[1]}`
    return `node:${parts[0]!.replace(/^_/, '').replace(/_.*$/, '').replace(/\.js$/, '')}`
  }
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  const p = url.startsWith('file://') ? fileURLToPath(url) : url
  const rel = path.relative(ROOT, p)
  return rel.startsWith('..') ? p : rel.replace(/^dist\//, '')
}

function frameKey(f: CallFrame): string {
  return `${f.functionName || '(anonymous)'} ${f.url}:${f.lineNumber + 1}:${f.columnNumber + 1}`
}

function shortWhere(f: CallFrame): string {
  if (f.url === '') return ''
  return `${moduleOf(f.url, f.functionName)}:${f.lineNumber + 1}`
}

/**
 * `window`: only samples between these offsets (ms) from the start of the profile, e.g. the
 * measured load and not the start-up.
 */
export function summarise(profile: Profile, top = 30, window?: { fromMs: number; toMs: number }): Summary & { folded: string } {
  const byId = new Map<number, ProfileNode>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // Self time per node from samples and time deltas (more exact than hitCount x interval).
  const selfUs = new Map<number, number>()
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  let t = 0
  let counted = 0
  for (let i = 0; i < samples.length; i++) {
    t += deltas[i] ?? 0
    if (window && (t < window.fromMs * 1000 || t > window.toMs * 1000)) continue
    counted++
    const dt = deltas[i + 1] ?? 0
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, dt))
  }
  const allUs = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1
  let idleUs = 0
  for (const [id, us] of selfUs) if (byId.get(id)!.callFrame.functionName === '(idle)') idleUs += us
  // Shares are of busy time: idle samples are left out of every list.
  const totalUs = allUs - idleUs || 1
  const self = new Map<string, { f: CallFrame; us: number }>()
  const total = new Map<string, { f: CallFrame; us: number }>()
  const modules = new Map<string, number>()
  const folded = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!
    const f = n.callFrame
    if (f.functionName === '(idle)') continue
    const k = frameKey(f)
    const e = self.get(k) ?? { f, us: 0 }
    e.us += us
    self.set(k, e)
    const mod = moduleOf(f.url, f.functionName)
    modules.set(mod, (modules.get(mod) ?? 0) + us)
    // Walk to the root: inclusive time once per distinct function on the stack; folded stack.
    const seen = new Set<string>()
    const stack: string[] = []
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame
      if (cf.functionName === '(root)') break
      const ck = frameKey(cf)
      stack.push(`${cf.functionName || '(anonymous)'} ${shortWhere(cf)}`.trim().replace(/;/g, ','))
      if (seen.has(ck)) continue
      seen.add(ck)
      const t = total.get(ck) ?? { f: cf, us: 0 }
      t.us += us
      total.set(ck, t)
    }
    const line = stack.reverse().join(';')
    folded.set(line, (folded.get(line) ?? 0) + us)
  }
  const entry = (e: { f: CallFrame; us: number }, selfMap: boolean): Entry => ({
    name: e.f.functionName || '(anonymous)',
    where: shortWhere(e.f),
    module: moduleOf(e.f.url, e.f.functionName),
    selfPct: (100 * (selfMap ? e.us : self.get(frameKey(e.f))?.us ?? 0)) / totalUs,
    totalPct: (100 * (selfMap ? total.get(frameKey(e.f))?.us ?? e.us : e.us)) / totalUs,
    selfMs: (selfMap ? e.us : self.get(frameKey(e.f))?.us ?? 0) / 1000,
  })
  const bySelf = [...self.values()].sort((a, b) => b.us - a.us).slice(0, top).map((e) => entry(e, true))
  const byTotal = [...total.values()]
    .filter((e) => !e.f.functionName.startsWith('('))
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => entry(e, false))
  const byModule = [...modules.entries()].sort((a, b) => b[1] - a[1]).map(([module, us]) => ({ module, selfPct: (100 * us) / totalUs }))
  return {
    durationMs: window ? window.toMs - window.fromMs : (profile.endTime - profile.startTime) / 1000,
    samples: counted,
    busyPct: (100 * (allUs - idleUs)) / allUs,
    bySelf,
    byTotal,
    byModule,
    folded: [...folded.entries()].map(([k, us]) => `${k} ${Math.round(us)}`).join('\n') + '\n',
  }
}

export function format(s: Summary, top: number): string {
  const out: string[] = []
  out.push(`${s.samples} samples over ${(s.durationMs / 1000).toFixed(1)} s; busy ${s.busyPct.toFixed(1)}% of the time; shares below are of the busy time`)
  out.push('', `top ${top} by self time:`, '   self%  total%  function  (where)')
  for (const e of s.bySelf) out.push(`  ${e.selfPct.toFixed(2).padStart(6)}  ${e.totalPct.toFixed(2).padStart(6)}  ${e.name}  ${e.where}`)
  out.push('', `top ${top} by inclusive time:`, '  total%   self%  function  (where)')
  for (const e of s.byTotal) out.push(`  ${e.totalPct.toFixed(2).padStart(6)}  ${e.selfPct.toFixed(2).padStart(6)}  ${e.name}  ${e.where}`)
  out.push('', 'self time by module:')
  for (const m of s.byModule.slice(0, 40)) out.push(`  ${m.selfPct.toFixed(2).padStart(6)}  ${m.module}`)
  return out.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values, positionals } = parseArgs({
    options: {
      top: { type: 'string', default: '30' },
      folded: { type: 'string' },
      json: { type: 'boolean', default: false },
      from: { type: 'string' },
      to: { type: 'string' },
    },
    allowPositionals: true,
  })
  const file = positionals[0]
  if (!file) {
    console.error('usage: cpuprofile-top.ts <file.cpuprofile> [--top N] [--folded out.folded] [--json]')
    process.exit(2)
  }
  const top = Number(values.top)
  const window = values.from !== undefined ? { fromMs: Number(values.from), toMs: Number(values.to ?? Infinity) } : undefined
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, top, window)
  if (values.folded) writeFileSync(values.folded, s.folded)
  if (values.json) {
    const { folded: _f, ...rest } = s
    console.log(JSON.stringify(rest, null, 2))
  } else console.log(format(s, top))
}
