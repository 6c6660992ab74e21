// Real Redis Clusters for tests: shards × (1 + replicas) redis-server processes on loopback, each
// with its own dir and nodes.conf, joined by `redis-cli --cluster create`. Kill and restart nodes
// to drive failovers, and read the topology (roles, slot owners) as the cluster reports it.
//
// Each node is a RedisServer from redis-server.ts, so the process guard covers it: no server
// outlives the test process, even when a test crashes before stop().
//
// Ports: the cluster bus listens on port + 10000, so a node's port must stay below 55536 and both
// ports must be free. Ports are taken below the kernel's ephemeral range where it allows it
// (p + 10000 too), so an outgoing connection of some other test cannot take a killed node's port
// before restart() binds it again.

import { execFile } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Redis, type RedisOptions } from 'ioredis'
import { freePort } from './ports.js'
import { guardChild, onProcessExit, startWatchdog, type Watchdog } from './process-guard.js'
import { findRedisServer, parseInfo, RedisStartError, startRedis, type RedisServer } from './redis-server.js'
import { waitFor } from './wait.js'
import { keySlot, SLOT_COUNT } from '../../src/routing/cluster-slots.js'

/** The cluster bus listens on the node's port plus this. */
export const CLUSTER_BUS_PORT_OFFSET = 10_000
/** Highest usable node port: its bus port must still be a valid port. */
export const MAX_CLUSTER_NODE_PORT = 65_535 - CLUSTER_BUS_PORT_OFFSET

export const REDIS_CLUSTER_DEFAULTS = {
  shards: 3,
  replicasPerShard: 1,
  nodeTimeoutMs: 2_000,
  /** redis-cli --cluster create gives up after this. */
  createTimeoutMs: 30_000,
  /** How long start, restart and waitForHealthy wait for a settled cluster. */
  settleTimeoutMs: 30_000,
  /** Lowest port picked below the ephemeral range. */
  lowPort: 12_000,
  /** Fresh ports tried per node when the picked one turns out to be taken. */
  portAttempts: 5,
  /** One-shot helper commands time out after this. */
  commandTimeoutMs: 2_000,
} as const

const HOST = '127.0.0.1'

export interface StartClusterOptions {
  /** Primaries. Default 3 (the minimum for a cluster that can fail over). */
  shards?: number
  /** Replicas per primary. Default 1. */
  replicasPerShard?: number
  /** `--cluster-node-timeout`. Default 2000 ms: failovers finish in a few seconds. */
  nodeTimeoutMs?: number
  /** Extra redis-server arguments for every node, after the helper's (a later `--name value` wins). */
  args?: string[]
  /** How long to wait for redis-cli and for the cluster to settle. Default 30 s each. */
  timeoutMs?: number
}

export type ClusterRole = 'primary' | 'replica'

/** One node of the cluster. role and primaryId are as of the last topology read (see refresh()). */
export interface ClusterNode {
  readonly host: string
  readonly port: number
  /** `127.0.0.1:port` */
  readonly address: string
  /** CLUSTER MYID; survives restart() (it is in the node's nodes.conf). */
  readonly id: string
  /** The node's working dir, with its nodes.conf. */
  readonly dir: string
  /** The redis-server process (logs(), info(), pause()...). Use the cluster's kill/restart/stop for the process itself. */
  readonly server: RedisServer
  readonly role: ClusterRole
  /** For a replica, its primary's id. */
  readonly primaryId: string | undefined
  /** Slot ranges this node owns, inclusive `[first, last]` pairs (empty for replicas). */
  readonly slots: readonly (readonly [number, number])[]
  readonly isRunning: boolean
}

export interface ClusterShard {
  readonly primary: ClusterNode
  readonly replicas: readonly ClusterNode[]
  readonly slots: readonly (readonly [number, number])[]
}

export interface ClusterTimings {
  /** Spawning every redis-server until each answered PING. */
  readonly serversMs: number
  /** `redis-cli --cluster create`. */
  readonly createMs: number
  /** From create's end until every node reported a settled cluster. */
  readonly settleMs: number
  readonly totalMs: number
}

export interface RedisCluster {
  /** Every node, in start order: the first `shards` were created as primaries. */
  readonly nodes: readonly ClusterNode[]
  /** `127.0.0.1:port` of every node, in start order. */
  readonly seeds: readonly string[]
  readonly nodeTimeoutMs: number
  readonly timings: ClusterTimings
  /** Nodes that own slots, as of the last topology read. */
  primaries(): ClusterNode[]
  /** Replicas of the primary with this id, as of the last topology read. */
  replicasOf(primaryId: string): ClusterNode[]
  /** Primaries with their replicas and slots, ordered by first slot. */
  shards(): ClusterShard[]
  /** The primary owning `slot`, as of the last topology read. */
  slotOwner(slot: number): ClusterNode
  /** The node with this id (throws if unknown). */
  node(id: string): ClusterNode
  /** Reads the topology (roles, slots) again from a running node; the waits below do it too. */
  refresh(): Promise<void>
  /**
   * Waits until every running node reports cluster_state:ok, all of them agree on the topology,
   * every slot is owned by a running node that nobody flags as failing, and every running
   * replica's link to its primary is up and synced. Then refreshes the topology.
   */
  waitForHealthy(opts?: { timeoutMs?: number }): Promise<void>
  /** SIGKILL (or `signal`) the node's process; its dir and nodes.conf stay. */
  kill(node: ClusterNode, signal?: NodeJS.Signals): Promise<void>
  /**
   * Starts the node again on its port and dir (SIGTERM first if it runs), so it rejoins with its
   * nodes.conf, and waits for a healthy cluster unless `wait: false`.
   */
  restart(node: ClusterNode, opts?: { wait?: boolean; timeoutMs?: number }): Promise<void>
  /**
   * Waits until a replica of the (killed) primary `oldPrimaryId` owns its slots and the cluster
   * is healthy again (see waitForHealthy). Resolves with the new primary and how long it waited.
   */
  waitForFailover(oldPrimaryId: string, opts?: { timeoutMs?: number }): Promise<{ primary: ClusterNode; waitedMs: number }>
  /** A new ioredis client to this one node (closed by stop()). Pass `{ readOnly: true }` to read from a replica. */
  client(node: ClusterNode, options?: RedisOptions): Redis
  /** Kills every node, closes clients, removes the dirs. Safe to call twice. */
  stop(): Promise<void>
}

// ---------------------------------------------------------------------------------------
// Key slots.

// The gateway's own CRC16 slot function (src/routing/cluster-slots.ts), checked here against the
// nodes' CLUSTER KEYSLOT as well.
export { keySlot, SLOT_COUNT }

// ---------------------------------------------------------------------------------------
// Ports.

interface PortRegistry {
  /** Node and bus ports handed out by this process; never handed out again. */
  readonly taken: Set<number>
}
const portKey = Symbol.for('redis-gateway.test.redis-cluster.ports')
const portGlobals = globalThis as unknown as Record<symbol, PortRegistry | undefined>
const portRegistry = (portGlobals[portKey] ??= { taken: new Set() })

function ephemeralRangeStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(first) && first > 0) return first
  } catch {
    // Not Linux: assume the IANA range.
  }
  return 49_152
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen({ port, host: HOST, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/** A port p <= 55535 with p and p + 10000 free a moment ago and never handed out by this process. */
async function clusterPort(): Promise<number> {
  const taken = portRegistry.taken
  const usable = async (port: number): Promise<boolean> =>
    port <= MAX_CLUSTER_NODE_PORT &&
    !taken.has(port) &&
    !taken.has(port + CLUSTER_BUS_PORT_OFFSET) &&
    (await canListen(port)) &&
    (await canListen(port + CLUSTER_BUS_PORT_OFFSET))
  const claim = (port: number): number => {
    taken.add(port)
    taken.add(port + CLUSTER_BUS_PORT_OFFSET)
    return port
  }

  // Below the ephemeral range (bus port included), where the kernel never picks local ports.
  const low = REDIS_CLUSTER_DEFAULTS.lowPort
  const high = Math.min(MAX_CLUSTER_NODE_PORT, ephemeralRangeStart() - 1 - CLUSTER_BUS_PORT_OFFSET)
  if (high - low >= 1_000) {
    for (let attempt = 0; attempt < 200; attempt++) {
      const port = low + Math.floor(Math.random() * (high - low + 1))
      if (await usable(port)) return claim(port)
    }
  }
  // Otherwise from the kernel's free ports, keeping those whose bus port fits and is free.
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await freePort(HOST)
    if (await usable(port)) return claim(port)
  }
  throw new Error(`no free port pair (p, p + ${CLUSTER_BUS_PORT_OFFSET}) with p <= ${MAX_CLUSTER_NODE_PORT} found`)
}

// ---------------------------------------------------------------------------------------
// One-shot commands on a fresh connection, closed again at once (nothing left open, no reconnects).

type Reply = string | number | null | Error | Reply[]

async function commands(port: number, cmds: readonly (readonly string[])[]): Promise<Reply[]> {
  const timeoutMs = REDIS_CLUSTER_DEFAULTS.commandTimeoutMs
  const client = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  })
  client.on('error', () => {}) // reported by connect() or the commands
  try {
    await client.connect()
    const pipeline = client.pipeline()
    for (const [name, ...args] of cmds) pipeline.call(name as string, ...args)
    const results = (await pipeline.exec()) ?? []
    return results.map(([err, value]) => (err ? err : (value as Reply)))
  } finally {
    client.disconnect()
  }
}

function text(reply: Reply | undefined, what: string, port: number): string {
  if (typeof reply === 'string') return reply
  throw new Error(`${what} on ${HOST}:${port}: ${reply instanceof Error ? reply.message : `unexpected reply ${String(reply)}`}`)
}

// ---------------------------------------------------------------------------------------
// CLUSTER NODES.

interface NodeLine {
  readonly id: string
  readonly address: string
  readonly flags: readonly string[]
  readonly role: ClusterRole
  readonly primaryId: string | undefined
  readonly slots: readonly (readonly [number, number])[]
}

function parseClusterNodes(reply: string): NodeLine[] {
  const lines: NodeLine[] = []
  for (const raw of reply.split('\n')) {
    const line = raw.trim()
    if (!line) continue
    const [id = '', addr = '', flagText = '', primary = '-', , , , , ...slotTokens] = line.split(' ')
    const flags = flagText.split(',')
    const slots: [number, number][] = []
    for (const token of slotTokens) {
      if (token.startsWith('[')) continue // a slot migrating or importing
      const [first, last = first] = token.split('-')
      slots.push([Number(first), Number(last)])
    }
    slots.sort((a, b) => a[0] - b[0])
    lines.push({
      id,
      address: addr.split('@')[0] ?? addr,
      flags,
      role: flags.includes('slave') ? 'replica' : 'primary',
      primaryId: primary === '-' ? undefined : primary,
      slots,
    })
  }
  return lines
}

const formatSlots = (slots: readonly (readonly [number, number])[]): string =>
  slots.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')

/** What every node must agree on: ids, roles, primaries and slots, without flags or timings. */
function canonicalView(lines: readonly NodeLine[]): string {
  return lines
    .filter((l) => !l.flags.includes('handshake') && !l.flags.includes('noaddr'))
    .map((l) => `${l.id} ${l.role} ${l.primaryId ?? '-'} ${formatSlots(l.slots)}`)
    .sort()
    .join('\n')
}

// ---------------------------------------------------------------------------------------

class Node implements ClusterNode {
  readonly host = HOST
  role: ClusterRole
  primaryId: string | undefined = undefined
  slots: (readonly [number, number])[] = []

  constructor(
    readonly server: RedisServer,
    readonly id: string,
    readonly dir: string,
    initialRole: ClusterRole,
  ) {
    this.role = initialRole
  }

  get port(): number {
    return this.server.port
  }

  get address(): string {
    return `${HOST}:${this.server.port}`
  }

  get isRunning(): boolean {
    return this.server.isRunning
  }
}

function findRedisCli(): string {
  try {
    return findRedisServer('redis-cli')
  } catch {
    throw new Error('redis-cli not found on PATH: the cluster tests form clusters with it (Debian/Ubuntu: apt-get install redis-tools, which redis-server brings).')
  }
}

/** Runs redis-cli (guarded like the servers) and resolves with its output; rejects with the output on failure. */
function runRedisCli(args: readonly string[], timeoutMs: number): Promise<string> {
  const binary = findRedisCli()
  return new Promise((resolve, reject) => {
    let release: (() => void) | undefined
    const child = execFile(binary, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      release?.()
      const output = `${stdout}${stderr ? `\n[stderr] ${stderr}` : ''}`
      if (error) reject(new Error(`redis-cli ${args.join(' ')} failed: ${error.message}\n--- output ---\n${output}\n---`))
      else resolve(output)
    })
    if (child.pid !== undefined) {
      const pid = child.pid
      release = guardChild(
        {
          killNowSync: () => {
            try {
              process.kill(pid, 'SIGKILL')
            } catch {
              // Already gone.
            }
          },
        },
        pid,
      )
    }
  })
}

interface NodeState {
  readonly node: Node
  readonly info: Record<string, string>
  readonly replication: Record<string, string>
  readonly lines: NodeLine[]
  readonly view: string
}

class Cluster implements RedisCluster {
  readonly nodes: Node[] = []
  timings: ClusterTimings = { serversMs: 0, createMs: 0, settleMs: 0, totalMs: 0 }
  private readonly clients = new Set<Redis>()
  private stopped = false
  private readonly unregisterDirCleanup: () => void
  private readonly dirWatchdog: Watchdog

  constructor(
    readonly root: string,
    readonly nodeTimeoutMs: number,
    private readonly settleTimeoutMs: number,
  ) {
    // The servers are guarded by RedisServer; the dirs here: by an exit hook, and by a watchdog
    // shell if this process dies without running exit hooks (a second rm for files a dying server wrote).
    this.unregisterDirCleanup = onProcessExit(() => rmSync(root, { recursive: true, force: true }))
    const quoted = `'${root.replaceAll("'", `'\\''`)}'`
    this.dirWatchdog = startWatchdog(`cat >/dev/null; rm -rf ${quoted}; sleep 1; rm -rf ${quoted}`)
  }

  get seeds(): string[] {
    return this.nodes.map((n) => n.address)
  }

  primaries(): ClusterNode[] {
    return this.nodes.filter((n) => n.role === 'primary' && n.slots.length > 0)
  }

  replicasOf(primaryId: string): ClusterNode[] {
    return this.nodes.filter((n) => n.role === 'replica' && n.primaryId === primaryId)
  }

  shards(): ClusterShard[] {
    return this.primaries()
      .map((primary) => ({ primary, replicas: this.replicasOf(primary.id), slots: primary.slots }))
      .sort((a, b) => (a.slots[0]?.[0] ?? 0) - (b.slots[0]?.[0] ?? 0))
  }

  slotOwner(slot: number): ClusterNode {
    if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) throw new RangeError(`slot ${slot} is not in 0..${SLOT_COUNT - 1}`)
    const owner = this.nodes.find((n) => n.slots.some(([a, b]) => slot >= a && slot <= b))
    if (!owner) throw new Error(`slot ${slot} has no owner in the last topology read`)
    return owner
  }

  node(id: string): ClusterNode {
    const node = this.nodes.find((n) => n.id === id)
    if (!node) throw new Error(`no node with id ${id} in this cluster`)
    return node
  }

  async refresh(): Promise<void> {
    let lastError: unknown
    for (const node of this.nodes.filter((n) => n.isRunning)) {
      try {
        const [reply] = await commands(node.port, [['CLUSTER', 'NODES']])
        this.apply(parseClusterNodes(text(reply, 'CLUSTER NODES', node.port)))
        return
      } catch (error) {
        lastError = error
      }
    }
    throw new Error('refresh: no running node answered CLUSTER NODES', { cause: lastError })
  }

  async waitForHealthy(opts: { timeoutMs?: number } = {}): Promise<void> {
    const states = await waitFor(() => this.checkHealthy(), {
      timeoutMs: opts.timeoutMs ?? this.settleTimeoutMs,
      message: 'a healthy cluster (cluster_state:ok and one topology on every running node, replica links up)',
    })
    const first = states[0]
    if (first) this.apply(first.lines)
  }

  async kill(node: ClusterNode, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.own(node).server.kill(signal)
  }

  async restart(node: ClusterNode, opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.own(node).server.restart()
    if (opts.wait !== false) await this.waitForHealthy(opts)
  }

  async waitForFailover(oldPrimaryId: string, opts: { timeoutMs?: number } = {}): Promise<{ primary: ClusterNode; waitedMs: number }> {
    const started = Date.now()
    const old = this.node(oldPrimaryId)
    const formerReplicas = new Set(this.replicasOf(oldPrimaryId).map((n) => n.id))
    const formerSlots = old.slots.length > 0 ? old.slots : undefined
    const states = await waitFor(
      async () => {
        const states = await this.checkHealthy()
        const lines = states[0]?.lines ?? []
        const oldLine = lines.find((l) => l.id === oldPrimaryId)
        if (oldLine && oldLine.role === 'primary' && oldLine.slots.length > 0) throw new Error(`${old.address} still owns slots ${formatSlots(oldLine.slots)}`)
        const firstSlot = formerSlots?.[0]?.[0]
        const owner = firstSlot === undefined ? undefined : lines.find((l) => l.slots.some(([a, b]) => firstSlot >= a && firstSlot <= b))
        if (formerReplicas.size > 0 && (!owner || !formerReplicas.has(owner.id))) {
          throw new Error(`slot ${firstSlot} is owned by ${owner?.address ?? 'nobody'}, not by a former replica of ${old.address}`)
        }
        return states
      },
      {
        timeoutMs: opts.timeoutMs ?? this.nodeTimeoutMs * 5 + 15_000,
        message: `a replica of ${old.address} (${oldPrimaryId}) to take over its slots, with a healthy cluster`,
      },
    )
    const first = states[0]
    if (first) this.apply(first.lines)
    const firstSlot = formerSlots?.[0]?.[0]
    const primary = firstSlot === undefined ? this.primaries().find((n) => formerReplicas.has(n.id)) : this.slotOwner(firstSlot)
    if (!primary) throw new Error(`no former replica of ${old.address} is a primary`)
    return { primary, waitedMs: Date.now() - started }
  }

  client(node: ClusterNode, options: RedisOptions = {}): Redis {
    const client = this.own(node).server.client(options)
    this.clients.add(client)
    client.once('end', () => this.clients.delete(client))
    return client
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const client of this.clients) client.disconnect()
    this.clients.clear()
    // SIGKILL all at once: nothing is kept, and a primary on SIGTERM may wait for its replicas.
    await Promise.all(this.nodes.map((n) => n.server.kill('SIGKILL')))
    await Promise.all(this.nodes.map((n) => n.server.stop()))
    await rm(this.root, { recursive: true, force: true })
    this.unregisterDirCleanup()
    this.dirWatchdog.end()
  }

  // -------------------------------------------------------------------------------------

  private own(node: ClusterNode): Node {
    const own = this.nodes.find((n) => n === node || n.id === node.id)
    if (!own) throw new Error(`${node.address} is not a node of this cluster`)
    if (this.stopped) throw new Error('the cluster was stopped')
    return own
  }

  /** Takes roles and slots from one CLUSTER NODES reply. */
  private apply(lines: readonly NodeLine[]): void {
    for (const line of lines) {
      const node = this.nodes.find((n) => n.id === line.id)
      if (!node) continue
      node.role = line.role
      node.primaryId = line.primaryId
      node.slots = line.role === 'primary' ? [...line.slots] : []
    }
  }

  /** Every running node's state when the cluster is healthy (see waitForHealthy); throws what is missing otherwise. */
  private async checkHealthy(): Promise<NodeState[]> {
    const running = this.nodes.filter((n) => n.isRunning)
    if (running.length === 0) throw new Error('no node is running')
    const runningIds = new Set(running.map((n) => n.id))
    const knownIds = new Set(this.nodes.map((n) => n.id))

    const states = await Promise.all(
      running.map(async (node): Promise<NodeState> => {
        const [info, nodes, replication] = await commands(node.port, [['CLUSTER', 'INFO'], ['CLUSTER', 'NODES'], ['INFO', 'replication']])
        const lines = parseClusterNodes(text(nodes, 'CLUSTER NODES', node.port))
        return {
          node,
          info: parseInfo(text(info, 'CLUSTER INFO', node.port)),
          replication: parseInfo(text(replication, 'INFO replication', node.port)),
          lines,
          view: canonicalView(lines),
        }
      }),
    )

    for (const { node, info, replication, lines } of states) {
      const where = `${node.address} (${node.id})`
      if (info['cluster_state'] !== 'ok') throw new Error(`${where}: cluster_state:${info['cluster_state']}`)
      if (info['cluster_slots_assigned'] !== String(SLOT_COUNT)) throw new Error(`${where}: cluster_slots_assigned:${info['cluster_slots_assigned']}`)
      const ids = lines.filter((l) => !l.flags.includes('handshake')).map((l) => l.id)
      const missing = [...knownIds].filter((id) => !ids.includes(id))
      if (missing.length > 0) throw new Error(`${where} does not know ${missing.join(', ')} yet`)
      const strangers = lines.filter((l) => !knownIds.has(l.id))
      if (strangers.length > 0) throw new Error(`${where} lists nodes not of this cluster: ${strangers.map((l) => `${l.id} ${l.address} ${l.flags.join(',')}`).join('; ')}`)
      for (const line of lines) {
        const failing = line.flags.find((f) => f === 'fail' || f === 'fail?')
        if (runningIds.has(line.id) && failing) throw new Error(`${where} flags running node ${line.address} as ${failing}`)
        if (line.slots.length > 0 && !runningIds.has(line.id)) throw new Error(`${where}: slots ${formatSlots(line.slots)} are owned by ${line.address}, which is not running`)
      }
      const self = lines.find((l) => l.flags.includes('myself'))
      if (self?.id !== node.id) throw new Error(`${where} reports itself as ${self?.id ?? 'nobody'}`)
      if (self.role === 'replica') {
        const primary = this.nodes.find((n) => n.id === self.primaryId)
        if (replication['role'] !== 'slave') throw new Error(`${where} is a replica in CLUSTER NODES but role:${replication['role']} in INFO`)
        if (!primary?.isRunning) throw new Error(`${where} replicates ${self.primaryId ?? '?'}, which is not running`)
        if (replication['master_port'] !== String(primary.port)) throw new Error(`${where} replicates port ${replication['master_port']}, not its primary ${primary.address}`)
        if (replication['master_link_status'] !== 'up' || replication['master_sync_in_progress'] !== '0') {
          throw new Error(`${where}: master_link_status:${replication['master_link_status']} master_sync_in_progress:${replication['master_sync_in_progress']}`)
        }
      } else if (replication['role'] !== 'master') {
        throw new Error(`${where} is a primary in CLUSTER NODES but role:${replication['role']} in INFO`)
      }
    }

    const [first, ...rest] = states
    const disagreeing = rest.find((s) => s.view !== first?.view)
    if (first && disagreeing) {
      throw new Error(`${first.node.address} and ${disagreeing.node.address} disagree on the topology:\n${first.view}\n---\n${disagreeing.view}`)
    }
    return states
  }

  // -------------------------------------------------------------------------------------
  // Start-up.

  async startNodes(count: number, args: readonly string[]): Promise<void> {
    const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => this.startNode(i, args)))
    for (const result of results) if (result.status === 'fulfilled') this.nodes.push(result.value)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
    // In start order, whatever order the starts finished in.
    this.nodes.sort((a, b) => Number(path.basename(a.dir)) - Number(path.basename(b.dir)))
  }

  private async startNode(index: number, args: readonly string[]): Promise<Node> {
    const dir = path.join(this.root, String(index))
    for (let attempt = 1; ; attempt++) {
      // A start that failed on the bus port may have written nodes.conf already.
      await rm(dir, { recursive: true, force: true })
      await mkdir(dir, { recursive: true })
      const port = await clusterPort()
      try {
        const server = await startRedis({
          port,
          dir,
          args: [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', path.join(dir, 'nodes.conf'),
            '--cluster-node-timeout', String(this.nodeTimeoutMs),
            '--appendonly', 'no',
            '--save', '',
            ...args,
          ],
        })
        try {
          const [id] = await commands(port, [['CLUSTER', 'MYID']])
          return new Node(server, text(id, 'CLUSTER MYID', port), dir, 'primary')
        } catch (error) {
          await server.stop()
          throw error
        }
      } catch (error) {
        const retry = error instanceof RedisStartError && error.addressInUse && attempt < REDIS_CLUSTER_DEFAULTS.portAttempts
        if (!retry) throw error
      }
    }
  }

  async create(replicasPerShard: number, timeoutMs: number): Promise<void> {
    await runRedisCli(['--cluster', 'create', ...this.seeds, '--cluster-replicas', String(replicasPerShard), '--cluster-yes'], timeoutMs)
  }
}

/**
 * Starts shards × (1 + replicasPerShard) cluster-enabled redis-servers on loopback, forms the
 * cluster with `redis-cli --cluster create` (the first `shards` nodes become the primaries;
 * which replica follows which primary is up to redis-cli) and resolves once it is healthy (see
 * RedisCluster.waitForHealthy). Stop it with stop(); the process guard kills it if a test dies first.
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<RedisCluster> {
  const shards = opts.shards ?? REDIS_CLUSTER_DEFAULTS.shards
  const replicasPerShard = opts.replicasPerShard ?? REDIS_CLUSTER_DEFAULTS.replicasPerShard
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? REDIS_CLUSTER_DEFAULTS.nodeTimeoutMs
  if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`shards must be a positive integer, not ${shards}`)
  if (!Number.isInteger(replicasPerShard) || replicasPerShard < 0) throw new RangeError(`replicasPerShard must be a non-negative integer, not ${replicasPerShard}`)
  // redis-cli refuses fewer than 3 primaries.
  if (shards < 3) throw new RangeError(`redis-cli --cluster create needs at least 3 shards, not ${shards}`)
  findRedisCli()

  const started = Date.now()
  const root = await mkdtemp(path.join(os.tmpdir(), 'redis-gateway-cluster-'))
  const cluster = new Cluster(root, nodeTimeoutMs, opts.timeoutMs ?? REDIS_CLUSTER_DEFAULTS.settleTimeoutMs)
  try {
    await cluster.startNodes(shards * (1 + replicasPerShard), opts.args ?? [])
    const serversDone = Date.now()
    await cluster.create(replicasPerShard, opts.timeoutMs ?? REDIS_CLUSTER_DEFAULTS.createTimeoutMs)
    const created = Date.now()
    await cluster.waitForHealthy()
    const settled = Date.now()
    cluster.timings = { serversMs: serversDone - started, createMs: created - serversDone, settleMs: settled - created, totalMs: settled - started }
    return cluster
  } catch (error) {
    const logs = cluster.nodes
      .map((n) => `--- ${n.address} (${n.id}) ---\n${n.server.logs().split('\n').slice(-20).join('\n')}`)
      .join('\n')
    await cluster.stop()
    if (error instanceof Error && logs) error.message += `\n--- node logs (last lines) ---\n${logs}`
    throw error
  }
}

// ---------------------------------------------------------------------------------------
// Resharding and scaling out with redis-cli --cluster (reshard, add-node, rebalance).

export interface ReshardOptions {
  /** The primary giving slots away. */
  readonly from: ClusterNode
  /** The primary taking them. */
  readonly to: ClusterNode
  /** How many slots to move. */
  readonly slots: number
  /** `--cluster-pipeline`: keys per MIGRATE. Default redis-cli's (10). */
  readonly pipeline?: number
  /** For redis-cli, then for the cluster to settle. Default 60 s. */
  readonly timeoutMs?: number
}

/**
 * The slots `redis-cli --cluster reshard --cluster-from <from>` takes from a single source for
 * `count`: its lowest `count` slots (clusterManagerComputeReshardTable walks them in order).
 */
export function slotsToMove(from: ClusterNode, count: number): number[] {
  const out: number[] = []
  for (const [a, b] of from.slots) {
    for (let s = a; s <= b && out.length < count; s++) out.push(s)
  }
  return out
}

/**
 * Moves `slots` slots (and their keys) from one primary to another with `redis-cli --cluster
 * reshard ... --cluster-yes`, then waits for a healthy cluster (topology refreshed). Resolves with
 * redis-cli's output and how long the reshard itself took.
 */
export async function reshard(cluster: RedisCluster, opts: ReshardOptions): Promise<{ output: string; ms: number }> {
  const timeoutMs = opts.timeoutMs ?? 60_000
  const started = Date.now()
  const output = await runRedisCli(
    [
      '--cluster', 'reshard', opts.from.address,
      '--cluster-from', opts.from.id,
      '--cluster-to', opts.to.id,
      '--cluster-slots', String(opts.slots),
      '--cluster-yes',
      ...(opts.pipeline !== undefined ? ['--cluster-pipeline', String(opts.pipeline)] : []),
    ],
    timeoutMs,
  )
  const ms = Date.now() - started
  await cluster.waitForHealthy({ timeoutMs })
  return { output, ms }
}

/**
 * Starts one more cluster-enabled redis-server (same node timeout and port rules as the others,
 * `args` after the helper's) and joins it with `redis-cli --cluster add-node <new> <existing>`:
 * an empty primary, or a replica of `replicaOf`. It becomes one of the cluster's nodes (seeds,
 * health checks, stop()), and resolves once the cluster is healthy with it.
 */
export async function addNode(
  cluster: RedisCluster,
  opts: { readonly replicaOf?: ClusterNode; readonly args?: readonly string[]; readonly timeoutMs?: number } = {},
): Promise<ClusterNode> {
  if (!(cluster instanceof Cluster)) throw new Error('addNode: not a cluster started by startCluster()')
  const existing = cluster.nodes.find((n) => n.isRunning)
  if (!existing) throw new Error('addNode: no node of the cluster is running')
  const timeoutMs = opts.timeoutMs ?? REDIS_CLUSTER_DEFAULTS.settleTimeoutMs
  const index = cluster.nodes.reduce((max, n) => Math.max(max, Number(path.basename(n.dir))), -1) + 1
  // startNode is the cluster's own (ports, dir, nodes.conf, CLUSTER MYID); private to keep the class's API small.
  const node = await cluster['startNode'](index, opts.args ?? [])
  // A node of the cluster from now on: stop() kills it, and waitForHealthy expects it everywhere.
  cluster.nodes.push(node)
  await runRedisCli(
    [
      '--cluster', 'add-node', node.address, existing.address,
      ...(opts.replicaOf ? ['--cluster-slave', '--cluster-master-id', opts.replicaOf.id] : []),
    ],
    timeoutMs,
  )
  await cluster.waitForHealthy({ timeoutMs })
  return node
}

/**
 * `redis-cli --cluster rebalance` (with `--cluster-use-empty-masters` unless told otherwise, so
 * primaries without slots, e.g. from addNode, get their share), then waits for a healthy cluster.
 * Resolves with redis-cli's output and how long the rebalance itself took.
 */
export async function rebalance(
  cluster: RedisCluster,
  opts: { readonly useEmptyMasters?: boolean; readonly pipeline?: number; readonly timeoutMs?: number } = {},
): Promise<{ output: string; ms: number }> {
  const node = cluster.nodes.find((n) => n.isRunning)
  if (!node) throw new Error('rebalance: no node of the cluster is running')
  const timeoutMs = opts.timeoutMs ?? 60_000
  const started = Date.now()
  const output = await runRedisCli(
    [
      '--cluster', 'rebalance', node.address,
      ...(opts.useEmptyMasters === false ? [] : ['--cluster-use-empty-masters']),
      ...(opts.pipeline !== undefined ? ['--cluster-pipeline', String(opts.pipeline)] : []),
      '--cluster-yes',
    ],
    timeoutMs,
  )
  const ms = Date.now() - started
  await cluster.waitForHealthy({ timeoutMs })
  return { output, ms }
}
