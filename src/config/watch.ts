// Watches the config file and applies valid edits live. A bad edit is logged and the last good
// config stays in force: a typo in a running gateway's config must never take it down.
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { ConfigError, loadConfig } from './load.js'
import { sha256Hex, type GatewayConfig } from './schema.js'

export interface ConfigWatcherOptions {
  /** The config file. Its directory is watched, so rename-swaps and ConfigMap symlink swaps are seen. */
  path: string
  env?: NodeJS.ProcessEnv
  logger: Logger
  /** Called with each new valid config that differs from the current one. */
  onChange: (cfg: GatewayConfig) => void
  /** Called when an edit is rejected (the last good config stays); for metrics. */
  onReject?: (err: Error) => void
  /** The config already loaded at start-up; without it start() loads the file and throws if it is invalid. */
  initial?: GatewayConfig
  /**
   * The files `initial` was read from, with their SHA-256 (loadConfig's onFileRead): start() then
   * parses again only when one of them changed since. Without it, start() parses the file again
   * (at 5,000 instances, a turn of hundreds of milliseconds just after the listeners are up).
   */
  initialFiles?: ReadonlyMap<string, string | null>
  /** Quiet time after a file event before reading, so a burst of writes is read once. */
  debounceMs?: number
  /** Interval of the fallback content check; also how token and password files are noticed. */
  pollMs?: number
}

export const WATCH_DEFAULTS = { debounceMs: 100, pollMs: 1000 } as const

export class ConfigWatcher {
  private readonly opts: ConfigWatcherOptions
  private readonly debounceMs: number
  private readonly pollMs: number
  private cfg: GatewayConfig | undefined
  /** Every file the last load read (config and secrets), by absolute path: SHA-256 of content, or null if unreadable. */
  private files = new Map<string, string | null>()
  private dirWatcher: FSWatcher | null = null
  private watchBroken = false
  private debounceTimer: NodeJS.Timeout | null = null
  private pollTimer: NodeJS.Timeout | null = null
  private running = false
  private attemptCount = 0
  private reloadCount = 0
  private rejectCount = 0
  private error: Error | null = null

  constructor(opts: ConfigWatcherOptions) {
    this.opts = opts
    this.debounceMs = opts.debounceMs ?? WATCH_DEFAULTS.debounceMs
    this.pollMs = opts.pollMs ?? WATCH_DEFAULTS.pollMs
    this.cfg = opts.initial
  }

  /** Begins watching and returns the config in force. Throws ConfigError only without `initial` and with a bad file. */
  start(): GatewayConfig {
    if (this.running) return this.current()
    if (this.cfg === undefined) this.cfg = this.load()
    // With an initial config, reading now also catches an edit made since it was loaded.
    else if (this.opts.initialFiles === undefined) this.attempt()
    else {
      this.files = new Map(this.opts.initialFiles)
      this.check()
    }
    this.running = true
    this.watchDir()
    this.pollTimer = setInterval(() => this.poll(), this.pollMs)
    this.pollTimer.unref()
    return this.current()
  }

  stop(): void {
    this.running = false
    this.dirWatcher?.close()
    this.dirWatcher = null
    if (this.debounceTimer) clearTimeout(this.debounceTimer)
    if (this.pollTimer) clearInterval(this.pollTimer)
    this.debounceTimer = null
    this.pollTimer = null
  }

  /** The config in force: the last valid one. */
  current(): GatewayConfig {
    if (this.cfg === undefined) throw new Error('ConfigWatcher.current() called before start()')
    return this.cfg
  }

  /** Re-reads now if any file changed (e.g. on SIGHUP). Never throws. */
  check(): void {
    if (this.changed()) this.attempt()
  }

  /** How many times the config was parsed (unchanged files are not parsed). */
  get attempts(): number {
    return this.attemptCount
  }

  /** How many new configs were applied (onChange calls). */
  get reloads(): number {
    return this.reloadCount
  }

  /** How many edits were rejected as invalid. */
  get rejected(): number {
    return this.rejectCount
  }

  /** Why the file now on disk is not in force, or null when it is. */
  get lastError(): Error | null {
    return this.error
  }

  private load(): GatewayConfig {
    const files = new Map<string, string | null>()
    this.attemptCount++
    try {
      return loadConfig({ path: this.opts.path, env: this.opts.env, onFileRead: (p, h) => files.set(p, h) })
    } finally {
      // Recorded even on failure, so the same bad content is not re-parsed and re-logged each poll.
      this.files = files
    }
  }

  private attempt(): void {
    let cfg: GatewayConfig
    try {
      cfg = this.load()
    } catch (err) {
      this.error = err as Error
      this.rejectCount++
      const fields = err instanceof ConfigError ? { issues: err.issues } : { err }
      this.opts.logger.warn(fields, `config reload rejected, keeping the last good config: ${(err as Error).message}`)
      this.opts.onReject?.(err as Error)
      return
    }
    this.error = null
    // Comment-only edits and files rewritten with the same values are not changes.
    if (this.cfg !== undefined && JSON.stringify(cfg) === JSON.stringify(this.cfg)) return
    this.cfg = cfg
    this.reloadCount++
    this.opts.logger.info({ path: this.opts.path }, 'config reloaded')
    try {
      this.opts.onChange(cfg)
    } catch (err) {
      this.opts.logger.error({ err }, 'config change handler failed')
    }
  }

  private changed(): boolean {
    if (this.files.size === 0) return true
    for (const [file, hash] of this.files) {
      if (fileHash(file) !== hash) return true
    }
    return false
  }

  private poll(): void {
    if (!this.running) return
    if (this.dirWatcher === null) this.watchDir()
    this.check()
  }

  private schedule(): void {
    if (!this.running) return
    if (this.debounceTimer) clearTimeout(this.debounceTimer)
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null
      if (this.running) this.check()
    }, this.debounceMs)
    this.debounceTimer.unref()
  }

  // Watching the file itself would lose track after a rename-swap (the watched inode is gone);
  // the directory survives, and any event in it is cheap to check thanks to the content hash.
  private watchDir(): void {
    const dir = path.dirname(path.resolve(this.opts.path))
    try {
      const w = watch(dir, { persistent: false }, () => this.schedule())
      w.on('error', (err) => {
        this.opts.logger.warn({ err, dir }, 'config directory watch failed; polling until it can be watched again')
        w.close()
        if (this.dirWatcher === w) this.dirWatcher = null
        this.watchBroken = true
      })
      this.dirWatcher = w
      if (this.watchBroken) this.opts.logger.info({ dir }, 'config directory watched again')
      this.watchBroken = false
    } catch (err) {
      // Polling still covers changes; say so once, not on every poll.
      if (!this.watchBroken) this.opts.logger.warn({ err, dir }, 'cannot watch the config directory; polling only')
      this.watchBroken = true
    }
  }
}

function fileHash(file: string): string | null {
  try {
    return sha256Hex(readFileSync(file, 'utf8'))
  } catch {
    return null
  }
}
