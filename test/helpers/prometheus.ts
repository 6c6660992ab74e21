// A real Prometheus server for tests: Debian's `prometheus` binary (.ci/run installs the package
// for promtool; the server comes with it) on a free loopback port, with a config and rule files
// the test writes into a temp dir that also holds the TSDB. Query it through its HTTP API.
//
// The process never outlives the test process (process-guard.ts), and stop() removes the dir.
// A missing binary is an error, not a skip: CI installs it, so its absence is a broken setup.

import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants as fsConstants, rmSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import { freePort } from './ports.js'
import { guardChild, unrefStream } from './process-guard.js'
import { waitFor } from './wait.js'

export const PROMETHEUS_DEFAULTS = {
  /** Looked up in this order: $PROMETHEUS_BINARY, `prometheus` on PATH, then Debian's path. */
  debianBinary: '/usr/bin/prometheus',
  startTimeoutMs: 20_000,
  stopTimeoutMs: 5_000,
  portAttempts: 3,
  logLines: 200,
} as const

/** Absolute path of the prometheus binary; throws naming how to install it when there is none. */
export function findPrometheus(): string {
  const fromEnv = process.env['PROMETHEUS_BINARY']
  const candidates = [
    ...(fromEnv ? [fromEnv] : []),
    ...(process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, 'prometheus')),
    PROMETHEUS_DEFAULTS.debianBinary,
  ]
  for (const file of candidates) {
    try {
      accessSync(file, fsConstants.X_OK)
      return file
    } catch {
      // Next candidate.
    }
  }
  throw new Error(
    'prometheus not found ($PROMETHEUS_BINARY, PATH, /usr/bin/prometheus): this test runs the dashboard and alerts ' +
      'against a real Prometheus server. Install it (Debian/Ubuntu: apt-get install prometheus, as .ci/run does ' +
      'through ensure_package; keep its postinst from starting the system service with a policy-rc.d that exits 101).',
  )
}

/** One sample of an instant query: its labels and [unix time, value as text]. */
export interface PromSample {
  readonly metric: Record<string, string>
  readonly value?: [number, string]
  readonly values?: [number, string][]
}

export interface QueryResult {
  readonly status: 'success' | 'error'
  readonly error?: string
  readonly errorType?: string
  readonly resultType?: 'vector' | 'matrix' | 'scalar' | 'string'
  /** vector and matrix: the series; scalar and string: one pseudo-sample holding the value. */
  readonly result: PromSample[]
  readonly warnings?: string[]
}

export interface PromRule {
  readonly name: string
  readonly query: string
  readonly type: 'alerting' | 'recording'
  readonly health: 'ok' | 'err' | 'unknown'
  readonly lastError?: string
  readonly lastEvaluation: string
  readonly state?: string
}

export interface PromRuleGroup {
  readonly name: string
  readonly file: string
  readonly rules: PromRule[]
}

export interface PromTarget {
  readonly labels: Record<string, string>
  readonly scrapePool: string
  readonly health: 'up' | 'down' | 'unknown'
  readonly lastError: string
  readonly lastScrape: string
}

export interface StartPrometheusOptions {
  /** prometheus.yml as an object; `rule_files` is added for `rules` (file names inside the dir). */
  config: Record<string, unknown>
  /** Rule files by name (e.g. `{ 'rules.yaml': { groups } }`), written next to the config. */
  rules?: Record<string, unknown>
  /** Extra command-line flags. */
  args?: string[]
}

/** Keeps the last lines of the server's log for error messages. */
class LogTail {
  private readonly lines: string[] = []
  private partial = ''
  push(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n')
    this.partial = parts.pop() ?? ''
    this.lines.push(...parts)
    if (this.lines.length > PROMETHEUS_DEFAULTS.logLines) this.lines.splice(0, this.lines.length - PROMETHEUS_DEFAULTS.logLines)
  }
  text(): string {
    return [...this.lines, this.partial].filter(Boolean).join('\n')
  }
}

export class PrometheusServer {
  private done = false
  private readonly exited: Promise<void>
  private readonly release: () => void

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly dir: string,
    private readonly log: LogTail,
  ) {
    let release = (): void => {}
    if (child.pid !== undefined) release = guardChild(this, child.pid)
    this.release = release
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        this.done = true
        this.release()
        resolve()
      })
      child.once('error', () => {
        if (child.pid === undefined) {
          this.done = true
          resolve()
        }
      })
    })
  }

  /** Writes the config and rules into a new temp dir, starts prometheus and waits for /-/ready. */
  static async start(opts: StartPrometheusOptions): Promise<PrometheusServer> {
    const binary = findPrometheus()
    const dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-prometheus-'))
    try {
      const ruleFiles = Object.keys(opts.rules ?? {})
      for (const [name, content] of Object.entries(opts.rules ?? {})) await writeFile(path.join(dir, name), stringify(content))
      const config = { ...opts.config, ...(ruleFiles.length > 0 ? { rule_files: ruleFiles.map((f) => path.join(dir, f)) } : {}) }
      const configFile = path.join(dir, 'prometheus.yml')
      await writeFile(configFile, stringify(config))
      for (let attempt = 1; ; attempt++) {
        const port = await freePort()
        const log = new LogTail()
        const child = spawn(
          binary,
          [
            `--config.file=${configFile}`,
            `--storage.tsdb.path=${path.join(dir, 'data')}`,
            `--web.listen-address=127.0.0.1:${port}`,
            '--log.level=warn',
            ...(opts.args ?? []),
          ],
          { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
        )
        child.stdout?.on('data', (c: Buffer) => log.push(c))
        child.stderr?.on('data', (c: Buffer) => log.push(c))
        child.unref()
        unrefStream(child.stdout)
        unrefStream(child.stderr)
        const server = new PrometheusServer(child, `http://127.0.0.1:${port}`, dir, log)
        try {
          await waitFor(
            async () => {
              if (server.done) throw new Error(`prometheus exited:\n${log.text()}`)
              return (await fetch(`${server.url}/-/ready`)).status === 200
            },
            { timeoutMs: PROMETHEUS_DEFAULTS.startTimeoutMs, intervalMs: 100, message: `prometheus on ${server.url} to be ready` },
          )
          return server
        } catch (error) {
          await server.kill()
          const inUse = /address already in use/i.test(log.text())
          if (!inUse || attempt >= PROMETHEUS_DEFAULTS.portAttempts) {
            throw new Error(`prometheus (${binary}) did not start: ${(error as Error).message}\n--- its log ---\n${log.text()}`, { cause: error })
          }
        }
      }
    } catch (error) {
      await rm(dir, { recursive: true, force: true })
      throw error
    }
  }

  /** The server's recent log lines. */
  logs(): string {
    return this.log.text()
  }

  private async api<T>(pathAndQuery: string, form?: Record<string, string>): Promise<{ status: string; data: T; error?: string; errorType?: string; warnings?: string[] }> {
    const res = await fetch(`${this.url}${pathAndQuery}`, form ? { method: 'POST', body: new URLSearchParams(form) } : {})
    const text = await res.text()
    try {
      return JSON.parse(text) as { status: string; data: T; error?: string; errorType?: string }
    } catch {
      throw new Error(`${pathAndQuery}: HTTP ${res.status}, not JSON: ${text.slice(0, 500)}`)
    }
  }

  /** An instant query at the current time (`/api/v1/query`). A PromQL error is a result with status "error", not a throw. */
  async query(expr: string): Promise<QueryResult> {
    const r = await this.api<{ resultType: QueryResult['resultType']; result: unknown }>('/api/v1/query', { query: expr })
    if (r.status !== 'success') return { status: 'error', error: r.error ?? 'unknown error', errorType: r.errorType ?? '', result: [] }
    const { resultType, result } = r.data
    const samples: PromSample[] =
      resultType === 'vector' || resultType === 'matrix' ? (result as PromSample[]) : [{ metric: {}, value: result as [number, string] }]
    return { status: 'success', resultType, result: samples, ...(r.warnings ? { warnings: r.warnings } : {}) }
  }

  /** The samples of an instant query; throws on a PromQL error. */
  async samples(expr: string): Promise<PromSample[]> {
    const r = await this.query(expr)
    if (r.status !== 'success') throw new Error(`${expr}: ${r.errorType}: ${r.error}`)
    return r.result
  }

  async rules(): Promise<PromRuleGroup[]> {
    const r = await this.api<{ groups: PromRuleGroup[] }>('/api/v1/rules')
    if (r.status !== 'success') throw new Error(`/api/v1/rules: ${r.error}`)
    return r.data.groups
  }

  async targets(): Promise<PromTarget[]> {
    const r = await this.api<{ activeTargets: PromTarget[] }>('/api/v1/targets?state=active')
    if (r.status !== 'success') throw new Error(`/api/v1/targets: ${r.error}`)
    return r.data.activeTargets
  }

  /** SIGTERM (SIGKILL after a timeout) and waits for the exit; keeps the dir. */
  async kill(): Promise<void> {
    if (this.done) return
    this.child.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), PROMETHEUS_DEFAULTS.stopTimeoutMs)
    })
    const exited = await Promise.race([this.exited.then(() => true), late])
    clearTimeout(timer)
    if (!exited) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }

  /** Stops the server and removes its dir (config, rules, TSDB). Safe to call twice. */
  async stop(): Promise<void> {
    await this.kill()
    await rm(this.dir, { recursive: true, force: true })
  }

  /** For the process guard's exit hook only. */
  killNowSync(): void {
    if (!this.done && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    try {
      rmSync(this.dir, { recursive: true, force: true })
    } catch {
      // Best effort while exiting.
    }
  }
}

export function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusServer> {
  return PrometheusServer.start(opts)
}
