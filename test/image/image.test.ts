// The built image (Dockerfile, built by scripts/image/build.sh with buildah on a stand-in base), run
// the way the Helm chart runs it: as uid 1000, root filesystem read-only, a writable /tmp (the
// chart's emptyDir), the config file mounted read-only where the image's GATEWAY_CONFIG points, no
// capabilities, no new privileges. There is no Docker engine here, so the container is run with
// runc, an OCI runtime, from a bundle made of the image's own config: ENTRYPOINT + CMD as the
// process, USER, WORKDIR and ENV unchanged. The network namespace is the host's, so the container
// reaches the redis-server this test starts on a loopback port and the test reaches the gateway.
//
// `npm run test:image` builds the image and runs this file (REDIS_GATEWAY_IMAGE_TEST=1, set by
// test/image/vitest.config.ts); in the main suite it is skipped. Needs root, runc and the built
// image (REDIS_GATEWAY_IMAGE, default localhost/redis-gateway:dev), all of which build.sh provides.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { REPO_ROOT } from '../helpers/gateway-process.js'
import { freePort } from '../helpers/ports.js'
import { onProcessExit } from '../helpers/process-guard.js'
import { startRedis, type RedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const ENABLED = process.env['REDIS_GATEWAY_IMAGE_TEST'] === '1'
const IMAGE = process.env['REDIS_GATEWAY_IMAGE'] ?? 'localhost/redis-gateway:dev'
const BUILDAH = path.join(REPO_ROOT, 'scripts/image/buildah.sh')
const TOKEN = 'image-test-token'
const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
const ID = `redis-gateway-image-test-${process.pid}`

/** The part of the OCI image config this test uses (buildah inspect: .OCIv1.config). */
interface ImageConfig {
  User?: string
  Env?: string[]
  Entrypoint?: string[]
  Cmd?: string[]
  WorkingDir?: string
  StopSignal?: string
  ExposedPorts?: Record<string, unknown>
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`)
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}\n${r.stderr}`)
  return r.stdout.trim()
}
const buildah = (...args: string[]): string => run('bash', [BUILDAH, ...args])

function runc(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('runc', args, { encoding: 'utf8' })
  if (r.error) throw new Error(`runc ${args.join(' ')}: ${r.error.message}`)
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The OCI runtime bundle config: the image's process, read-only root, the chart's securityContext. */
function bundleConfig(image: ImageConfig, rootfs: string, configDir: string, configMountPoint: string): object {
  const user = /^(\d+)(?::(\d+))?$/.exec(image.User ?? '')
  if (!user) throw new Error(`image USER is ${JSON.stringify(image.User)}: expected numeric uid[:gid]`)
  const noCaps = { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] }
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: Number(user[1]), gid: Number(user[2] ?? user[1]) },
      args: [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])],
      env: image.Env ?? [],
      cwd: image.WorkingDir || '/',
      capabilities: noCaps,
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'redis-gateway',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      // The chart's writable emptyDir.
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=65536k'] },
      // The chart's ConfigMap volume.
      { destination: configMountPoint, type: 'bind', source: configDir, options: ['rbind', 'ro'] },
    ],
    linux: {
      // No network namespace: the host's, so loopback is shared with the test and its Redis.
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  }
}

describe.runIf(ENABLED)(`image ${IMAGE}: read-only, uid 1000, against a real Redis`, () => {
  let image: ImageConfig
  let container = ''
  let rootfs = ''
  let dir = ''
  let redis: RedisServer
  let child: ChildProcess
  let output = ''
  let exited: Promise<number | string>
  let dataUrl = ''
  let opsUrl = ''
  let removeExitHook: (() => void) | undefined

  const logs = (): string => `\n--- container output ---\n${output.slice(-4000)}\n---`
  const containerPid = (): number => Number(JSON.parse(runc('state', ID).stdout).pid)

  beforeAll(async () => {
    expect(process.getuid?.(), 'runs as root (runc, buildah mount)').toBe(0)
    expect(spawnSync('runc', ['--version']).status, 'runc installed (scripts/image/build.sh installs it)').toBe(0)

    const info = JSON.parse(buildah('inspect', '--type', 'image', IMAGE)) as { OCIv1: { config: ImageConfig } }
    image = info.OCIv1.config
    container = buildah('from', '--pull=never', '--name', ID, IMAGE)
    rootfs = buildah('mount', container)

    dir = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-image-'))
    redis = await startRedis()
    const [dataPort, opsPort] = [await freePort(), await freePort()]
    dataUrl = `http://127.0.0.1:${dataPort}`
    opsUrl = `http://127.0.0.1:${opsPort}`

    // The config goes where the image's own GATEWAY_CONFIG points (not overridden here).
    const configPath = (image.Env ?? []).find((e) => e.startsWith('GATEWAY_CONFIG='))?.slice('GATEWAY_CONFIG='.length)
    if (!configPath) throw new Error('the image sets no GATEWAY_CONFIG')
    const configDir = path.join(dir, 'config')
    await mkdir(configDir)
    await writeFile(
      path.join(configDir, path.basename(configPath)),
      stringify({
        listen: { data: `127.0.0.1:${dataPort}`, ops: `127.0.0.1:${opsPort}` },
        discovery: { static: { instances: [{ name: 'main', endpoints: [`redis://127.0.0.1:${redis.port}`] }] } },
        auth: { tokens: [{ name: 'app', token: TOKEN, access: 'write', targets: ['*'] }] },
        log: { level: 'info' },
      }),
    )
    const bundle = path.join(dir, 'bundle')
    await mkdir(bundle)
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify(bundleConfig(image, rootfs, configDir, path.dirname(configPath)), null, 1))

    removeExitHook = onProcessExit(() => {
      spawnSync('runc', ['delete', '--force', ID])
    })
    child = spawn('runc', ['run', '--bundle', bundle, ID], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout?.on('data', (c: Buffer) => (output += c.toString()))
    child.stderr?.on('data', (c: Buffer) => (output += c.toString()))
    exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')))
    let done = false
    await Promise.race([
      waitFor(
        async () => {
          if (done) return true // the race below has already failed
          try {
            return (await fetch(`${opsUrl}/readyz`)).status === 200
          } catch {
            return false
          }
        },
        { timeoutMs: 60_000, intervalMs: 200, message: `${opsUrl}/readyz to answer 200` },
      ).catch((error: unknown) => {
        throw new Error(`${error instanceof Error ? error.message : String(error)}${logs()}`)
      }),
      exited.then((code) => {
        done = true
        throw new Error(`the container exited (${code}) before /readyz answered 200${logs()}`)
      }),
    ])
  })

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      runc('kill', ID, 'KILL')
      await exited
    }
    if (container) spawnSync('runc', ['delete', '--force', ID])
    removeExitHook?.()
    if (container) {
      spawnSync('bash', [BUILDAH, 'umount', container])
      spawnSync('bash', [BUILDAH, 'rm', container])
    }
    await redis?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('has the config the Dockerfile gives it: USER 1000:1000, exec-form ENTRYPOINT, WORKDIR /app, STOPSIGNAL SIGTERM', () => {
    expect(image.User).toBe('1000:1000')
    expect(image.Entrypoint).toEqual(['node', 'dist/src/main.js'])
    expect(image.Cmd ?? []).toEqual([])
    expect(image.WorkingDir).toBe('/app')
    expect(image.StopSignal).toBe('SIGTERM')
    // Node's options as a variable, which a deployment can replace (the chart's nodeOptions).
    expect(image.Env).toEqual(expect.arrayContaining(['NODE_ENV=production', 'GATEWAY_CONFIG=/etc/redis-gateway/config/gateway.yaml', 'NODE_OPTIONS=--max-semi-space-size=64']))
    expect(Object.keys(image.ExposedPorts ?? {}).sort()).toEqual(['8080/tcp', '9090/tcp'])
    // npm and corepack are removed from the runtime image; the application is owned by root.
    for (const gone of ['usr/local/bin/npm', 'usr/local/bin/npx', 'usr/local/lib/node_modules/npm', 'usr/local/lib/node_modules/corepack']) {
      expect(existsSync(path.join(rootfs, gone)), `/${gone} is not in the image`).toBe(false)
    }
    expect(existsSync(path.join(rootfs, 'app/dist/src/main.js'))).toBe(true)
    expect(existsSync(path.join(rootfs, 'app/src')), 'no TypeScript sources in the image').toBe(false)
  })

  it('serves SET and GET with a token, and /readyz is 200', async () => {
    expect((await fetch(`${opsUrl}/readyz`)).status).toBe(200)
    const key = `image-test:${process.pid}`
    const set = await fetch(`${dataUrl}/v1/instances/main`, { method: 'POST', headers: AUTH, body: JSON.stringify(['SET', key, 'from-the-image']) })
    expect(set.status).toBe(200)
    expect(await set.json()).toEqual({ result: 'OK' })
    const get = await fetch(`${dataUrl}/v1/instances/main/get/${encodeURIComponent(key)}`, { headers: AUTH })
    expect(get.status).toBe(200)
    expect(await get.json()).toEqual({ result: 'from-the-image' })
    // It reached the real Redis.
    const direct = redis.client()
    try {
      expect(await direct.get(key)).toBe('from-the-image')
    } finally {
      direct.disconnect()
    }
    // And the token is required.
    const anonymous = await fetch(`${dataUrl}/v1/instances/main/get/${encodeURIComponent(key)}`)
    expect(anonymous.status).toBe(401)
  })

  it('runs the ENTRYPOINT as uid/gid 1000 in WORKDIR, with no capabilities and no new privileges', () => {
    const pid = containerPid()
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const field = (name: string): string => (new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').trim()
    expect(field('Uid').split(/\s+/)).toEqual(['1000', '1000', '1000', '1000'])
    expect(field('Gid').split(/\s+/)).toEqual(['1000', '1000', '1000', '1000'])
    expect(field('CapEff')).toBe('0000000000000000')
    expect(field('NoNewPrivs')).toBe('1')
    // PID 1 of the container is node itself (exec form: no shell in between).
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
    expect(cmdline).toEqual(['node', 'dist/src/main.js'])
    // It got the image's Node options: a 64 MiB semi-space.
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain('NODE_OPTIONS=--max-semi-space-size=64')
    const inContainer = runc('exec', ID, 'node', '-p', 'JSON.stringify([process.pid, process.getuid(), process.getgid(), process.cwd()])')
    expect(inContainer.status, inContainer.stderr).toBe(0)
    expect(JSON.parse(inContainer.stdout.trim())).toEqual([expect.any(Number), 1000, 1000, '/app'])
    const init = runc('exec', ID, 'node', '-p', "require('fs').readFileSync('/proc/1/cmdline','utf8').split('\\0').join(' ').trim()")
    expect(init.stdout.trim()).toBe('node dist/src/main.js')
  })

  it('has a read-only root filesystem: a write to / fails even as root; /tmp is writable', () => {
    const pid = containerPid()
    const rootMount = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .find((f) => f[4] === '/')
    expect(rootMount?.[5]?.split(','), 'mount options of / in the container').toContain('ro')

    const write = (user: string, file: string) =>
      runc('exec', '--user', user, ID, 'node', '-e', `try { require('fs').writeFileSync(${JSON.stringify(file)}, 'x'); console.log('written') } catch (e) { console.log(e.code) }`)
    expect(write('0:0', '/probe').stdout.trim(), 'root in the container writing /probe').toBe('EROFS')
    expect(write('1000:1000', '/app/probe').stdout.trim(), 'uid 1000 writing /app/probe').toBe('EROFS')
    expect(write('0:0', '/app/dist/src/main.js').stdout.trim(), 'root in the container replacing the code').toBe('EROFS')
    expect(write('1000:1000', '/tmp/probe').stdout.trim(), 'uid 1000 writing /tmp (the emptyDir)').toBe('written')
    expect(existsSync(path.join(rootfs, 'probe'))).toBe(false)
  })

  it('stops gracefully on its STOPSIGNAL: exit code 0', async () => {
    expect(runc('kill', ID, image.StopSignal ?? 'SIGTERM').status).toBe(0)
    let timer: NodeJS.Timeout | undefined
    const code = await Promise.race([
      exited,
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('timeout'), 45_000))),
    ])
    clearTimeout(timer)
    expect(code, `exit of runc run${logs()}`).toBe(0)
    expect(output).toContain('shutdown complete')
  })
})
