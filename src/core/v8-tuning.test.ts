// tuneV8() turns V8's allocation-site pretenuring off in a running process (bench/README.md,
// "Tails", fifth pass): a child process keeps object literals alive across young collections, the
// pattern V8 pretenures, and its --trace-pretenuring output shows a decision without tuneV8() and
// none with it.

import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const MODULE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'v8-tuning.ts')

/** V8's pretenuring decisions in a process that allocates long-lived literals, after tuneV8() or not. */
function decisions(tuned: boolean): string[] {
  const script = `
    const { tuneV8 } = await import(${JSON.stringify(MODULE)})
    if (${tuned}) tuneV8()
    const keep = []
    for (let r = 0; r < 20; r++) for (let i = 0; i < 50_000; i++) keep.push([i, { x: i }])
    console.log('kept', keep.length)
  `
  const r = spawnSync(process.execPath, ['--trace-pretenuring', '--trace-pretenuring-statistics', '--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  expect(r.status, r.stderr).toBe(0)
  expect(r.stdout).toContain('kept 1000000')
  return r.stdout.split('\n').filter((l) => /pretenuring: AllocationSite\(0x[0-9a-f]+\).*=> (maybe tenure|tenure)/.test(l))
}

describe('tuneV8', () => {
  it('stops allocation-site pretenuring: the same allocations are pretenured without it, not with it', () => {
    expect(decisions(false).length, 'pretenuring decisions without tuneV8()').toBeGreaterThan(0)
    expect(decisions(true), 'pretenuring decisions after tuneV8()').toEqual([])
  }, 120_000)
})
