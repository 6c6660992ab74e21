// The layer check (.dependency-cruiser.cjs) run on the real tree and on small trees that break
// each rule, so a rule that stopped matching (a renamed folder, a typo in a path) fails here
// instead of passing everything.

import { execFile } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, test } from 'vitest'

const run = promisify(execFile)
const repo = path.resolve(import.meta.dirname, '../..')
const bin = path.join(repo, 'node_modules/.bin/depcruise')
const config = path.join(repo, '.dependency-cruiser.cjs')

interface Violation {
  readonly rule: { readonly name: string }
  readonly from: string
  readonly to: string
}

async function violations(cwd: string): Promise<Violation[]> {
  // depcruise exits non-zero when it finds violations; the JSON report is on stdout either way.
  const out = await run(bin, ['src', '--config', config, '--output-type', 'json'], { cwd, maxBuffer: 64 << 20 }).catch(
    (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
  )
  return (JSON.parse(out.stdout) as { summary: { violations: Violation[] } }).summary.violations
}

const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** A throwaway tree: `files` maps paths (from the tree's root) to their source. */
function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'layers-'))
  dirs.push(dir)
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' } }))
  for (const [p, src] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, p)), { recursive: true })
    writeFileSync(path.join(dir, p), src)
  }
  return dir
}

describe('layer check', () => {
  test('the source tree has no violations', async () => {
    expect(await violations(repo)).toEqual([])
  }, 60_000)

  test('a lower layer importing a higher one is refused; the other way is fine', async () => {
    const v = await violations(
      tree({
        'src/routing/table.ts': "import { x } from '../upstream/pool.js'\nexport const t = x\n",
        'src/upstream/pool.ts': "import type { Role } from '../core/role.js'\nexport const x: Role | 1 = 1\n",
        'src/core/role.ts': "export type Role = 'primary'\n",
      }),
    )
    expect(v.map((x) => [x.rule.name, x.from, x.to])).toEqual([['layer-routing', 'src/routing/table.ts', 'src/upstream/pool.ts']])
  }, 60_000)

  test('a type-only import counts, and the composition root is above every layer', async () => {
    const v = await violations(
      tree({
        'src/core/errors.ts': "import type { Gateway } from '../gateway.js'\nexport type E = Gateway\n",
        'src/gateway.ts': "export interface Gateway { readonly up: boolean }\n",
      }),
    )
    expect(v.map((x) => x.rule.name)).toEqual(['layer-core'])
  }, 60_000)

  test('cycles inside a layer, files outside any layer, and test helpers in shipped code are refused', async () => {
    const v = await violations(
      tree({
        'src/upstream/a.ts': "import { b } from './b.js'\nexport const a = () => b\n",
        'src/upstream/b.ts': "import { a } from './a.js'\nexport const b = () => a\n",
        'src/stray.ts': "import { a } from './upstream/a.js'\nexport const s = a\n",
        'src/http/x.ts': "import { h } from '../../test/helpers/h.js'\nexport const x = h\n",
        'test/helpers/h.ts': 'export const h = 1\n',
      }),
    )
    expect(new Set(v.map((x) => x.rule.name))).toEqual(new Set(['no-circular', 'layered-folders-only', 'no-test-code-in-src']))
  }, 60_000)
})
