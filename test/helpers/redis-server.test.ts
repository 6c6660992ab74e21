// Tests for the test helpers themselves: free ports, waitFor, and real redis-server
// processes (replication, kill/restart with AOF, commandstats, pause/resume, leak guard).

import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort } from './ports.js'
import { RedisStartError, startRedis, type RedisServer, type StartRedisOptions } from './redis-server.js'
import { waitFor } from './wait.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const repoRoot = path.resolve(here, '../..')

const servers: RedisServer[] = []
async function start(opts?: StartRedisOptions): Promise<RedisServer> {
  const server = await startRedis(opts)
  servers.push(server)
  return server
}
afterEach(async () => {
  // Replicas first, so a primary never waits for a gone replica on shutdown.
  for (const server of servers.splice(0).reverse()) await server.stop()
})

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

/** Gone or a zombie waiting to be reaped: either way it serves nothing. */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

describe('freePort', () => {
  it('hands out distinct ports that can be listened on', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()))
    expect(new Set(ports).size).toBe(ports.length)
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(ports[0], '127.0.0.1', resolve))
    await new Promise((resolve) => server.close(resolve))
  })
})

describe('waitFor', () => {
  it('resolves with the first truthy value and retries thrown errors and falsy values', async () => {
    let calls = 0
    const value = await waitFor(
      () => {
        calls++
        if (calls === 1) throw new Error('not yet')
        return calls >= 3 ? `done after ${calls}` : null
      },
      { intervalMs: 1 },
    )
    expect(value).toBe('done after 3')
  })

  it('treats undefined as success so assertion callbacks work', async () => {
    let n = 0
    await waitFor(() => expect(++n).toBe(3), { intervalMs: 1 })
    expect(n).toBe(3)
  })

  it('times out with the message and the last error', async () => {
    const error = await waitFor(
      () => {
        throw new Error('replica still empty')
      },
      { timeoutMs: 50, intervalMs: 5, message: 'key on replica' },
    ).catch((e: unknown) => e as Error)
    expect(error).toBeInstanceOf(Error)
    expect(error.message).toMatch(/timed out after \d+ms .*waiting for key on replica/)
    expect(error.message).toContain('replica still empty')
    expect(error.cause).toBeInstanceOf(Error)
  })

  it('reports the last falsy value and does not wait for a hung attempt', async () => {
    let first = true
    const started = Date.now()
    const error = await waitFor(
      () => {
        if (first) {
          first = false
          return 0
        }
        return new Promise<never>(() => {})
      },
      { timeoutMs: 100, intervalMs: 5 },
    ).then(
      () => new Error('expected a timeout'),
      (e: unknown) => e as Error,
    )
    expect(error).toBeInstanceOf(Error)
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(error.message).toContain('still running at the deadline')
    expect(error.message).toContain('last value: 0')
  })
})

describe('RedisServer', () => {
  it('starts a primary and a replica, and replication works', async () => {
    const primary = await start()
    const replica = await start({ replicaOf: primary })
    await replica.waitForSync()

    expect(primary.url).toBe(`redis://127.0.0.1:${primary.port}`)
    expect(replica.port).not.toBe(primary.port)
    expect(await primary.info('replication')).toContain('role:master')

    await primary.client().set('greeting', 'hello')
    const onReplica = replica.client()
    await waitFor(async () => expect(await onReplica.get('greeting')).toBe('hello'), { message: 'greeting on replica' })
    await expect(onReplica.set('x', '1')).rejects.toThrow(/READONLY/)
  })

  it('replicates from a password-protected primary', async () => {
    const primary = await start({ password: 's3cret' })
    const replica = await start({ replicaOf: primary, password: 'other' })
    await replica.waitForSync()
    expect(primary.url).toBe(`redis://:s3cret@127.0.0.1:${primary.port}`)
    await primary.client().set('k', 'v')
    const onReplica = replica.client()
    await waitFor(async () => (await onReplica.get('k')) === 'v')
  })

  it('keeps data across kill -9 and restart with appendonly, on the same port', async () => {
    const server = await start({ appendOnly: true })
    const client = server.client()
    for (let i = 0; i < 50; i++) await client.set(`k${i}`, String(i))
    const { port, dir } = server
    const firstPid = server.pid

    await server.kill()
    expect(server.isRunning).toBe(false)
    expect(await refusesConnections(port)).toBe(true)

    await server.restart()
    expect(server.port).toBe(port)
    expect(server.dir).toBe(dir)
    expect(server.pid).not.toBe(firstPid)
    // The same client reconnects by itself.
    expect(await client.get('k49')).toBe('49')
    expect(await client.dbsize()).toBe(50)
  })

  it('loses data across kill -9 without appendonly (no RDB saves either)', async () => {
    const server = await start()
    const client = server.client()
    await client.set('k', 'v')
    await server.kill()
    await server.restart()
    expect(await client.get('k')).toBeNull()
  })

  it('restarts a running server gracefully', async () => {
    const server = await start({ appendOnly: true })
    await server.client().set('k', 'v')
    await server.restart()
    expect(await server.client().get('k')).toBe('v')
  })

  it('counts calls per command', async () => {
    const server = await start()
    const client = server.client({ lazyConnect: true, enableReadyCheck: false })
    await client.connect()
    await client.set('a', '1')
    for (let i = 0; i < 3; i++) await client.get('a')
    await client.config('GET', 'maxmemory')

    const stats = await server.commandStats()
    expect(stats).toMatchObject({ get: 3, set: 1, 'config|get': 1 })
    expect(stats['ping']).toBeUndefined()

    await server.resetStats()
    const after = await server.commandStats()
    expect(after['get']).toBeUndefined()
    expect(after['config|resetstat']).toBe(1)
  })

  it('pauses and resumes', async () => {
    const server = await start()
    const client = server.client({ commandTimeout: 200 })
    expect(await client.ping()).toBe('PONG')

    server.pause()
    expect(server.isPaused).toBe(true)
    await expect(client.ping()).rejects.toThrow(/timed out/i)

    server.resume()
    await waitFor(async () => (await client.ping()) === 'PONG', { message: 'PONG after resume' })
  })

  it('stops a paused server', async () => {
    const server = await startRedis()
    const { pid, dir } = server
    server.pause()
    await server.stop()
    expect(server.isRunning).toBe(false)
    expect(processGone(pid ?? 0)).toBe(true)
    expect(existsSync(dir)).toBe(false)
  })

  it('removes its temp dir on stop unless keepDir, and never a dir it was given', async () => {
    const removed = await startRedis()
    await removed.stop()
    expect(existsSync(removed.dir)).toBe(false)

    const kept = await startRedis({ keepDir: true })
    await kept.stop()
    expect(existsSync(kept.dir)).toBe(true)
    await rm(kept.dir, { recursive: true })

    const given = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-given-'))
    const server = await startRedis({ dir: given, appendOnly: true })
    await server.stop()
    expect(existsSync(path.join(given, 'appendonlydir'))).toBe(true)
    await rm(given, { recursive: true })
  })

  it('fails with the server output when the port is taken', async () => {
    const port = await freePort()
    // Readiness probes may reach the blocker; drop them so close() does not wait on them.
    const blocker = net.createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve))
    try {
      const error = await startRedis({ port }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(RedisStartError)
      expect((error as RedisStartError).addressInUse).toBe(true)
      expect((error as RedisStartError).message).toMatch(/Address already in use/)
    } finally {
      await new Promise((resolve) => blocker.close(resolve))
    }
  })

  it('does not mistake another redis-server on the port for its own', async () => {
    const other = await start()
    const error = await startRedis({ port: other.port }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RedisStartError)
    expect((error as RedisStartError).addressInUse).toBe(true)
  })

  it('fails clearly on bad arguments', async () => {
    await expect(startRedis({ args: ['--no-such-option', 'x'] })).rejects.toThrow(/exited .*no-such-option|no-such-option[\s\S]*exited/s)
  })

  it('throws a clear error when redis-server is missing', async () => {
    await expect(startRedis({ binary: 'redis-server-does-not-exist' })).rejects.toThrow(/redis-server-does-not-exist not found on PATH/)
  })
})

describe('leak guard', () => {
  // A separate Node process starts a server and then ends without stop().
  async function runChild(mode: 'end' | 'hang'): Promise<{ pid: number; port: number; dir: string; kill: () => void; exited: Promise<void> }> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-leak-'))
    const script = path.join(dir, 'child.mts')
    await writeFile(
      script,
      `import { startRedis } from ${JSON.stringify(pathToFileURL(path.join(here, 'redis-server.ts')).href)}
const server = await startRedis()
console.log(JSON.stringify({ pid: server.pid, port: server.port, dir: server.dir }))
if (process.argv[2] === 'hang') setInterval(() => {}, 1_000)
`,
    )
    const child = spawn(process.execPath, ['--import', 'tsx', script, mode], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve())).finally(() => rm(dir, { recursive: true, force: true }))
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    const line = await waitFor(() => out.split('\n').find((l) => l.startsWith('{')) ?? null, { timeoutMs: 20_000, message: 'child to report its server' })
    const info = JSON.parse(line) as { pid: number; port: number; dir: string }
    return { ...info, kill: () => child.kill('SIGKILL'), exited }
  }

  // Only the pid is checked afterwards: the freed port may already belong to another test's server.
  it('kills servers when the test process ends without stopping them', async () => {
    const child = await runChild('end')
    await child.exited
    await waitFor(() => processGone(child.pid), { message: `redis-server pid ${child.pid} to die` })
    expect(existsSync(child.dir)).toBe(false)
  })

  it('kills servers when the test process is SIGKILLed', async () => {
    const child = await runChild('hang')
    try {
      expect(processGone(child.pid)).toBe(false)
      child.kill()
      await child.exited
      await waitFor(() => processGone(child.pid), { message: `redis-server pid ${child.pid} to die` })
    } finally {
      await rm(child.dir, { recursive: true, force: true })
    }
  })
})
