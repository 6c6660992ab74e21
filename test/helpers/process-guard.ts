// Keeps test child processes (redis-server, etcd, kube-apiserver...) from outliving the test
// process. Two guards, because no single one covers every way a test process ends:
//
// - an 'exit' hook SIGKILLs the children still registered (and runs other cleanup hooks) when
//   the process exits normally, even after a failed test or an unhandled error;
// - a small watchdog shell, one per test process, SIGKILLs them when the process dies without
//   running its exit hooks (SIGKILL, a killed vitest worker, a crash): it reads "+pid" and "-pid"
//   lines on its stdin and, at EOF (the pipe's writer is gone), kills what is still registered.
//
// A child must not keep the test process alive either: spawners unref() it and its pipes
// (unrefStream), and the guards above are what stops a leaked one.

import { spawn } from 'node:child_process'

/** Something that runs a child process and can kill it synchronously (used from the exit hook). */
export interface Guarded {
  killNowSync(): void
}

// On globalThis, so that this module evaluated twice in one process (vitest isolation) still
// installs one exit hook and one watchdog.
interface Guard {
  readonly live: Set<Guarded>
  readonly exitHooks: Set<() => void>
  exitHookInstalled: boolean
  watchdog: Watchdog | undefined
}
const guardKey = Symbol.for('redis-gateway.test.process-guard')
const registry = globalThis as unknown as Record<symbol, Guard | undefined>
const guard = (registry[guardKey] ??= { live: new Set(), exitHooks: new Set(), exitHookInstalled: false, watchdog: undefined })

// Reads "+pid" / "-pid" lines; at EOF SIGKILLs what is still registered.
const PID_WATCHDOG_SCRIPT = `pids=' '
while IFS= read -r line; do
  case "$line" in
    +*) pids="$pids\${line#+} " ;;
    -*) keep=' '; for p in $pids; do [ "$p" = "\${line#-}" ] || keep="$keep$p "; done; pids=$keep ;;
  esac
done
for p in $pids; do kill -9 "$p" 2>/dev/null; done
`

/** Lets the process exit while `stream` (a child's pipe) is open. */
export function unrefStream(stream: unknown): void {
  if (stream && typeof (stream as { unref?: unknown }).unref === 'function') (stream as { unref(): void }).unref()
}

export interface Watchdog {
  /** Writes one line to the script's stdin. */
  write(line: string): void
  /** Closes the script's stdin. */
  end(): void
}

/**
 * Starts a detached shell that runs `script` with this process's end of a pipe as its stdin, so
 * the script's reads see EOF once this process is gone, however it died. It ignores INT, TERM
 * and HUP: a signal meant for the tests must not end it before it has cleaned up. end() closes
 * the pipe, so the script runs its EOF part now.
 */
export function startWatchdog(script: string): Watchdog {
  const watchdog = spawn('/bin/sh', ['-c', `trap '' INT TERM HUP\n${script}`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true })
  // Without sh the exit hook still guards.
  watchdog.on('error', () => {})
  watchdog.stdin?.on('error', () => {})
  watchdog.unref()
  unrefStream(watchdog.stdin)
  return {
    write: (line) => void watchdog.stdin?.write(`${line}\n`),
    end: () => void watchdog.stdin?.end(),
  }
}

function tellWatchdog(line: string): void {
  guard.watchdog ??= startWatchdog(PID_WATCHDOG_SCRIPT)
  guard.watchdog.write(line)
}

function installExitHook(): void {
  if (guard.exitHookInstalled) return
  guard.exitHookInstalled = true
  process.on('exit', () => {
    for (const owner of guard.live) owner.killNowSync()
    for (const hook of guard.exitHooks) {
      try {
        hook()
      } catch {
        // Best effort while exiting.
      }
    }
  })
}

/**
 * Guards the running child `pid` of `owner`: SIGKILLed by the exit hook (through
 * owner.killNowSync()) or by the watchdog if this process ends first. Call the returned
 * release() once the child has exited; it is safe to call twice.
 */
export function guardChild(owner: Guarded, pid: number): () => void {
  installExitHook()
  guard.live.add(owner)
  tellWatchdog(`+${pid}`)
  let released = false
  return () => {
    if (released) return
    released = true
    guard.live.delete(owner)
    tellWatchdog(`-${pid}`)
  }
}

/** Runs `hook` synchronously when this process exits (e.g. to remove a temp dir). Returns an unregister function. */
export function onProcessExit(hook: () => void): () => void {
  installExitHook()
  guard.exitHooks.add(hook)
  return () => guard.exitHooks.delete(hook)
}
