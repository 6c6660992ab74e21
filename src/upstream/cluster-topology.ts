// The slot map of one Redis Cluster instance, learned from the cluster itself: CLUSTER
// SHARDS (Redis 7+), or CLUSTER SLOTS when a node does not know SHARDS, parsed by
// routing/cluster-slots.ts and swapped in whole. No connections of its own: commands go through an
// injected send() (the caller's endpoint clients), results through callbacks (no metrics or logs
// here). Construction does no I/O and starts no timer; start() refreshes and arms the periodic
// refresh, stop() disarms it for good.
//
// refresh(reason) asks the seeds one at a time, each within refreshTimeoutMs: the instance's
// discovered endpoints in their order, then the accepted nodes of the last known map. The first
// usable reply wins. Runs are single-flight (concurrent calls share one run) and start at least
// minIntervalMs apart (calls in between share the next run), so a storm of MOVED replies makes one
// CLUSTER SHARDS every minIntervalMs at most, not one per reply.
//
// No SSRF through a hostile reply: a node is used (as a route or as a seed) only when its address,
// as announced, is one of the instance's discovered endpoints, or allowUndiscoveredNodes is set, or
// the caller's allowedNode(host, port) says yes. Refused nodes are reported (onRefused, the result,
// the state) and the slots of a shard whose primary is refused count as uncovered. An announced
// endpoint of '' or '?' (unknown) means the host that was asked, with the node's own port.
//
// A reply that does not parse (ClusterReplyError), or covers no slot, is that seed's failure: the
// next seed is asked, and when none answers usably the previous map stays and onError hears why.

import { performance } from 'node:perf_hooks'
import { endpointId } from '../core/topology.js'
import type { Arg } from '../core/command.js'
import type { RawReply } from '../core/reply.js'
import { parseClusterShards, parseClusterSlots, type ClusterNode, type SlotMap, type TopologySource } from '../routing/cluster-slots.js'

/** Where a command goes: a discovered endpoint, or a cluster node as announced. */
export interface ClusterEndpoint {
  readonly host: string
  readonly port: number
}

/**
 * Sends one command to an endpoint and resolves with its reply. A Redis error reply may either
 * reject or resolve as an Error (EndpointClient.send rejects); both are understood.
 */
export type ClusterSend = (endpoint: ClusterEndpoint, args: readonly Arg[]) => Promise<RawReply>

export interface ClusterTopologyClock {
  /** Milliseconds, monotonic. */
  now(): number
  /** Calls fn after ms; returns a cancel function. The default timer is unref'd. */
  schedule(fn: () => void, ms: number): () => void
}

export const NODE_CLUSTER_CLOCK: ClusterTopologyClock = {
  now: () => performance.now(),
  schedule(fn, ms) {
    const t = setTimeout(fn, Math.max(1, ms))
    t.unref()
    return () => clearTimeout(t)
  },
}

export const CLUSTER_TOPOLOGY_DEFAULTS = {
  /** Each seed must answer CLUSTER SHARDS (or SLOTS) within this. */
  refreshTimeoutMs: 2_000,
  /** Runs start at least this far apart: a MOVED storm must not become a CLUSTER SHARDS storm. */
  minIntervalMs: 100,
  /** A refresh this long after the last one ended (0: no periodic refresh). */
  periodicMs: 5_000,
  /** Nodes the cluster names but discovery does not know are refused (SSRF). */
  allowUndiscoveredNodes: false,
  /** Plaintext ports are used; true uses the announced tls-port where there is one. */
  tls: false,
} as const

/** A node the cluster announced that will not be connected to, and why. */
export interface RefusedNode {
  readonly id: string
  readonly host: string
  /** null when the node announces no port usable with the connection's TLS setting. */
  readonly port: number | null
  readonly role: 'primary' | 'replica'
  /** Slots of its shard when it is the shard's primary (now uncovered), else 0. */
  readonly slots: number
  readonly reason: string
}

/** One learned topology, immutable: the parsed map and what the gateway may connect to. */
export interface ClusterTopologyState {
  readonly map: SlotMap
  /** Accepted nodes' addresses, by node id (refused nodes are absent). */
  readonly addresses: ReadonlyMap<string, ClusterEndpoint & { readonly id: string }>
  readonly refused: readonly RefusedNode[]
  /** Slots whose shard's primary is accepted: SLOT_COUNT when everything can be served. */
  readonly servedSlots: number
  /** The seed that answered, and with which command. */
  readonly from: ClusterEndpoint
  readonly command: TopologySource
  /** Clock time of the reply. */
  readonly at: number
  /** Equal for equal topologies (ids, roles, health, addresses and whether they are accepted, slots; not replication offsets). */
  readonly fingerprint: string
}

export interface RefreshAttempt {
  readonly endpoint: ClusterEndpoint
  readonly command: TopologySource
  /** null: this attempt gave the map. */
  readonly error: Error | null
}

export interface RefreshResult {
  /** The reasons of every refresh() call this run served, in order, without repeats. */
  readonly reasons: readonly string[]
  /** A map was learned this run (it may be the same topology as before). */
  readonly ok: boolean
  /** The learned topology differs from the previous one (onChange was called). */
  readonly changed: boolean
  /** The current topology after the run: the new one, or the old one kept. */
  readonly state: ClusterTopologyState | null
  /** Why no map was learned (null when ok). */
  readonly error: Error | null
  readonly attempts: readonly RefreshAttempt[]
}

export interface ClusterTopologyOptions {
  /** The instance's name, for messages. */
  readonly name: string
  /** The instance's discovered endpoints, in order: the first seeds, and the nodes that are always allowed. */
  readonly endpoints: readonly ClusterEndpoint[]
  readonly send: ClusterSend
  readonly refreshTimeoutMs?: number
  readonly minIntervalMs?: number
  readonly periodicMs?: number
  /** Documented opt-in: connect to any node the cluster names. Default false. */
  readonly allowUndiscoveredNodes?: boolean
  /** Allows a node discovery does not know (e.g. one of the instance's Service endpoints). */
  readonly allowedNode?: (host: string, port: number) => boolean
  readonly tls?: boolean
  readonly clock?: ClusterTopologyClock
  /** A new topology (not called when a refresh finds the same one). */
  readonly onChange?: (state: ClusterTopologyState, previous: ClusterTopologyState | null) => void
  /** A run learned nothing (every seed failed), or a callback threw. */
  readonly onError?: (err: Error) => void
  /** Nodes refused in a newly learned topology (called with the new state, before onChange). */
  readonly onRefused?: (refused: readonly RefusedNode[], state: ClusterTopologyState) => void
}

/** No seed gave a usable map. */
export class ClusterTopologyError extends Error {
  override readonly name = 'ClusterTopologyError'
}

const SHARDS: readonly Arg[] = ['CLUSTER', 'SHARDS']
const SLOTS: readonly Arg[] = ['CLUSTER', 'SLOTS']
/** Redis before 7.0: "ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP." (and "Unknown subcommand" in 6.x). */
const UNKNOWN_SUBCOMMAND = /unknown subcommand|unknown command/i
/** Endpoints remembered as not knowing CLUSTER SHARDS; the set is cleared beyond this. */
const MAX_SLOTS_ONLY = 1_024

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

function keyOf(e: ClusterEndpoint): string {
  return endpointId(e.host.toLowerCase(), e.port)
}

export class ClusterTopology {
  readonly name: string
  private readonly send: ClusterSend
  private readonly clock: ClusterTopologyClock
  private readonly refreshTimeoutMs: number
  private readonly minIntervalMs: number
  private readonly periodicMs: number
  private readonly allowUndiscovered: boolean
  private readonly allowedNode: ((host: string, port: number) => boolean) | null
  private readonly tls: boolean
  private endpoints: readonly ClusterEndpoint[]
  private discovered: Set<string>
  private current: ClusterTopologyState | null = null
  /** The run in progress or waiting for its slot (shared by every refresh() meanwhile). */
  private pending: Promise<RefreshResult> | null = null
  private pendingReasons: string[] = []
  private lastRunAt = -Infinity
  private started = false
  private stopped = false
  private cancelPeriodic: (() => void) | null = null
  private cancelWait: (() => void) | null = null
  private resolveWait: (() => void) | null = null
  private readonly slotsOnly = new Set<string>()

  constructor(private readonly opts: ClusterTopologyOptions) {
    this.name = opts.name
    this.send = opts.send
    this.clock = opts.clock ?? NODE_CLUSTER_CLOCK
    this.refreshTimeoutMs = opts.refreshTimeoutMs ?? CLUSTER_TOPOLOGY_DEFAULTS.refreshTimeoutMs
    this.minIntervalMs = opts.minIntervalMs ?? CLUSTER_TOPOLOGY_DEFAULTS.minIntervalMs
    this.periodicMs = opts.periodicMs ?? CLUSTER_TOPOLOGY_DEFAULTS.periodicMs
    this.allowUndiscovered = opts.allowUndiscoveredNodes ?? CLUSTER_TOPOLOGY_DEFAULTS.allowUndiscoveredNodes
    this.allowedNode = opts.allowedNode ?? null
    this.tls = opts.tls ?? CLUSTER_TOPOLOGY_DEFAULTS.tls
    for (const [k, v] of [
      ['refreshTimeoutMs', this.refreshTimeoutMs],
      ['minIntervalMs', this.minIntervalMs],
      ['periodicMs', this.periodicMs],
    ] as const) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`ClusterTopology ${opts.name}: ${k} must be a non-negative number, not ${v}`)
    }
    this.endpoints = [...opts.endpoints]
    this.discovered = new Set(this.endpoints.map(keyOf))
  }

  /** The current topology; null before the first successful refresh. */
  get state(): ClusterTopologyState | null {
    return this.current
  }

  /** The current slot map; null before the first successful refresh. */
  get map(): SlotMap | null {
    return this.current?.map ?? null
  }

  /** Refreshes now and arms the periodic refresh. Idempotent; never rejects. */
  start(): Promise<RefreshResult> {
    if (this.stopped) return Promise.resolve(this.stoppedResult('start'))
    if (this.started) return this.refresh('start')
    this.started = true
    return this.refresh('start')
  }

  /** Disarms the timers for good; a run in flight finishes but its result is not adopted. */
  stop(): void {
    this.stopped = true
    this.cancelPeriodic?.()
    this.cancelPeriodic = null
    this.cancelWait?.()
    this.cancelWait = null
    // A run waiting for its slot starts at once and finds itself stopped.
    const wake = this.resolveWait
    this.resolveWait = null
    wake?.()
  }

  /**
   * Discovery's endpoints changed: they become the first seeds and the always-allowed nodes. A
   * refresh follows when started and the set changed. Refused nodes of the current map that are
   * now discovered are accepted at that refresh (not before).
   */
  setEndpoints(endpoints: readonly ClusterEndpoint[]): void {
    const next = new Set(endpoints.map(keyOf))
    const same = next.size === this.discovered.size && [...next].every((k) => this.discovered.has(k))
    this.endpoints = [...endpoints]
    this.discovered = next
    if (!same && this.started && !this.stopped) void this.refresh('endpoints')
  }

  /** Whether the gateway may connect to this address (discovered, or allowed by the options). */
  allowed(host: string, port: number): boolean {
    if (this.discovered.has(keyOf({ host, port }))) return true
    if (this.allowUndiscovered) return true
    return this.allowedNode?.(host, port) === true
  }

  /**
   * Learns the slot map again (see the header). Single-flight; runs at least minIntervalMs apart.
   * Never rejects: failures are in the result (and onError).
   */
  refresh(reason: string): Promise<RefreshResult> {
    if (this.stopped) return Promise.resolve(this.stoppedResult(reason))
    if (!this.pendingReasons.includes(reason)) this.pendingReasons.push(reason)
    if (this.pending !== null) return this.pending
    const p = this.waitForSlot()
      .then(() => {
        const reasons = this.pendingReasons
        this.pendingReasons = []
        return this.run(reasons)
      })
      .catch((err: unknown): RefreshResult => {
        // A bug, not a seed's failure: still reported, never a rejection.
        const error = toError(err)
        this.report(error)
        return { reasons: [reason], ok: false, changed: false, state: this.current, error, attempts: [] }
      })
      .finally(() => {
        this.pending = null
        this.armPeriodic()
      })
    this.pending = p
    return p
  }

  private waitForSlot(): Promise<void> {
    const wait = this.lastRunAt + this.minIntervalMs - this.clock.now()
    if (wait <= 0) return Promise.resolve()
    return new Promise((resolve) => {
      this.resolveWait = resolve
      this.cancelWait = this.clock.schedule(() => {
        this.cancelWait = null
        this.resolveWait = null
        resolve()
      }, wait)
    })
  }

  private armPeriodic(): void {
    this.cancelPeriodic?.()
    this.cancelPeriodic = null
    if (!this.started || this.stopped || this.periodicMs === 0) return
    this.cancelPeriodic = this.clock.schedule(() => {
      this.cancelPeriodic = null
      void this.refresh('periodic')
    }, this.periodicMs)
  }

  private stoppedResult(reason: string): RefreshResult {
    return { reasons: [reason], ok: false, changed: false, state: this.current, error: new ClusterTopologyError(`cluster topology of ${this.name} is stopped`), attempts: [] }
  }

  /**
   * Discovered endpoints in order, then the accepted nodes of the last map (primaries first), each
   * once; a node of the last map is asked only while it is still allowed (discovery may have
   * dropped it since).
   */
  private seeds(): ClusterEndpoint[] {
    const seen = new Set<string>()
    const out: ClusterEndpoint[] = []
    const add = (e: ClusterEndpoint): void => {
      const k = keyOf(e)
      if (seen.has(k) || !this.allowed(e.host, e.port)) return
      seen.add(k)
      out.push({ host: e.host, port: e.port })
    }
    for (const e of this.endpoints) add(e)
    const cur = this.current
    if (cur !== null) {
      for (const shard of cur.map.shards) {
        const a = cur.addresses.get(shard.primary.id)
        if (a !== undefined) add(a)
      }
      for (const a of cur.addresses.values()) add(a)
    }
    return out
  }

  private async run(reasons: string[]): Promise<RefreshResult> {
    if (this.stopped) return this.stoppedResult(reasons[0] ?? 'stopped')
    this.lastRunAt = this.clock.now()
    const attempts: RefreshAttempt[] = []
    const seeds = this.seeds()
    if (seeds.length === 0) {
      const error = new ClusterTopologyError(`cluster topology of ${this.name}: no endpoint to ask`)
      this.report(error)
      return { reasons, ok: false, changed: false, state: this.current, error, attempts }
    }
    for (const seed of seeds) {
      if (this.stopped) return this.stoppedResult(reasons[0] ?? 'stopped')
      const learned = await this.ask(seed, attempts)
      if (learned === null) continue
      if (this.stopped) return this.stoppedResult(reasons[0] ?? 'stopped')
      const previous = this.current
      const changed = previous === null || previous.fingerprint !== learned.fingerprint
      this.current = changed ? learned : previous
      if (changed) {
        if (learned.refused.length > 0) this.call(() => this.opts.onRefused?.(learned.refused, learned))
        this.call(() => this.opts.onChange?.(learned, previous))
      }
      return { reasons, ok: true, changed, state: this.current, error: null, attempts }
    }
    const detail = attempts.map((a) => `${endpointId(a.endpoint.host, a.endpoint.port)} ${a.command}: ${a.error?.message ?? 'ok'}`).join('; ')
    const error = new ClusterTopologyError(`cluster topology of ${this.name}: no seed gave a usable map (${detail})`)
    this.report(error)
    return { reasons, ok: false, changed: false, state: this.current, error, attempts }
  }

  /** CLUSTER SHARDS (or SLOTS) from one seed; null when it failed (recorded in attempts). */
  private async ask(seed: ClusterEndpoint, attempts: RefreshAttempt[]): Promise<ClusterTopologyState | null> {
    const k = keyOf(seed)
    let command: TopologySource = this.slotsOnly.has(k) ? 'CLUSTER SLOTS' : 'CLUSTER SHARDS'
    for (;;) {
      try {
        const reply = await this.timed(seed, command === 'CLUSTER SHARDS' ? SHARDS : SLOTS)
        const map = command === 'CLUSTER SHARDS' ? parseClusterShards(reply) : parseClusterSlots(reply)
        if (map.coveredSlots === 0) throw new ClusterTopologyError(`${command} reply covers no slot (the cluster is not formed yet)`)
        attempts.push({ endpoint: seed, command, error: null })
        return this.resolve(map, seed, command)
      } catch (err) {
        const e = toError(err)
        attempts.push({ endpoint: seed, command, error: e })
        if (command === 'CLUSTER SHARDS' && UNKNOWN_SUBCOMMAND.test(e.message) && !(e instanceof ClusterTopologyError)) {
          if (this.slotsOnly.size >= MAX_SLOTS_ONLY) this.slotsOnly.clear()
          this.slotsOnly.add(k)
          command = 'CLUSTER SLOTS'
          continue
        }
        return null
      }
    }
  }

  /** send() within refreshTimeoutMs on the injected clock; an Error reply rejects. */
  private timed(seed: ClusterEndpoint, args: readonly Arg[]): Promise<RawReply> {
    return new Promise<RawReply>((resolve, reject) => {
      let settled = false
      const cancel = this.clock.schedule(() => {
        if (settled) return
        settled = true
        reject(new ClusterTopologyError(`${args.join(' ')} did not answer within ${this.refreshTimeoutMs} ms`))
      }, this.refreshTimeoutMs)
      let sent: Promise<RawReply>
      try {
        sent = this.send(seed, args)
      } catch (err) {
        sent = Promise.reject(toError(err))
      }
      sent.then(
        (v) => {
          if (settled) return
          settled = true
          cancel()
          if (v instanceof Error) reject(v)
          else resolve(v)
        },
        (err: unknown) => {
          if (settled) return
          settled = true
          cancel()
          reject(toError(err))
        },
      )
    })
  }

  /** Addresses for the map's nodes, with the SSRF rule applied. */
  private resolve(map: SlotMap, from: ClusterEndpoint, command: TopologySource): ClusterTopologyState {
    const addresses = new Map<string, ClusterEndpoint & { readonly id: string }>()
    const refused: RefusedNode[] = []
    const parts: string[] = []
    for (const shard of map.shards) {
      parts.push(`${shard.ranges.map(([a, b]) => `${a}-${b}`).join(',')}>${shard.primary.id}`)
      for (const node of shard.nodes) {
        const host = node.endpoint ?? from.host
        const port = this.portOf(node)
        const slots = node === shard.primary ? shard.slotCount : 0
        const at = parts.length
        parts.push(`${node.id}:${node.role}:${node.health}:${host}:${port}`)
        if (port === null || port === 0) {
          const reason = this.tls ? 'announces no TLS or client port' : 'announces no plaintext client port'
          refused.push(Object.freeze({ id: node.id, host, port: null, role: node.role, slots, reason }))
        } else if (!this.allowed(host, port)) {
          refused.push(
            Object.freeze({
              id: node.id,
              host,
              port,
              role: node.role,
              slots,
              reason: `${endpointId(host, port)} is not one of the instance's discovered endpoints (allowUndiscoveredNodes is off)`,
            }),
          )
        } else {
          addresses.set(node.id, Object.freeze({ id: node.id, host, port }))
          // Accepted or not is part of the topology: a node discovery now knows makes a change.
          parts[at] += ':ok'
        }
      }
    }
    let servedSlots = 0
    for (const shard of map.shards) if (addresses.has(shard.primary.id)) servedSlots += shard.slotCount
    return Object.freeze({
      map,
      addresses,
      refused: Object.freeze(refused),
      servedSlots,
      from: Object.freeze({ host: from.host, port: from.port }),
      command,
      at: this.clock.now(),
      fingerprint: parts.join('|'),
    })
  }

  private portOf(node: ClusterNode): number | null {
    return this.tls ? (node.tlsPort ?? node.port) : node.port
  }

  private report(err: Error): void {
    try {
      this.opts.onError?.(err)
    } catch {
      // The caller's error handler failed: nothing left to tell.
    }
  }

  /** A callback of the caller's: what it throws goes to onError, never into the run. */
  private call(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.report(toError(err))
    }
  }
}

/** The primary's address for a slot in a topology; null when the slot is uncovered or its primary refused. */
export function primaryAddress(state: ClusterTopologyState, slot: number): (ClusterEndpoint & { readonly id: string }) | null {
  const shard = state.map.shardOf(slot)
  if (shard === null) return null
  return state.addresses.get(shard.primary.id) ?? null
}
