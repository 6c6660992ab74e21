// Redis servers with non-loopback addresses, for EndpointSlices (whose validation refuses
// loopback): one Linux network namespace per call, joined to the host by a veth pair with a
// private /30 that exists only on that pair (host side .1, namespace side .2). Needs root.
//
//   const net = await createNetns()
//   const redis = await net.startRedis()        // redis-server bound to net.address inside the netns
//   ... EndpointSlice address: net.address ...
//   await net.destroy()                         // stops the servers, deletes the netns and veth
//
// createPodNetwork(n) (below) puts n namespaces on one bridge, so that they reach each other too.
//
// Everything is created and removed by name (rgw-<hex>, rgw-h<hex>); a process exit hook removes
// what is left if a test dies before destroy().

import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../../helpers/ports.js'
import { startRedis, type RedisServer } from '../../helpers/redis-server.js'
import { onProcessExit, startWatchdog } from '../../helpers/process-guard.js'

const execFileAsync = promisify(execFile)

/** Options of Netns.startRedis(); without them it starts a plain server on a free-looking port. */
export interface NetnsRedisOptions {
  /**
   * Port inside the netns. Default: a free-looking number. Each netns has its own ports, so servers
   * in different namespaces may share one (6379 everywhere, as pods do).
   */
  port?: number
  /** Extra redis-server arguments, after the defaults (a later `--name value` wins). */
  args?: string[]
}

export interface Netns {
  /** Network namespace name, rgw-<hex>. */
  readonly name: string
  /** Host-side veth interface. */
  readonly hostIf: string
  /** Host-side address (the gateway's source address towards the netns). */
  readonly hostAddress: string
  /** The address inside the netns, where its Redis servers listen. */
  readonly address: string
  /** Starts a redis-server inside the netns, bound to `address`, without protected mode or persistence. */
  startRedis(opts?: NetnsRedisOptions): Promise<RedisServer>
  /** Stops the servers and removes the netns, the veth pair and the wrapper script. Safe to call twice. */
  destroy(): Promise<void>
}

async function ip(args: readonly string[]): Promise<void> {
  try {
    await execFileAsync('ip', [...args])
  } catch (error) {
    const e = error as { stderr?: string; message: string }
    throw new Error(`ip ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`)
  }
}

function ipSync(args: readonly string[]): void {
  try {
    execFileSync('ip', [...args], { stdio: 'ignore' })
  } catch {
    // Best effort: already gone.
  }
}

/** The /30 subnets (third octet of 10.213.X.0) already configured anywhere on the host. */
function usedOctets(): Set<number> {
  const used = new Set<number>()
  try {
    const out = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' })
    for (const m of out.matchAll(/inet 10\.213\.(\d+)\./g)) used.add(Number(m[1]))
  } catch {
    // No ip: the creation below reports it.
  }
  return used
}

export async function createNetns(): Promise<Netns> {
  if (process.getuid?.() !== 0) throw new Error('createNetns needs root (ip netns add)')
  const id = randomBytes(3).toString('hex')
  const name = `rgw-${id}`
  const hostIf = `rgw-h${id}`
  const nsIf = `rgw-n${id}`
  const used = usedOctets()
  let octet = 0
  for (let i = 0; i < 50; i++) {
    const candidate = 1 + Math.floor(Math.random() * 250)
    if (!used.has(candidate)) {
      octet = candidate
      break
    }
  }
  if (octet === 0) throw new Error('no free 10.213.X.0/30 subnet')
  const hostAddress = `10.213.${octet}.1`
  const address = `10.213.${octet}.2`
  const scriptDir = mkdtempSync(path.join(os.tmpdir(), 'rgw-netns-'))
  const servers: RedisServer[] = []

  const cleanupSync = (): void => {
    // Processes still in the namespace (redis-servers of a crashed test) first.
    try {
      const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch {
          // Gone.
        }
      }
    } catch {
      // No such netns.
    }
    ipSync(['link', 'del', hostIf])
    ipSync(['netns', 'del', name])
    rmSync(scriptDir, { recursive: true, force: true })
  }
  const unregister = onProcessExit(cleanupSync)
  // If this process dies without running exit hooks (SIGKILL, a killed test worker), a watchdog
  // shell sees EOF on its stdin and removes the netns and the veth pair (and what runs inside).
  const watchdog = startWatchdog(
    `cat >/dev/null; for p in $(ip netns pids ${name} 2>/dev/null); do kill -9 "$p"; done; ip link del ${hostIf} 2>/dev/null; ip netns del ${name} 2>/dev/null`,
  )

  try {
    await ip(['netns', 'add', name])
    await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf])
    await ip(['link', 'set', nsIf, 'netns', name])
    await ip(['addr', 'add', `${hostAddress}/30`, 'dev', hostIf])
    await ip(['link', 'set', hostIf, 'up'])
    await ip(['netns', 'exec', name, 'ip', 'addr', 'add', `${address}/30`, 'dev', nsIf])
    await ip(['netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up'])
    await ip(['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
  } catch (error) {
    cleanupSync()
    unregister()
    watchdog.end()
    throw error
  }

  // `ip netns exec` execs the program after setns, so the pid startRedis watches is redis-server's.
  const wrapper = path.join(scriptDir, 'redis-server')
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${name} redis-server "$@"\n`)
  chmodSync(wrapper, 0o755)

  let destroyed = false
  return {
    name,
    hostIf,
    hostAddress,
    address,
    async startRedis(opts: NetnsRedisOptions = {}) {
      // Ports inside the netns are its own; any free-looking number will do.
      const server = await startRedis({
        binary: wrapper,
        bind: address,
        port: opts.port ?? (await freePort('127.0.0.1')),
        args: ['--protected-mode', 'no', '--save', '', ...(opts.args ?? [])],
      })
      servers.push(server)
      return server
    },
    async destroy() {
      if (destroyed) return
      destroyed = true
      await Promise.allSettled(servers.map((s) => s.stop()))
      cleanupSync()
      unregister()
      watchdog.end()
    },
  }
}

// ---------------------------------------------------------------------------------------------
// A pod network: several namespaces that reach each other, as pods on a node with a CNI bridge.
//
//   const net = await createPodNetwork(6)
//   const servers = await Promise.all(net.pods.map((p) => p.startRedis({ port: 6379 })))
//   ... pod i listens on net.pods[i].address; the pods reach each other (a Redis Cluster's bus) ...
//   await net.destroy()                         // every server, netns, veth and the bridge
//
// One Linux bridge on the host (rgw-b<hex>, address 10.214.X.1/24) and, per pod, a netns
// (rgw-<hex>-<i>) whose veth (host side rgw-h<hex><ii>, enslaved to the bridge) has 10.214.X.<i+2>/24.
// Pod-to-pod traffic is switched by the bridge at layer 2, so nothing host-wide changes: no
// net.ipv4.ip_forward, no routes outside the pods' own subnet. The host (the gateway, redis-cli)
// reaches every pod through the bridge's address. (br_netfilter passes bridged IPv4 frames
// through iptables' FORWARD chain; a host whose FORWARD policy drops them would need a rule.)

export interface PodNetwork {
  /** The host's bridge, rgw-b<hex>. */
  readonly bridge: string
  /** The bridge's address (10.214.X.1): the host's source address towards the pods. */
  readonly hostAddress: string
  /** One netns per pod, in order; `hostAddress` of each is the bridge's, `hostIf` its own veth. */
  readonly pods: readonly Netns[]
  /** Stops every server and removes every pod's netns and veth, then the bridge. Safe to call twice. */
  destroy(): Promise<void>
}

/** The /24 subnets (third octet of 10.214.X.0) already configured anywhere on the host. */
function usedPodOctets(): Set<number> {
  const used = new Set<number>()
  try {
    const out = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' })
    for (const m of out.matchAll(/inet 10\.214\.(\d+)\./g)) used.add(Number(m[1]))
  } catch {
    // No ip: the creation below reports it.
  }
  return used
}

export async function createPodNetwork(count: number): Promise<PodNetwork> {
  if (process.getuid?.() !== 0) throw new Error('createPodNetwork needs root (ip netns add)')
  if (!Number.isInteger(count) || count < 1 || count > 200) throw new Error(`createPodNetwork: ${count} pods (1..200)`)
  const id = randomBytes(3).toString('hex')
  const bridge = `rgw-b${id}`
  const used = usedPodOctets()
  let octet = 0
  for (let i = 0; i < 50; i++) {
    const candidate = 1 + Math.floor(Math.random() * 250)
    if (!used.has(candidate)) {
      octet = candidate
      break
    }
  }
  if (octet === 0) throw new Error('no free 10.214.X.0/24 subnet')
  const hostAddress = `10.214.${octet}.1`
  const scriptDir = mkdtempSync(path.join(os.tmpdir(), 'rgw-pods-'))
  const pods = Array.from({ length: count }, (_, i) => {
    const suffix = i.toString(16).padStart(2, '0')
    return { name: `rgw-${id}-${i}`, hostIf: `rgw-h${id}${suffix}`, nsIf: `rgw-n${id}${suffix}`, address: `10.214.${octet}.${i + 2}` }
  })
  const servers: RedisServer[][] = pods.map(() => [])

  const cleanupPodSync = (pod: (typeof pods)[number]): void => {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', pod.name], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch {
          // Gone.
        }
      }
    } catch {
      // No such netns.
    }
    ipSync(['link', 'del', pod.hostIf])
    ipSync(['netns', 'del', pod.name])
  }
  const cleanupSync = (): void => {
    for (const pod of pods) cleanupPodSync(pod)
    ipSync(['link', 'del', bridge])
    rmSync(scriptDir, { recursive: true, force: true })
  }
  const unregister = onProcessExit(cleanupSync)
  // As createNetns: a watchdog shell removes everything at EOF if this process dies without exit hooks.
  const watchdog = startWatchdog(
    'cat >/dev/null\n' +
      pods
        .map(
          (p) =>
            `for p in $(ip netns pids ${p.name} 2>/dev/null); do kill -9 "$p"; done; ip link del ${p.hostIf} 2>/dev/null; ip netns del ${p.name} 2>/dev/null`,
        )
        .join('\n') +
      `\nip link del ${bridge} 2>/dev/null\n`,
  )

  try {
    await ip(['link', 'add', bridge, 'type', 'bridge'])
    await ip(['addr', 'add', `${hostAddress}/24`, 'dev', bridge])
    await ip(['link', 'set', bridge, 'up'])
    for (const pod of pods) {
      await ip(['netns', 'add', pod.name])
      await ip(['link', 'add', pod.hostIf, 'type', 'veth', 'peer', 'name', pod.nsIf])
      await ip(['link', 'set', pod.nsIf, 'netns', pod.name])
      await ip(['link', 'set', pod.hostIf, 'master', bridge])
      await ip(['link', 'set', pod.hostIf, 'up'])
      await ip(['netns', 'exec', pod.name, 'ip', 'addr', 'add', `${pod.address}/24`, 'dev', pod.nsIf])
      await ip(['netns', 'exec', pod.name, 'ip', 'link', 'set', pod.nsIf, 'up'])
      await ip(['netns', 'exec', pod.name, 'ip', 'link', 'set', 'lo', 'up'])
    }
  } catch (error) {
    cleanupSync()
    unregister()
    watchdog.end()
    throw error
  }

  const handles: Netns[] = pods.map((pod, i) => {
    const wrapper = path.join(scriptDir, `redis-server-${i}`)
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${pod.name} redis-server "$@"\n`)
    chmodSync(wrapper, 0o755)
    let destroyed = false
    return {
      name: pod.name,
      hostIf: pod.hostIf,
      hostAddress,
      address: pod.address,
      async startRedis(opts: NetnsRedisOptions = {}) {
        const server = await startRedis({
          binary: wrapper,
          bind: pod.address,
          port: opts.port ?? (await freePort('127.0.0.1')),
          args: ['--protected-mode', 'no', '--save', '', ...(opts.args ?? [])],
        })
        servers[i]!.push(server)
        return server
      },
      /** Removes this pod only (its servers, netns and veth); the network's destroy() does the rest. */
      async destroy() {
        if (destroyed) return
        destroyed = true
        await Promise.allSettled(servers[i]!.map((s) => s.stop()))
        cleanupPodSync(pod)
      },
    }
  })

  let destroyed = false
  return {
    bridge,
    hostAddress,
    pods: handles,
    async destroy() {
      if (destroyed) return
      destroyed = true
      await Promise.allSettled(servers.flat().map((s) => s.stop()))
      cleanupSync()
      unregister()
      watchdog.end()
    },
  }
}

/**
 * What a test's pod network left behind after destroy(): processes of `pids` still alive, and the
 * bridge, namespaces or veths still listed by `ip`. An Error naming them, or null when nothing is left.
 */
export function leftBehind(net: PodNetwork, pids: readonly number[]): Error | null {
  const alive = pids.filter((pid) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  })
  const names = [net.bridge, ...net.pods.flatMap((p) => [p.name, p.hostIf])]
  const listed = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }) + execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  const left = names.filter((name) => new RegExp(`(^|[\\s:])${name}([\\s:@]|$)`, 'm').test(listed))
  return alive.length || left.length ? new Error(`left behind: pids ${JSON.stringify(alive)}, interfaces/namespaces ${JSON.stringify(left)}`) : null
}
