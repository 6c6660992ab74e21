// The Redis ACL rules of the users that read, write and admin tokens run as (README "Tokens and
// Redis ACL users"). Classifying the outer command is not enough: Redis runs almost any command
// inside a script or function, so a write token's EVAL could FLUSHALL and a read token's EVAL_RO
// could KEYS or SLOWLOG GET. Each level therefore runs as a Redis user allowed exactly the
// commands the gateway admits for that level, and Redis checks every command a script runs
// against that user (Upstash does the same: every REST token is an ACL user).
//
// The rules come from the gateway's own classification (classify.ts) applied to the commands the
// server reports (COMMAND LIST, and the subcommands of the commands the gateway splits by
// subcommand), so they match what a token may run directly, name for name, and never name a
// command the server does not know (ACL SETUSER refuses the whole rule list for one unknown name).
// Commands the gateway learned from the server (module commands such as FT.SEARCH, and the server's
// own flags for every other command: classify.ts, command-table.ts) get in by their learned class:
// the `view` is the endpoint's own table, so a read user may run FT.SEARCH where that server flags
// it `readonly`, and never FT.CREATE. Admission uses the instance's merged view, which is never
// less restrictive than any one endpoint's, so the gateway never admits what a level user lacks.
// Pure: no I/O here.

import { createHash } from 'node:crypto'
import { allows, bySubcommand, classify, type CommandClass, type CommandView } from './classify.js'
import type { Access } from '../core/identity.js'

/** What the server reports: its command names, and for containers their subcommands (lower case). */
export interface ServerCommands {
  readonly names: readonly string[]
  /** Subcommand names (without the `parent|` prefix) of the commands classify() splits by subcommand (lower case). */
  readonly subcommands: ReadonlyMap<string, readonly string[]>
}

export interface LevelUser {
  readonly level: Access
  /** `redis-gateway-<level>-<hash of the rules>`: gateways that disagree on rules use different users. */
  readonly name: string
  /** The ACL SETUSER modifiers for the commands (keys, channels and passwords are added by the caller). */
  readonly commandRules: readonly string[]
}

export const USER_PREFIX = 'redis-gateway-'

/**
 * Commands the gateway itself sends on a token's connection that the token may not send directly:
 * MULTI and EXEC frame `/multi-exec` (a read token may run a transaction of reads). Neither can
 * run inside a script (Redis flags them `noscript`). On a Redis Cluster, READONLY lets the
 * token's connection read from a replica, and ASKING sends one command to a slot's importing node
 * during a migration (README "Redis Cluster"): each changes only how its own connection's next
 * commands are routed by the node, never what they may do.
 */
const FRAMING = ['multi', 'exec', 'readonly', 'asking'] as const

/**
 * Commands an admin token's user may not run, although admins may send them directly: they make
 * Redis connect to a host and port given as arguments. A direct MIGRATE or CLUSTER MEET is checked
 * against the discovered endpoints and runs as the gateway's own user; inside a script nothing can
 * check them, so there they are refused. (REPLICAOF and SLAVEOF cannot run in scripts at all.)
 */
const ADMIN_DENIED = ['migrate', 'cluster|meet'] as const

function allowed(cls: CommandClass, level: Access): boolean {
  switch (cls.kind) {
    case 'read':
    case 'write':
    case 'admin':
      return allows(level, cls.kind)
    case 'refused':
    case 'unknown':
      return false
  }
}

/**
 * The command rules of one level, for the commands this server has, classified with `view` (the
 * server's learned table; null: @ioredis/commands' flags only, unknown names get no rule).
 */
export function commandRules(server: ServerCommands, level: Access, view: CommandView | null = null): string[] {
  if (level === 'admin') {
    const known = new Set(server.names)
    const rules = ['+@all']
    for (const d of ADMIN_DENIED) {
      const [parent, sub] = d.split('|') as [string, string | undefined]
      if (!known.has(parent)) continue
      if (sub !== undefined && !(server.subcommands.get(parent) ?? []).includes(sub)) continue
      rules.push(`-${d}`)
    }
    return rules
  }
  const rules: string[] = ['-@all']
  const names = [...new Set(server.names.map((n) => n.toLowerCase()))].sort()
  for (const name of names) {
    if (!bySubcommand(name, view)) {
      if (allowed(classify([name], view), level)) rules.push(`+${name}`)
      continue
    }
    // Split by subcommand: the whole command when its bare form is allowed, minus what is not;
    // otherwise only the allowed subcommands (the bare form then stays denied, as it is directly).
    const subs = [...(server.subcommands.get(name) ?? [])].map((s) => s.toLowerCase()).sort()
    if (allowed(classify([name], view), level)) {
      rules.push(`+${name}`)
      for (const sub of subs) if (!allowed(classify([name, sub], view), level)) rules.push(`-${name}|${sub}`)
    } else {
      for (const sub of subs) if (allowed(classify([name, sub], view), level)) rules.push(`+${name}|${sub}`)
    }
  }
  const have = new Set(names)
  for (const f of FRAMING) if (have.has(f) && !rules.includes(`+${f}`)) rules.push(`+${f}`)
  return rules
}

/** The three level users for this server: names carry a hash of their rules. */
export function levelUsers(server: ServerCommands, view: CommandView | null = null): Record<Access, LevelUser> {
  const make = (level: Access): LevelUser => {
    const commandRulesOfLevel = commandRules(server, level, view)
    const hash = createHash('sha256').update(commandRulesOfLevel.join(' ')).digest('hex').slice(0, 10)
    return { level, name: `${USER_PREFIX}${level}-${hash}`, commandRules: commandRulesOfLevel }
  }
  return { read: make('read'), write: make('write'), admin: make('admin') }
}
