// The Redis ACL users that read, write and admin tokens run as, provisioned by the gateway on each
// endpoint it talks to (README "Tokens and Redis ACL users"). ACL users are per server (a replica
// does not get its primary's), so every endpoint gets them, on first use, through the gateway's own
// connection: its command table (COMMAND INFO, learned by endpoint-client.ts) tells which commands
// the server has and their flags, acl-rules.ts turns the gateway's classification into rules, and
// ACL SETUSER creates or updates the three users.
//
// Passwords: each gateway process makes a random one at start and keeps it in memory only. Several
// gateway replicas share the users (same name for the same rules), each adding its own password;
// a user keeps at most MAX_PASSWORDS of them, the oldest dropped first, so restarts do not pile
// them up. A replica whose password was dropped (or whose user a Redis restart or ACL LOAD removed)
// finds out when a connection's AUTH fails, and provisions again.
//
// Where the gateway cannot create users (its Redis user lacks the permission, Redis before 7, or
// `redis.aclUsers: false`) the endpoint is "unmanaged": tokens then run as the gateway's own user,
// limited by the gateway's classification alone, and scripts and functions are refused for
// non-admin tokens (a script's own commands could not be bounded).

import { createHash, randomBytes } from 'node:crypto'
import { Buffer } from 'node:buffer'
import { bySubcommand, type CommandView } from '../routing/classify.js'
import { levelUsers, type LevelUser, type ServerCommands } from '../routing/acl-rules.js'
import { mergeTables, type LearnedTable } from '../routing/command-table.js'
import type { Arg } from '../core/command.js'
import type { Access } from '../core/identity.js'

/** Passwords a level user keeps (one per live gateway replica, plus recent restarts). */
export const MAX_PASSWORDS = 16

/** How long an endpoint found unmanaged waits before the gateway tries to provision again. */
export const UNMANAGED_RETRY_MS = 60_000

export interface AclSettings {
  /** `redis.aclUsers`: provision level users on each endpoint. */
  readonly enabled: boolean
  /** This process's password for every level user (random, in memory only). */
  readonly password: string
  /** Level users by the server's command table (its fingerprint): endpoints running the same version and modules share them. */
  readonly cache: Map<string, Record<Access, LevelUser>>
}

export function aclSettings(enabled: boolean): AclSettings {
  return { enabled, password: randomBytes(24).toString('hex'), cache: new Map() }
}

export type AclState =
  | { readonly kind: 'unknown' }
  | { readonly kind: 'managed'; readonly users: Record<Access, LevelUser> }
  | { readonly kind: 'unmanaged'; readonly reason: string; readonly atMs: number }

type Send = (args: readonly Arg[]) => Promise<unknown>

function text(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v)
}

/**
 * The server's commands and the subcommands of those classify() splits by subcommand (the
 * gateway's containers, and learned commands with subcommands), from its learned table.
 */
export function serverCommands(table: LearnedTable, view: CommandView | null): ServerCommands {
  const names = [...table.specs.keys()]
  const subcommands = new Map<string, string[]>()
  for (const [name, s] of table.specs) {
    if (s.subcommands.size > 0 && bySubcommand(name, view)) subcommands.set(name, [...s.subcommands.keys()])
  }
  return { names, subcommands }
}

/**
 * Creates or updates the three level users on one endpoint and adds this process's password, in
 * one round trip (two when old passwords must go), with rules from the server's own command
 * table (`table`, learned by the caller with COMMAND INFO). Rejects with the Redis error reply
 * when the gateway may not (NOPERM, unknown command).
 */
export async function provisionLevelUsers(send: Send, acl: AclSettings, table: LearnedTable): Promise<Record<Access, LevelUser>> {
  let users = acl.cache.get(table.fingerprint)
  if (users === undefined) {
    const view = mergeTables([table])
    users = levelUsers(serverCommands(table, view), view)
    acl.cache.set(table.fingerprint, users)
  }
  const list = Object.values(users)
  // Issued together: the connection sends them in one write.
  const replies = await Promise.all(
    list.flatMap((u) => [
      send(['ACL', 'SETUSER', u.name, 'on', `>${acl.password}`, 'resetkeys', '~*', 'resetchannels', '&*', ...u.commandRules]),
      send(['ACL', 'GETUSER', u.name]),
    ]),
  )
  const mine = createHash('sha256').update(acl.password).digest('hex')
  await Promise.all(list.map((u, i) => trimPasswords(send, u.name, replies[2 * i + 1], mine)))
  return users
}

/** Drops the oldest passwords beyond MAX_PASSWORDS (Redis keeps them in the order they were added). */
async function trimPasswords(send: Send, user: string, getuser: unknown, keep: string): Promise<void> {
  if (!Array.isArray(getuser)) return
  let hashes: string[] = []
  for (let i = 0; i + 1 < getuser.length; i += 2) {
    if (text(getuser[i]) === 'passwords' && Array.isArray(getuser[i + 1])) hashes = (getuser[i + 1] as unknown[]).map(text)
  }
  const excess = hashes.length - MAX_PASSWORDS
  if (excess <= 0) return
  const drop = hashes.filter((h) => h !== keep).slice(0, excess)
  if (drop.length > 0) await send(['ACL', 'SETUSER', user, ...drop.map((h) => `!${h}`)])
}

/** Why provisioning failed, for the endpoint's state and the 403 that scripts then get. */
export function unmanagedReason(err: Error): string {
  const m = err.message
  if (/unknown subcommand|unknown command/i.test(m)) return `Redis 7 or later is needed for ACL users with subcommand rules (${m})`
  if (/^NOPERM/.test(m)) return `the gateway's Redis user may not create ACL users (${m}); grant it +acl|setuser +acl|getuser +command|info +command|count`
  return m
}
