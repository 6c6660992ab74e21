// Runs once before any test file: checks the commands the suite runs that npm does not install.
// Without redis-server every file would fail with its own spawn error; here each missing command is
// named once, on one line, with the package that brings it.

import { accessSync, constants } from 'node:fs'
import path from 'node:path'

const PREREQUISITES = [
  ['redis-server', 'install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis); the tests start their own servers on free ports'],
  ['redis-cli', 'it comes with redis-server (Debian/Ubuntu: apt-get install redis-tools); the cluster tests form their clusters with it'],
  ['openssl', 'install it (Debian/Ubuntu: apt-get install openssl); the TLS test makes its certificates with it'],
  ['ss', "install it (Debian/Ubuntu: apt-get install iproute2); the HTTP tests read the gateway's side of their connections with it"],
  ['promtool', "install it (Debian/Ubuntu: apt-get install prometheus, whose postinst may start a prometheus service: see .ci/run's ensure_package); test/alerts/rules.test.ts runs the chart's alerts through it"],
] as const

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '').split(path.delimiter).some((dir) => {
    try {
      accessSync(path.join(dir || '.', command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

export default function checkPrerequisites(): void {
  const missing = PREREQUISITES.filter(([command]) => !onPath(command))
  if (missing.length === 0) return
  // Lines and exit: a thrown error would come with vitest's banner, a stack and "No test files found".
  for (const [command, fix] of missing) process.stderr.write(`${command} not found on PATH: ${fix}\n`)
  process.exit(1)
}
