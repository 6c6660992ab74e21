// Tests for live config reload: edits, rename-swaps and ConfigMap-style symlink swaps are seen,
// bad edits are rejected with the last good config kept, and unchanged content is not re-parsed.
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { waitFor } from '../../test/helpers/wait.js'
import { ConfigError, loadConfig } from './load.js'
import type { GatewayConfig } from './schema.js'
import { ConfigWatcher } from './watch.js'

interface LogLine {
  level: number
  msg: string
}

const level = (cfg: GatewayConfig) => cfg.log.level

describe('ConfigWatcher', () => {
  let dir: string
  let file: string
  let logs: LogLine[]
  let changes: GatewayConfig[]
  let watcher: ConfigWatcher | undefined

  const logger = () => pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) })

  // A long poll interval proves the directory watch alone sees the change.
  const make = (extra: Partial<ConstructorParameters<typeof ConfigWatcher>[0]> = {}) => {
    watcher = new ConfigWatcher({
      path: file,
      env: {},
      logger: logger(),
      onChange: (cfg) => changes.push(cfg),
      debounceMs: 20,
      pollMs: 60_000,
      ...extra,
    })
    return watcher
  }

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gw-watch-'))
    file = path.join(dir, 'gateway.yaml')
    logs = []
    changes = []
    writeFileSync(file, 'log: { level: info }\n')
  })

  afterEach(() => {
    watcher?.stop()
    watcher = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  it('starts nothing in the constructor and loads on start()', () => {
    const w = make()
    expect(w.attempts).toBe(0)
    expect(() => w.current()).toThrow(/before start/)
    expect(level(w.start())).toBe('info')
    expect(w.attempts).toBe(1)
    expect(changes).toEqual([])
  })

  it('applies an edit, rejects a bad one keeping the last good config, then applies the fix', async () => {
    const w = make()
    w.start()

    writeFileSync(file, 'log: { level: debug }\n')
    await waitFor(() => changes.length === 1, { message: 'the first change' })
    expect(level(changes[0] as GatewayConfig)).toBe('debug')
    expect(w.reloads).toBe(1)

    writeFileSync(file, 'log: { levle: warn }\n')
    await waitFor(() => w.rejected === 1, { message: 'the bad edit to be rejected' })
    expect(w.lastError).toBeInstanceOf(ConfigError)
    expect(w.lastError?.message).toContain('log.levle: unknown key')
    expect(level(w.current())).toBe('debug')
    expect(changes).toHaveLength(1)
    const warn = logs.find((l) => l.level === 40)
    expect(warn?.msg).toContain('keeping the last good config')
    expect(warn?.msg).toContain('log.levle: unknown key')

    writeFileSync(file, 'log: { level: warn }\n')
    await waitFor(() => changes.length === 2, { message: 'the fix' })
    expect(level(w.current())).toBe('warn')
    expect(w.lastError).toBeNull()
  })

  it('sees a rename-swap (write elsewhere, rename over the file)', async () => {
    const w = make()
    w.start()
    const tmp = path.join(dir, '.gateway.yaml.swp')
    writeFileSync(tmp, 'log: { level: error }\n')
    renameSync(tmp, file)
    await waitFor(() => changes.length === 1, { message: 'the swapped file' })
    expect(level(w.current())).toBe('error')
  })

  it('sees a Kubernetes ConfigMap swap (..data symlink replaced)', async () => {
    rmSync(file)
    mkdirSync(path.join(dir, '..2024_01'))
    writeFileSync(path.join(dir, '..2024_01', 'gateway.yaml'), 'log: { level: info }\n')
    symlinkSync('..2024_01', path.join(dir, '..data'))
    symlinkSync(path.join('..data', 'gateway.yaml'), file)
    const w = make()
    w.start()

    mkdirSync(path.join(dir, '..2024_02'))
    writeFileSync(path.join(dir, '..2024_02', 'gateway.yaml'), 'log: { level: trace }\n')
    symlinkSync('..2024_02', path.join(dir, '..data_tmp'))
    renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'))
    await waitFor(() => changes.length === 1, { message: 'the ConfigMap swap' })
    expect(level(w.current())).toBe('trace')
  })

  it('does not re-parse unchanged content, and does not report comment-only edits as changes', () => {
    const w = make()
    w.start()
    writeFileSync(file, 'log: { level: info }\n')
    w.check()
    expect(w.attempts).toBe(1)

    writeFileSync(file, '# a comment\nlog: { level: info }\n')
    w.check()
    expect(w.attempts).toBe(2)
    expect(w.reloads).toBe(0)
    expect(changes).toEqual([])
  })

  it('does not re-parse or re-log a bad file that stays the same', () => {
    const w = make()
    w.start()
    writeFileSync(file, 'log: [\n')
    w.check()
    w.check()
    expect(w.attempts).toBe(2)
    expect(w.rejected).toBe(1)
    expect(logs.filter((l) => l.level === 40)).toHaveLength(1)
  })

  it('notices a changed token file by polling', async () => {
    const secrets = path.join(dir, 'secrets')
    mkdirSync(secrets)
    writeFileSync(path.join(secrets, 'app'), 'one\n')
    writeFileSync(file, 'auth: { tokens: [{ name: app, tokenFile: secrets/app }] }\n')
    const w = make({ pollMs: 30 })
    const first = w.start().auth.tokens[0]?.sha256
    writeFileSync(path.join(secrets, 'app'), 'two\n')
    await waitFor(() => changes.length === 1, { message: 'the new token' })
    expect(w.current().auth.tokens[0]?.sha256).not.toBe(first)
  })

  it('throws on a bad file at start without an initial config', () => {
    writeFileSync(file, 'nope: 1\n')
    expect(() => make().start()).toThrow(ConfigError)
  })

  it('keeps the initial config when the file is bad at start', () => {
    const initial = loadConfig({ text: 'log: { level: error }', env: {} })
    writeFileSync(file, 'nope: 1\n')
    const w = make({ initial })
    expect(w.start()).toBe(initial)
    expect(w.rejected).toBe(1)
  })

  it('catches up at start with an edit made after the initial load', () => {
    const initial = loadConfig({ path: file, env: {} })
    writeFileSync(file, 'log: { level: fatal }\n')
    const w = make({ initial })
    expect(level(w.start())).toBe('fatal')
    expect(changes).toHaveLength(1)
  })

  it('does not call onChange at start when the initial config is current', () => {
    const w = make({ initial: loadConfig({ path: file, env: {} }) })
    w.start()
    expect(changes).toEqual([])
    expect(w.reloads).toBe(0)
  })

  it('with the initial load\'s file hashes, start() parses nothing when no file changed since', () => {
    const files = new Map<string, string | null>()
    const initial = loadConfig({ path: file, env: {}, onFileRead: (p, h) => files.set(p, h) })
    const w = make({ initial, initialFiles: files })
    expect(w.start()).toBe(initial)
    expect(w.attempts).toBe(0)
    expect(changes).toEqual([])
  })

  it('with the initial load\'s file hashes, start() still catches up with an edit made since', () => {
    const files = new Map<string, string | null>()
    const initial = loadConfig({ path: file, env: {}, onFileRead: (p, h) => files.set(p, h) })
    writeFileSync(file, 'log: { level: fatal }\n')
    const w = make({ initial, initialFiles: files })
    expect(level(w.start())).toBe('fatal')
    expect(w.attempts).toBe(1)
    expect(changes).toHaveLength(1)
  })

  it('survives an onChange that throws', async () => {
    const w = make({
      onChange: () => {
        throw new Error('boom')
      },
    })
    w.start()
    writeFileSync(file, 'log: { level: debug }\n')
    await waitFor(() => w.reloads === 1, { message: 'the reload' })
    expect(logs.some((l) => l.level === 50 && l.msg === 'config change handler failed')).toBe(true)
    expect(level(w.current())).toBe('debug')
  })

  it('keeps the last good config when the file disappears', async () => {
    const w = make({ pollMs: 30 })
    w.start()
    rmSync(file)
    await waitFor(() => w.rejected === 1, { message: 'the missing file to be reported' })
    expect(w.lastError?.message).toContain('no such file')
    expect(level(w.current())).toBe('info')
    writeFileSync(file, 'log: { level: warn }\n')
    await waitFor(() => changes.length === 1, { message: 'the file to come back' })
  })
})
