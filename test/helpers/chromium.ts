// Headless Chromium for browser tests and the docs screenshot, driven by playwright-core (which
// ships no browser of its own). The browser comes from the npm package @sparticuz/chromium, a
// Chromium build packed inside the package, so `npm ci` is all a machine needs; CHROMIUM_PATH picks
// another binary. A browser that cannot be found or unpacked is an error with the reason in its
// message, never a skipped test.
//
// The package unpacks into os.tmpdir() itself (/tmp/chromium, /tmp/fonts...), and takes an existing
// /tmp/chromium as finished even while another process is still writing it: with test files in
// parallel workers, one would launch a half-written binary. So each unpack runs in a child process
// whose TMPDIR is a fresh staging dir, and the staging dir is renamed into place when complete
// (a rename either wins or finds the finished dir of another process). The dir is per version and
// per user: the browser writes next to its binary, and the package unpacks files mode 0700.

import { execFile, execFileSync } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { chromium, type Browser } from 'playwright-core'

const require = createRequire(import.meta.url)

/** The package's entry point and the dir it is unpacked into. */
function bundled(): { entry: string; dir: string } {
  const entry = require.resolve('@sparticuz/chromium')
  const pkg = JSON.parse(readFileSync(path.join(entry, '../../../package.json'), 'utf8')) as { version: string }
  const user = process.getuid?.() ?? os.userInfo().username
  return { entry, dir: path.join(os.tmpdir(), `redis-gateway-chromium-${pkg.version}-${user}`) }
}

// Run by the child, with TMPDIR set to the staging dir: unpacks the browser, fonts and SwiftShader.
const UNPACK = `require(process.argv[1]).executablePath().then((p) => process.stdout.write(p), (e) => { console.error(e); process.exit(1) })`

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Removes staging dirs left by unpacks whose process is gone (killed mid-unpack). */
function removeAbandoned(dir: string): void {
  const prefix = `${path.basename(dir)}.partial-`
  for (const name of readdirSync(path.dirname(dir))) {
    if (!name.startsWith(prefix)) continue
    const pid = Number(name.slice(prefix.length).split('-')[0])
    try {
      process.kill(pid, 0)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') rmSync(path.join(path.dirname(dir), name), { recursive: true, force: true })
    }
  }
}

/** Moves a finished staging dir into place, or drops it when another process got there first. */
function publish(staging: string, dir: string): string {
  // Fonts for machines without any (/etc/fonts): the package's own, found through this file.
  writeFileSync(path.join(staging, 'fonts.conf'), `<?xml version="1.0"?>\n<fontconfig><dir>${path.join(dir, 'fonts')}</dir><cachedir>${path.join(dir, 'fonts-cache')}</cachedir></fontconfig>\n`)
  try {
    renameSync(staging, dir)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error
    rmSync(staging, { recursive: true, force: true })
  }
  return path.join(dir, 'chromium')
}

function unpackError(dir: string, error: unknown): Error {
  const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim()
  return new Error(
    `could not unpack Chromium from the npm package @sparticuz/chromium (a dev dependency: npm ci installs it) into ${dir}: ` +
      `${stderr || (error as Error).message}. Set CHROMIUM_PATH to use another Chromium.`,
  )
}

function wanted(env: NodeJS.ProcessEnv): string | undefined {
  const file = env['CHROMIUM_PATH']
  if (file === undefined || file === '') return undefined
  if (!isExecutable(file)) throw new Error(`CHROMIUM_PATH=${file} is not an executable file`)
  return file
}

interface Unpack {
  readonly dir: string
  readonly staging: string
  readonly args: string[]
  readonly env: NodeJS.ProcessEnv
}

/** The binary's path when there is nothing to unpack, else a fresh staging dir and the child's command line. */
function prepare(env: NodeJS.ProcessEnv): string | Unpack {
  const override = wanted(env)
  if (override) return override
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the npm package @sparticuz/chromium holds a Linux x64 Chromium; on ${process.platform} ${process.arch} set CHROMIUM_PATH to a Chromium or Chrome`)
  }
  const { entry, dir } = bundled()
  if (isExecutable(path.join(dir, 'chromium'))) return path.join(dir, 'chromium')
  removeAbandoned(dir)
  const staging = mkdtempSync(`${dir}.partial-${process.pid}-`)
  return { dir, staging, args: ['-e', UNPACK, entry], env: { ...process.env, TMPDIR: staging } }
}

/** Absolute path of the Chromium binary, unpacking it first if needed; throws a clear error when that fails. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string {
  const job = prepare(env)
  if (typeof job === 'string') return job
  try {
    execFileSync(process.execPath, job.args, { env: job.env, stdio: ['ignore', 'pipe', 'pipe'] })
    return publish(job.staging, job.dir)
  } catch (error) {
    throw unpackError(job.dir, error)
  } finally {
    rmSync(job.staging, { recursive: true, force: true })
  }
}

/** findChromium() without blocking the event loop while unpacking (a gateway may be running in-process). */
async function chromiumPath(): Promise<string> {
  const job = prepare(process.env)
  if (typeof job === 'string') return job
  try {
    await promisify(execFile)(process.execPath, job.args, { env: job.env })
    return publish(job.staging, job.dir)
  } catch (error) {
    throw unpackError(job.dir, error)
  } finally {
    rmSync(job.staging, { recursive: true, force: true })
  }
}

/**
 * Launches headless Chromium. Not with the package's own `args`, which are for AWS Lambda:
 * --disable-web-security would switch off the CORS checks that cors.browser.test.ts asserts, and
 * --single-process / --no-zygote are Lambda workarounds that Chromium does not support elsewhere.
 * playwright-core adds --headless itself; --no-sandbox because CI and the dev machines run tests as
 * root (playwright-core adds it too). No GL flags: the pages use no WebGL, and Chromium falls back to
 * software rendering on its own.
 */
export async function launchChromium(): Promise<Browser> {
  const executablePath = await chromiumPath()
  const ownFonts = !process.env['CHROMIUM_PATH'] && !existsSync('/etc/fonts/fonts.conf')
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox'],
    ...(ownFonts ? { env: { ...process.env, FONTCONFIG_FILE: path.join(path.dirname(executablePath), 'fonts.conf') } } : {}),
  })
}
