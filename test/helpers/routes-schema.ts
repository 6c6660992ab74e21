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

/** Throws, naming every violation, unless `view` matches the documented schema. */
export function assertRoutesView(view: unknown): void {
  if (!validate(view)) {
    throw new Error(`/admin/routes reply does not match docs/admin-routes.schema.json:\n${ajv.errorsText(validate.errors, { separator: '\n' })}`)
  }
  const at = (view as { generatedAt: string }).generatedAt
  if (new Date(at).toISOString() !== at) throw new Error(`generatedAt is not an ISO 8601 UTC time: ${at}`)
}
