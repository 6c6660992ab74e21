// The ACL rules of the token levels' Redis users (acl-rules.ts): exactly what classify() admits
// for the level, for the commands the server has, and nothing it does not know. The rules are
// also run against a real redis-server in test/security/acl-escalation.test.ts.

import { list } from '@ioredis/commands'
import { describe, expect, it } from 'vitest'
import { commandRules, levelUsers, USER_PREFIX } from './acl-rules.js'
import { allows, classify, isContainer } from './classify.js'
import type { Access } from '../core/identity.js'

const SERVER = {
  names: ['get', 'set', 'keys', 'flushall', 'eval', 'eval_ro', 'fcall_ro', 'object', 'script', 'multi', 'exec', 'role', 'info', 'ping', 'blpop', 'migrate', 'cluster', 'config', 'subscribe', 'select'],
  subcommands: new Map([
    ['object', ['encoding', 'freq', 'help']],
    ['script', ['exists', 'load', 'flush', 'kill', 'debug', 'help']],
  ]),
}

function admits(level: Access, args: string[]): boolean {
  const c = classify(args)
  return (c.kind === 'read' || c.kind === 'write' || c.kind === 'admin') && allows(level, c.kind)
}

describe('commandRules', () => {
  it('read: the reads, their subcommands, and the framing of /multi-exec; nothing else', () => {
    expect(commandRules(SERVER, 'read')).toEqual([
      '-@all',
      '+eval_ro',
      '+fcall_ro',
      '+get',
      '+object|encoding',
      '+object|freq',
      '+object|help',
      '+ping',
      '+script|exists',
      '+multi',
      '+exec',
    ])
  })

  it('write: reads and writes; a container whole, minus its admin and refused subcommands', () => {
    const rules = commandRules(SERVER, 'write')
    expect(rules).toEqual([
      '-@all',
      '+eval',
      '+eval_ro',
      '+fcall_ro',
      '+get',
      '+info',
      '+object',
      '+ping',
      '+role',
      '+script',
      '-script|debug',
      '-script|flush',
      '-script|kill',
      '+set',
      '+multi',
      '+exec',
    ])
  })

  it('admin: everything but what makes Redis connect to a host named in a script, where the server has it', () => {
    expect(commandRules(SERVER, 'admin')).toEqual(['+@all', '-migrate'])
    expect(commandRules({ names: [...SERVER.names], subcommands: new Map([['cluster', ['meet', 'info']]]) }, 'admin')).toEqual([
      '+@all',
      '-migrate',
      '-cluster|meet',
    ])
    expect(commandRules({ names: ['get'], subcommands: new Map() }, 'admin')).toEqual(['+@all'])
  })

  it('never names a command the server did not report (ACL SETUSER refuses the whole list for one)', () => {
    const rules = commandRules({ names: ['get', 'hgetdel-from-the-future'], subcommands: new Map() }, 'write')
    expect(rules).toEqual(['-@all', '+get'])
  })

  it.each(['read', 'write'] as const)('%s: for every command of the command table, allowed exactly when classify() admits it', (level) => {
    const rules = new Set(commandRules({ names: [...list], subcommands: new Map() }, level))
    for (const name of list) {
      if (isContainer(name)) continue
      // Framing: the gateway sends these itself around the token's commands (acl-rules.ts).
      const framing = ['multi', 'exec', 'readonly', 'asking'].includes(name)
      expect(rules.has(`+${name}`), name).toBe(admits(level, [name]) || framing)
    }
  })
})

describe('levelUsers', () => {
  it('names each user by level and a hash of its rules: the same rules, the same name; others, another', () => {
    const a = levelUsers(SERVER)
    const b = levelUsers({ names: [...SERVER.names], subcommands: new Map(SERVER.subcommands) })
    const c = levelUsers({ names: [...SERVER.names, 'incr'], subcommands: SERVER.subcommands })
    expect(a.read.name).toMatch(new RegExp(`^${USER_PREFIX}read-[0-9a-f]{10}$`))
    expect(a.write.name).toMatch(/^redis-gateway-write-/)
    expect(a.admin.name).toMatch(/^redis-gateway-admin-/)
    expect(b.read.name).toBe(a.read.name)
    expect(c.read.name).toBe(a.read.name) // INCR is no read: the read rules did not change
    expect(c.write.name).not.toBe(a.write.name)
  })
})
