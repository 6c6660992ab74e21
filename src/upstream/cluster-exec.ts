// Runs requests on a Redis Cluster instance (README "Redis Cluster"): each command goes to the
// shard of its keys' slot (routing/cluster-plan.ts says which slot, or that it is split by slot,
// sent to every primary, or refused as CROSSSLOT), and inside the shard through the same dispatch
// as a plain instance (role, read policy, breakers, retries, hedges, deadlines).
//
// Redirections, as a cluster-aware client follows them (ioredis Cluster, Envoy's redis_proxy):
// - MOVED: the slot moved for good. The slot points at the named node's shard at once when it is
//   known, the slot map is learned again, and the command goes there.
// - ASK: the slot is migrating and this key is already on the importing node: ASKING + the
//   command on that node, the map unchanged.
// - TRYAGAIN (a multi-key command during a slot's migration) and CLUSTERDOWN: sent again after a
//   short pause, within the instance's retry budget.
// A redirected command did not run, so sending it again never runs a write twice. At most
// MAX_REDIRECTS per command, and never past the request's deadline.
//
// Pipelines are split by shard, each shard's commands sent as one pipeline in parallel, the replies
// put back in the request's order. A transaction (and a script) must touch one slot.

import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { NoEndpointError, RedisReplyError } from '../core/errors.js'
import { endpointId } from '../core/topology.js'
import type { TraceScope } from '../core/events.js'
import type { ItemResult, RawReply } from '../core/reply.js'
import type { Identity } from '../core/identity.js'
import type { LoadTracker } from '../balancer/least-request.js'
import type { RequestLease } from '../resilience/byte-budget.js'
import type { InstanceRoute } from '../routing/table.js'
import { mergeFanout, mergeSplit, planCommand, scanReply, type ClusterPlan } from '../routing/cluster-plan.js'
import { CROSSSLOT_MESSAGE } from '../routing/cluster-slots.js'
import { SHARD_ID_LENGTH, shardId, type ClusterPosition, type SyncPosition } from '../routing/sync-token.js'
import type { LearnedTable } from '../routing/command-table.js'
import { dispatch, type DispatchOptions } from './dispatch.js'
import { runCommand, runPipeline, type ExecContext } from './execute.js'
import type { Args } from './endpoint-client.js'
import type { ClusterInstance, ShardRoute } from './cluster.js'
import type { PooledEndpoint } from './pool.js'

/** MOVED and ASK redirections followed per command. */
export const MAX_REDIRECTS = 5
/**
 * Pauses before sending a command again after TRYAGAIN or CLUSTERDOWN: 25 ms, doubling up to
 * 200 ms, for as long as the request's deadline allows (a failover keeps every node answering
 * CLUSTERDOWN for about a second with the default cluster-require-full-coverage).
 */
export const TRYAGAIN_DELAY_MS = 25
export const TRYAGAIN_MAX_DELAY_MS = 200

function waitDelay(waits: number): number {
  return Math.min(TRYAGAIN_MAX_DELAY_MS, TRYAGAIN_DELAY_MS * 2 ** Math.min(waits, 8))
}

export interface ClusterCall {
  readonly dispatch: DispatchOptions
  readonly cluster: ClusterInstance
  readonly group: string | null
  readonly load: LoadTracker
  /** The client's cluster token (checked to name this instance), or null. */
  readonly token: ClusterPosition | null
  readonly clientId: string | null
  readonly scope: TraceScope | null
  readonly lease: RequestLease | null
  readonly identity: Identity
  readonly scripted: boolean
  /** Shards the request touched (their positions go into the reply's token). */
  readonly touched: Set<ShardRoute>
  /** The request's deadline (performance.now() time): no redirection is followed after it. */
  readonly deadlineAt: number
  readonly table: LearnedTable | null
}

export type Redirect =
  | { readonly kind: 'moved' | 'ask'; readonly slot: number; readonly host: string; readonly port: number }
  | { readonly kind: 'tryagain' | 'clusterdown' }

/** The redirection an error reply asks for, or null. */
export function redirectOf(message: string): Redirect | null {
  const c = message.charCodeAt(0)
  if (c !== 0x4d /* M */ && c !== 0x41 /* A */ && c !== 0x54 /* T */ && c !== 0x43 /* C */) return null
  if (message.startsWith('TRYAGAIN')) return { kind: 'tryagain' }
  if (message.startsWith('CLUSTERDOWN')) return { kind: 'clusterdown' }
  const m = /^(MOVED|ASK) (\d+) (\S*):(\d+)\s*$/.exec(message)
  if (m === null) return null
  return { kind: m[1] === 'MOVED' ? 'moved' : 'ask', slot: Number(m[2]), host: m[3]!, port: Number(m[4]) }
}

/** Whether an error reply is a redirection (a command that did not run). */
export function isRedirect(err: unknown): boolean {
  return err instanceof RedisReplyError && redirectOf(err.message) !== null
}

/** Where the client's token says a read on this shard must have got to; null: anywhere. */
function positionFor(c: ClusterCall, shard: ShardRoute): SyncPosition | null {
  if (c.token === null || c.token.shards.size === 0) return null
  const primary = c.dispatch.router.primaryOf(shard.route)
  const replId = primary?.state.replId
  if (replId == null) return null
  const offset = c.token.shards.get(shardId(replId))
  return offset === undefined ? null : { instance: shard.route.name, replId, offset }
}

type Run<T> = (ep: PooledEndpoint, ctx: ExecContext) => Promise<T>

function onRoute<T>(c: ClusterCall, route: InstanceRoute, kind: boolean | 'subscribe', token: SyncPosition | null, run: Run<T>): Promise<T> {
  return dispatch(
    c.dispatch,
    {
      resolved: { instance: route, group: c.group, load: c.load },
      kind: kind === 'subscribe' ? 'subscribe' : kind ? 'write' : 'read',
      token,
      clientId: c.clientId,
      scope: c.scope,
      lease: c.lease,
      identity: c.identity,
      scripted: c.scripted,
    },
    run,
  )
}

function onShard<T>(c: ClusterCall, shard: ShardRoute, write: boolean | 'subscribe', run: Run<T>): Promise<T> {
  c.touched.add(shard)
  return onRoute(c, shard.route, write, write === false ? positionFor(c, shard) : null, run)
}

/**
 * A subscription (or MONITOR) on a cluster instance: on the primary of the shard of `slot` (the
 * first channel's; null: any shard). Any node delivers every PUBLISH (the cluster bus carries it
 * to all of them), so this only spreads the subscriber connections over the shards.
 */
export async function clusterSubscribe<T>(c: ClusterCall, slot: number | null, run: Run<T>): Promise<T> {
  return onShard(c, await shardFor(c, slot), 'subscribe', run)
}

function notServed(c: ClusterCall, slot: number | null): NoEndpointError {
  const what = slot === null ? 'no shard with a reachable primary' : `slot ${slot} is not served by a shard the gateway can reach`
  return new NoEndpointError(`cluster instance '${c.cluster.name}': ${what}`, { retryAfterS: 1 })
}

/** The slot's shard (or any shard for null), after learning the map when it is not known yet. */
async function shardFor(c: ClusterCall, slot: number | null): Promise<ShardRoute> {
  const pick = (): ShardRoute | null => (slot === null ? c.cluster.anyShard() : c.cluster.shardOf(slot))
  let shard = pick()
  if (shard === null) {
    await c.cluster.refresh(c.cluster.mapped ? 'unserved slot' : 'first request')
    shard = pick()
  }
  if (shard === null) throw notServed(c, slot)
  return shard
}

const ASKING: Args = ['ASKING']

/** Redirections and waits of one command so far. */
interface Followed {
  redirects: number
  waits: number
}

/**
 * What to do about a redirection before sending again: null when it must not be followed (the
 * error stands), else the route for an ASK (or null route for "the slot's shard").
 */
async function follow(c: ClusterCall, r: Redirect, slot: number | null, n: Followed): Promise<{ ask: InstanceRoute | null } | null> {
  const wait = r.kind === 'tryagain' || r.kind === 'clusterdown'
  if (wait) {
    const delay = waitDelay(n.waits++)
    if (performance.now() + delay >= c.deadlineAt) return null
  } else if (++n.redirects > MAX_REDIRECTS || performance.now() >= c.deadlineAt) return null
  c.dispatch.events.emit('clusterRedirect', { instance: c.cluster.name, kind: r.kind })
  switch (r.kind) {
    case 'moved':
      if (slot === null) return null
      if (!c.cluster.moved(slot, r.host, r.port) && c.cluster.shardOf(slot)?.primary !== endpointId(r.host, r.port)) {
        await c.cluster.refresh('moved')
      }
      return { ask: null }
    case 'ask': {
      let route = c.cluster.nodeRoute(r.host, r.port)
      if (route === null) {
        await c.cluster.refresh('ask')
        route = c.cluster.nodeRoute(r.host, r.port)
      }
      return route === null ? null : { ask: route }
    }
    case 'tryagain':
    case 'clusterdown':
      if (!c.dispatch.router.budgetsOf(c.cluster.route).retry.tryRetry()) {
        c.dispatch.events.emit('budgetExhausted', { instance: c.cluster.name, budget: 'retry' })
        return null
      }
      if (r.kind === 'clusterdown') void c.cluster.refresh('clusterdown')
      await sleep(waitDelay(n.waits - 1))
      return performance.now() < c.deadlineAt ? { ask: null } : null
  }
}

function itemValue(it: ItemResult | undefined): RawReply {
  if (it === undefined) throw new RedisReplyError('ERR no reply')
  if (!it.ok) throw new RedisReplyError(it.error)
  return it.value
}

/**
 * One command on the shard of `slot` (null: any shard), following redirections. The usual case (the
 * shard is known, no redirection) is one dispatch with no promise of its own; the rest is
 * redirected().
 */
function onSlot(c: ClusterCall, slot: number | null, args: Args, write: boolean): Promise<RawReply> {
  const shard = slot === null ? c.cluster.anyShard() : c.cluster.shardOf(slot)
  if (shard === null) return redirected(c, slot, args, write, null, null)
  return onShard(c, shard, write, (ep, ctx) => runCommand(ep, ctx, args, write)).catch((err: unknown) => redirected(c, slot, args, write, err, shard))
}

/**
 * The rest of onSlot: `first` is what the first attempt on `tried` failed with (null: there was
 * none, the slot's shard was not known). Follows redirections until an answer or the limits.
 */
async function redirected(c: ClusterCall, slot: number | null, args: Args, write: boolean, first: unknown, tried: ShardRoute | null): Promise<RawReply> {
  let ask: InstanceRoute | null = null
  // A read a replica sent back with MOVED to its own shard's primary (its connection is not in
  // READONLY mode, e.g. an operator's Redis user without +readonly): the primary serves it.
  let primaryOnly = false
  const n: Followed = { redirects: 0, waits: 0 }
  let err: unknown = first
  let shard: ShardRoute | null = tried
  for (;;) {
    if (err !== null) {
      const r = err instanceof RedisReplyError ? redirectOf(err.message) : null
      if (r === null) throw err
      if (r.kind === 'moved' && !write && !primaryOnly && shard !== null && shard.primary === endpointId(r.host, r.port) && c.cluster.shardOf(r.slot) === shard) {
        primaryOnly = true
        ask = null
      } else {
        const next = await follow(c, r, slot, n)
        if (next === null) throw err
        ask = next.ask
      }
    }
    shard = null
    try {
      if (ask !== null) {
        const via = ask
        return await onRoute(c, via, write, null, (ep, ctx) => runPipeline(ep, ctx, [ASKING, args], write, false).then((items) => itemValue(items[1])))
      }
      shard = await shardFor(c, slot)
      // 'subscribe' is the primary without a write's checks (read-only maintenance) or its ROLE.
      return await onShard(c, shard, write || (primaryOnly ? 'subscribe' : false), (ep, ctx) => runCommand(ep, ctx, args, write))
    } catch (e) {
      err = e
    }
  }
}

/** One command on a cluster instance. Rejects with RedisReplyError (Redis said no) or a GatewayError. */
export function clusterCommand(c: ClusterCall, args: Args, write: boolean): Promise<RawReply> {
  const plan = planCommand(args, c.table)
  switch (plan.kind) {
    case 'slot':
      return onSlot(c, plan.slot, args, write)
    case 'any':
      return onSlot(c, null, args, write)
    case 'crossslot':
      return Promise.reject(new RedisReplyError(plan.message))
    default:
      return clusterPipeline(c, [args], [write]).then((items) => itemValue(items[0]))
  }
}

/** One command of a pipeline as sent to one shard. */
interface Unit {
  readonly args: Args
  readonly write: boolean
  /** The slot it was routed by; null for keyless and per-shard commands. */
  readonly slot: number | null
  result: ItemResult | null
}

interface Planned {
  readonly plan: ClusterPlan
  /** Its units: one, or one per part (split) or per shard (fan-out). */
  readonly units: Unit[]
  /** For fan-out and SCAN: the shards the units went to. */
  readonly shards: number
  readonly scanShard: number
}

/**
 * A pipeline on a cluster instance: every command planned, the units grouped by shard and sent as
 * one pipeline per shard, all shards in parallel; redirected units are sent again one by one; the
 * items merged back in the request's order. A transport failure of any shard fails the request
 * (which commands ran is then unknown), as for a plain instance.
 */
export async function clusterPipeline(c: ClusterCall, commands: readonly Args[], writes: readonly boolean[]): Promise<ItemResult[]> {
  const out = new Array<ItemResult>(commands.length)
  const planned: (Planned | null)[] = new Array<Planned | null>(commands.length).fill(null)
  const groups = new Map<ShardRoute, Unit[]>()
  const add = (shard: ShardRoute, u: Unit): void => {
    const g = groups.get(shard)
    if (g === undefined) groups.set(shard, [u])
    else g.push(u)
  }
  const keyless: Unit[] = []
  if (!c.cluster.mapped) await c.cluster.refresh('first request')
  for (let i = 0; i < commands.length; i++) {
    const args = commands[i]!
    const write = writes[i] === true
    let plan: ClusterPlan
    try {
      plan = planCommand(args, c.table)
    } catch (err) {
      out[i] = { ok: false, error: err instanceof Error ? err.message : String(err) }
      continue
    }
    const unit = (a: Args, slot: number | null): Unit => ({ args: a, write, slot, result: null })
    switch (plan.kind) {
      case 'crossslot':
        out[i] = { ok: false, error: plan.message }
        break
      case 'slot': {
        const u = unit(args, plan.slot)
        planned[i] = { plan, units: [u], shards: 0, scanShard: 0 }
        const shard = c.cluster.shardOf(plan.slot)
        if (shard === null) u.result = { ok: false, error: notServed(c, plan.slot).publicMessage }
        else add(shard, u)
        break
      }
      case 'any': {
        const u = unit(args, null)
        planned[i] = { plan, units: [u], shards: 0, scanShard: 0 }
        keyless.push(u)
        break
      }
      case 'split': {
        const units = plan.parts.map((p) => unit(p.args, p.slot))
        planned[i] = { plan, units, shards: 0, scanShard: 0 }
        for (const u of units) {
          const shard = c.cluster.shardOf(u.slot!)
          if (shard === null) u.result = { ok: false, error: notServed(c, u.slot).publicMessage }
          else add(shard, u)
        }
        break
      }
      case 'fanout': {
        const serving = c.cluster.serving()
        const units = serving.map(() => unit(args, null))
        planned[i] = { plan, units, shards: serving.length, scanShard: 0 }
        if (serving.length === 0) out[i] = { ok: false, error: notServed(c, null).publicMessage }
        serving.forEach((s, k) => add(s, units[k]!))
        break
      }
      case 'scan': {
        const serving = c.cluster.serving()
        const shard = serving[plan.shard]
        if (shard === undefined) {
          out[i] = { ok: false, error: 'ERR invalid cursor' }
          break
        }
        const u = unit(plan.args, null)
        planned[i] = { plan, units: [u], shards: serving.length, scanShard: plan.shard }
        add(shard, u)
        break
      }
    }
  }
  // Keyless commands ride along with the first shard the request uses anyway.
  if (keyless.length > 0) {
    const first = groups.keys().next()
    const shard = first.done === true ? await shardFor(c, null) : first.value
    for (const u of keyless) add(shard, u)
  }
  await Promise.all(
    [...groups].map(([shard, units]) => {
      const write = units.some((u) => u.write)
      const batch = units.map((u) => u.args)
      return onShard(c, shard, write, (ep, ctx) => runPipeline(ep, ctx, batch, write, false)).then((items) => {
        for (let k = 0; k < units.length; k++) units[k]!.result = items[k]!
      })
    }),
  )
  // Redirected units again, one by one (each follows its own redirections).
  const again: Promise<void>[] = []
  for (const p of planned) {
    if (p === null) continue
    for (const u of p.units) {
      const r = u.result
      if (r === null || r.ok || redirectOf(r.error) === null) continue
      again.push(
        onSlot(c, u.slot, u.args, u.write).then(
          (value) => void (u.result = { ok: true, value }),
          (err: unknown) => {
            if (!(err instanceof RedisReplyError)) throw err
            u.result = { ok: false, error: err.message }
          },
        ),
      )
    }
  }
  if (again.length > 0) await Promise.all(again)
  for (let i = 0; i < commands.length; i++) {
    const p = planned[i]
    if (p == null || out[i] !== undefined) continue
    out[i] = merged(p)
  }
  return out
}

const NO_REPLY: ItemResult = Object.freeze({ ok: false, error: 'ERR no reply' })

function merged(p: Planned): ItemResult {
  const plan = p.plan
  if (plan.kind === 'slot' || plan.kind === 'any') return p.units[0]!.result ?? NO_REPLY
  const results = p.units.map((u) => u.result ?? NO_REPLY)
  for (const r of results) if (!r.ok) return r
  const values = results.map((r) => (r as { ok: true; value: RawReply }).value)
  let v: RawReply
  switch (plan.kind) {
    case 'split':
      v = mergeSplit(plan.merge, plan.parts, values, plan.keys)
      break
    case 'fanout':
      v = mergeFanout(plan.merge, values, Math.random)
      break
    case 'scan':
      v = scanReply(values[0]!, p.scanShard, p.shards)
      break
    default:
      v = values[0]!
  }
  return v instanceof Error ? { ok: false, error: v.message } : { ok: true, value: v }
}

/**
 * A transaction on a cluster instance: every key in one slot (else Redis's CROSSSLOT, as
 * EXECABORT, with the hash-tag hint), run as MULTI/EXEC on that slot's shard. A transaction that
 * Redis refused with a redirection (EXECABORT ... MOVED) did not run: it is sent again after the
 * map is learned again, within the limits of onSlot.
 */
export async function clusterTransaction(c: ClusterCall, commands: readonly Args[]): Promise<ItemResult[]> {
  let slot: number | null = null
  let first = 0
  for (let i = 0; i < commands.length; i++) {
    const plan = planCommand(commands[i]!, c.table)
    const s = plan.kind === 'slot' ? plan.slot : plan.kind === 'any' ? null : -1
    if (s === -1) {
      const why = plan.kind === 'crossslot' ? plan.message : `${String(commands[i]![0]).toUpperCase()} runs on every shard of a cluster and cannot be part of a transaction`
      throw new RedisReplyError(`EXECABORT Transaction discarded because of previous errors: command ${i + 1}: ${why}`)
    }
    if (s === null) continue
    if (slot === null) {
      slot = s
      first = i
    } else if (s !== slot) {
      throw new RedisReplyError(
        `EXECABORT Transaction discarded because of previous errors: ${CROSSSLOT_MESSAGE} (commands ${first + 1} and ${i + 1} use slots ${slot} and ${s}; ` +
          'on a cluster, a transaction needs all its keys in one slot: give them a common hash tag, e.g. {user:1}:cart and {user:1}:orders)',
      )
    }
  }
  const n: Followed = { redirects: 0, waits: 0 }
  for (;;) {
    const shard = await shardFor(c, slot)
    try {
      return await onShard(c, shard, true, (ep, ctx) => runPipeline(ep, ctx, commands, true, true))
    } catch (err) {
      if (!(err instanceof RedisReplyError)) throw err
      const m = /\b(MOVED|ASK) (\d+) (\S*):(\d+)|\b(TRYAGAIN|CLUSTERDOWN)\b/.exec(err.message)
      if (m === null) throw err
      // ASK inside MULTI would need ASKING before every queued command: wait for the migration
      // to finish instead, as for TRYAGAIN.
      const r: Redirect = m[1] === 'MOVED' ? { kind: 'moved', slot: Number(m[2]), host: m[3]!, port: Number(m[4]) } : { kind: m[5] === 'CLUSTERDOWN' ? 'clusterdown' : 'tryagain' }
      if ((await follow(c, r, slot, n)) === null) throw err
    }
  }
}

/**
 * The position for the reply's token: every shard the request touched at its primary's offset
 * now, and the client's earlier entries for shards that still exist (a failed-over shard's old
 * entry is dropped).
 */
export function clusterPosition(c: ClusterCall): ClusterPosition {
  const shards = new Map<string, number>()
  const router = c.dispatch.router
  if (c.token !== null && c.token.shards.size > 0) {
    // Keep the client's entries of shards that still exist (a few shards: no set built for it).
    const all = c.cluster.shards
    for (const [id, off] of c.token.shards) {
      for (let i = 0; i < all.length; i++) {
        const replId = router.primaryOf(all[i]!.route)?.state.replId
        if (replId != null && replId.startsWith(id) && id.length === Math.min(replId.length, SHARD_ID_LENGTH)) {
          shards.set(id, off)
          break
        }
      }
    }
  }
  for (const s of c.touched) {
    const p = router.primaryOf(s.route)
    const replId = p?.state.replId
    if (p == null || replId == null) continue
    const id = shardId(replId)
    const had = shards.get(id)
    shards.set(id, had === undefined || had < p.state.offset ? p.state.offset : had)
  }
  return { instance: c.cluster.name, shards }
}
