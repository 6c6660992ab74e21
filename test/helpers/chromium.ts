// Headless Chromium for browser tests and the docs screenshot: Debian's `chromium` package driven
// by playwright-core (which ships no browser of its own). A missing browser is an error with the
// fix in its message, never a skipped test. CHROMIUM_PATH picks another binary.

import { accessSync, constants } from 'node:fs'
import path from 'node:path'
import { chromium, type Browser } from 'playwright-core'

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser']

/** Absolute path of the Chromium binary; throws a clear error when none is installed. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string {
  const wanted = env['CHROMIUM_PATH']
  const onPath = (env['PATH'] ?? '').split(path.delimiter).filter(Boolean).flatMap((d) => [path.join(d, 'chromium'), path.join(d, 'chromium-browser')])
  const candidates = wanted ? [wanted] : [...CANDIDATES, ...onPath]
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {
      // next
    }
  }
  throw new Error(
    wanted
      ? `CHROMIUM_PATH=${wanted} is not an executable file`
      : `Chromium not found (looked for ${CANDIDATES.join(', ')} and chromium on PATH): the browser tests need ` +
          "Debian's chromium package: apt-get install -y chromium (.ci/run installs it), or set CHROMIUM_PATH.",
  )
}

/** Launches headless Chromium. --no-sandbox: CI and the dev machines run tests as root. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: findChromium(), headless: true, args: ['--no-sandbox'] })
}
