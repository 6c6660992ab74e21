// Validates `GET /admin/routes` replies against the documented JSON Schema
// (docs/admin-routes.schema.json) with Ajv in strict mode, so the schema file itself must be
// valid JSON Schema 2020-12 (a misspelt keyword fails here) and the gateway must send exactly
// what it documents.

import { readFileSync } from 'node:fs'
import { Ajv2020 } from 'ajv/dist/2020.js'

export const ROUTES_SCHEMA_PATH = new URL('../../docs/admin-routes.schema.json', import.meta.url)

const schema = JSON.parse(readFileSync(ROUTES_SCHEMA_PATH, 'utf8')) as object
// Union types (["string", "null"]) are standard JSON Schema; strict mode only asks to allow them.
// Formats are annotations only here (no ajv-formats); generatedAt is checked by hand below.
const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true, validateFormats: false })
const validate = ajv.compile(schema)

/**
 * Throws, naming every violation, unless `view` matches the documented schema. `paged`: the reply
 * to a query must carry `page` and agree with it (the counts add up, `returned` is what came, its
 * groups count their members); the full view must carry neither (it stays as it was before queries
 * existed). Unsaid: either.
 */
export function assertRoutesView(view: unknown, opts: { paged?: boolean } = {}): void {
  if (!validate(view)) {
    throw new Error(`/admin/routes reply does not match docs/admin-routes.schema.json:\n${ajv.errorsText(validate.errors, { separator: '\n' })}`)
  }
  const v = view as {
    generatedAt: string
    instances: { name: string }[]
    groups: { name: string; members: { takingTraffic: boolean }[]; memberCount?: number; membersTakingTraffic?: number }[]
    page?: { total: number; matched: number; offset: number; returned: number; next: string | null; health: Record<string, number> }
  }
  const at = v.generatedAt
  if (new Date(at).toISOString() !== at) throw new Error(`generatedAt is not an ISO 8601 UTC time: ${at}`)
  if (opts.paged === false && v.page !== undefined) throw new Error('the full view (no query) carries a page')
  if (opts.paged === true && v.page === undefined) throw new Error('the reply to a query carries no page')
  const p = v.page
  const counted = v.groups.filter((g) => g.memberCount !== undefined || g.membersTakingTraffic !== undefined)
  if (p === undefined) {
    if (counted.length > 0) throw new Error(`the full view's groups carry memberCount: ${counted.map((g) => g.name).join(', ')}`)
    return
  }
  const problems: string[] = []
  for (const g of v.groups) {
    if (g.memberCount === undefined || g.membersTakingTraffic === undefined) problems.push(`group ${g.name} has no memberCount or membersTakingTraffic`)
    else if (g.members.length > g.memberCount || g.members.filter((m) => m.takingTraffic).length > g.membersTakingTraffic || g.membersTakingTraffic > g.memberCount) {
      problems.push(`group ${g.name} lists more members than it counts`)
    }
  }
  if (p.returned !== v.instances.length) problems.push(`returned ${p.returned} but ${v.instances.length} instances came`)
  if (p.offset + p.returned > p.matched) problems.push(`offset ${p.offset} + returned ${p.returned} > matched ${p.matched}`)
  if (p.matched > p.total) problems.push(`matched ${p.matched} > total ${p.total}`)
  const byHealth = Object.values(p.health).reduce((a, b) => a + b, 0)
  if (byHealth !== p.total) problems.push(`health counts add up to ${byHealth}, not total ${p.total}`)
  if (p.next !== null && p.next !== v.instances.at(-1)?.name) problems.push(`next ${p.next} is not the last instance returned`)
  if (p.next !== null && p.offset + p.returned >= p.matched) problems.push(`next ${p.next} although this page ends the matches`)
  const names = v.instances.map((i) => i.name)
  if (names.some((n, i) => i > 0 && !(names[i - 1]! < n))) problems.push(`instances not sorted by name: ${names.join(', ')}`)
  if (problems.length > 0) throw new Error(`/admin/routes page does not add up:\n${problems.join('\n')}`)
}
