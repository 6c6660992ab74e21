// The fake Redis server's own behaviour: default answers (enough for a client's ready check and a
// health check), commands split across reads or pipelined in one, scripted raw answers, and the
// record of connections and who closed them.

import net from 'node:net'
import { Redis } from 'ioredis'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { resp, startFakeRedis, type FakeRedis } from './fake-redis.js'
import { waitFor } from './wait.js'

let fake: FakeRedis
beforeEach(async () => {
  fake = await startFakeRedis()
})
afterEach(async () => {
  await fake.close()
})

/** A raw client socket that collects what the fake sends. */
async function raw(): Promise<{ socket: net.Socket; text: () => string; ended: () => boolean }> {
  const socket = net.connect({ host: '127.0.0.1', port: fake.port })
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  let got = ''
  let ended = false
  socket.on('data', (c: Buffer) => (got += c.toString('latin1')))
  socket.on('close', () => (ended = true))
  socket.on('error', () => {})
  return { socket, text: () => got, ended: () => ended }
}

describe('fake Redis', () => {
  test('looks like a healthy standalone primary to ioredis (ready check, PING, SET/GET, ROLE); ACL and COMMAND are unknown', async () => {
    const client = new Redis({ host: '127.0.0.1', port: fake.port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    try {
      await client.connect()
      expect(await client.ping()).toBe('PONG')
      expect(await client.set('k', 'v')).toBe('OK')
      expect(await client.get('k')).toBe('v')
      expect(await client.get('missing')).toBeNull()
      expect(await client.call('ROLE')).toEqual(['master', 0, []])
      expect(String(await client.call('INFO', 'persistence'))).toMatch(/^loading:0$/m)
      await expect(client.call('COMMAND', 'LIST')).rejects.toThrow(/^ERR unknown command 'COMMAND'/)
      await expect(client.call('ACL', 'WHOAMI')).rejects.toThrow(/^ERR unknown command 'ACL'/)
    } finally {
      client.disconnect()
    }
    expect(fake.seen('GET')).toEqual([
      ['GET', 'k'],
      ['GET', 'missing'],
    ])
    expect(fake.connections).toHaveLength(1)
    await waitFor(() => fake.connections[0]!.closed, { message: 'the connection to close' })
    expect(fake.connections[0]!.closedBy).toBe('client')
  })

  test('parses commands split byte by byte and several in one write, answering in order', async () => {
    const c = await raw()
    const cmds = '*2\r\n$4\r\nECHO\r\n$5\r\nhe\r\no\r\n*1\r\n$4\r\nPING\r\n'
    for (const ch of cmds.slice(0, 20)) {
      c.socket.write(ch)
      await new Promise((r) => setImmediate(r))
    }
    c.socket.write(cmds.slice(20))
    await waitFor(() => c.text() === '$5\r\nhe\r\no\r\n+PONG\r\n', { message: 'both replies' })
    expect(fake.commands).toEqual([
      { conn: 1, args: ['ECHO', 'he\r\no'] },
      { conn: 1, args: ['PING'] },
    ])
    c.socket.destroy()
  })

  test('a scripted handler writes raw bytes; off() restores the default; unknown commands get an error', async () => {
    fake.on('get', (args, socket) => socket.write(`$abc${args[0]}\r\n`))
    const c = await raw()
    c.socket.write('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n')
    await waitFor(() => c.text() === '$abck\r\n', { message: 'the scripted bytes' })
    fake.off('GET')
    fake.store.set('k', Buffer.from('v'))
    c.socket.write('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$5\r\nNOPE!\r\n')
    await waitFor(() => c.text() === "$abck\r\n$1\r\nv\r\n-ERR unknown command 'NOPE!', with args beginning with: \r\n", { message: 'default answers' })
    c.socket.destroy()
  })

  test('a handler that ends its socket, and drop(), are recorded as closed by the server; bytes that are not RESP close the connection', async () => {
    fake.on('GET', (_, socket) => socket.end(resp.bulk('partial').subarray(0, 5)))
    const a = await raw()
    a.socket.write('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n')
    await waitFor(() => a.ended(), { message: 'the fake to end the connection' })
    expect(a.text()).toBe('$7\r\np')

    const b = await raw()
    await waitFor(() => fake.open.length === 1, { message: 'the second connection' })
    fake.drop()
    await waitFor(() => b.ended(), { message: 'drop() to close it' })

    const d = await raw()
    d.socket.write('GET k\r\n')
    await waitFor(() => d.ended(), { message: 'an inline command to close the connection' })

    await waitFor(() => fake.connections.every((x) => x.closed), { message: 'all closed' })
    expect(fake.connections.map((x) => [x.id, x.closedBy])).toEqual([
      [1, 'server'],
      [2, 'server'],
      [3, 'server'],
    ])
  })

  test('resp encoders', () => {
    expect(resp.simple('OK')).toBe('+OK\r\n')
    expect(resp.error('ERR x')).toBe('-ERR x\r\n')
    expect(resp.int(-3)).toBe(':-3\r\n')
    expect(resp.bulk(null).toString()).toBe('$-1\r\n')
    expect(resp.bulk('é').toString('latin1')).toBe('$2\r\n\xc3\xa9\r\n')
    expect(resp.array([resp.int(1), resp.bulk('a'), resp.array([])]).toString()).toBe('*3\r\n:1\r\n$1\r\na\r\n*0\r\n')
    expect(resp.array(null).toString()).toBe('*-1\r\n')
  })
})
