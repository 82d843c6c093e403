// The dashboard's API types are generated from the server's OpenAPI document: `openapi.json` (a
// server test keeps it equal to the server's /openapi.json) → `openapi.d.ts` (`npm run
// api-types`). This fails when the generated file is not what the document gives today.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript'
import { describe, expect, it } from 'vitest'

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url))

describe('the generated API types', () => {
  it('are what openapi.json gives (else run `npm run api-types`)', async () => {
    const ast = await openapiTS(JSON.parse(readFileSync(here('./openapi.json'), 'utf8')))
    const generated = COMMENT_HEADER + astToString(ast)
    expect(readFileSync(here('./openapi.d.ts'), 'utf8')).toBe(generated)
  }, 30_000)

  it('cover the answers the dashboard reads', () => {
    const doc = JSON.parse(readFileSync(here('./openapi.json'), 'utf8'))
    for (const name of ['TokenInfo', 'OwnTokens', 'AlertView', 'TransitionView', 'DeliveryView', 'TestResult']) {
      expect(doc.components.schemas[name], name).toBeDefined()
    }
  })
})
