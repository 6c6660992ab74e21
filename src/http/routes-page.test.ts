// The routes page's safety properties that do not need a browser: the Content-Security-Policy
// hashes match the inline script and style actually served (so the page runs under it), and the
// script never turns strings into HTML. The browser test (test/integration/routes-page.browser.test.ts)
// checks the rendering itself.

import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ROUTES_PAGE_HEADERS, ROUTES_PAGE_HTML, ROUTES_PAGE_SCRIPT, ROUTES_PAGE_SIZE } from './routes-page.js'

const hash = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

describe('routes page', () => {
  it('has exactly one inline script and one inline style, both allowed by hash and nothing else', () => {
    const scripts = [...ROUTES_PAGE_HTML.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!)
    const styles = [...ROUTES_PAGE_HTML.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!)
    expect(scripts).toHaveLength(1)
    expect(styles).toHaveLength(1)
    expect(scripts[0]).toBe(ROUTES_PAGE_SCRIPT)
    const csp = ROUTES_PAGE_HEADERS['content-security-policy']!
    expect(csp).toContain(`script-src ${hash(scripts[0]!)};`)
    expect(csp).toContain(`style-src ${hash(styles[0]!)};`)
    expect(csp).toMatch(/^default-src 'none';/)
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/)
    // No external assets: every src/href is relative to the ops origin.
    expect(ROUTES_PAGE_HTML).not.toMatch(/(src|href)="(https?:)?\/\//)
  })

  it('builds the DOM with text nodes only', () => {
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', 'setAttribute(\'on']) {
      expect(ROUTES_PAGE_SCRIPT, sink).not.toContain(sink)
    }
  })

  it('asks for one page at a time: every fetch goes through the query with a limit', () => {
    expect(ROUTES_PAGE_SIZE).toBe(100)
    const fetches = [...ROUTES_PAGE_SCRIPT.matchAll(/fetch\(([^,]*),/g)].map((m) => m[1])
    expect(fetches).toEqual(['routesUrl()'])
    expect(ROUTES_PAGE_SCRIPT).toContain(`: ${ROUTES_PAGE_SIZE};`)
    for (const id of ['search', 'problems', 'prev', 'next', 'range', 'summary']) expect(ROUTES_PAGE_HTML, id).toContain(`id="${id}"`)
  })
})
