// The gateway as a real process for end-to-end tests: `node --import tsx src/main.ts` with a
// minimal environment (PATH, HOME, GATEWAY_CONFIG plus what the test adds), its output kept, and
// its exit observable. Tests kill what they started with killAll() in afterEach.

import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export interface GatewayProcess {
  readonly child: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>
  readonly done: boolean
}

const started = new Set<GatewayProcess>()

/** `nodeArgs`: Node options before the script (e.g. a V8 trace flag). */
export function spawnGateway(configPath: string, env: Record<string, string> = {}, nodeArgs: readonly string[] = []): GatewayProcess {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', GATEWAY_CONFIG: configPath, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  let done = false
  const p: GatewayProcess = {
    child,
    stdout: () => out,
    stderr: () => err,
    get done() {
      return done
    },
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        done = true
        started.delete(p)
        resolve(code ?? signal ?? 'unknown')
      })
    }),
  }
  started.add(p)
  return p
}

/** SIGKILLs every process spawnGateway started that is still running, and waits for them. */
export async function killAll(): Promise<void> {
  const running = [...started]
  for (const p of running) p.child.kill('SIGKILL')
  await Promise.all(running.map((p) => p.exited))
}

/** The exit code, or a failure naming the deadline and the output so far. */
export async function exitWithin(p: GatewayProcess, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`process did not exit within ${ms}ms\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`)), ms)
  })
  try {
    return await Promise.race([p.exited, guard])
  } finally {
    clearTimeout(timer)
  }
}
