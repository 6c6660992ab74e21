// Which commands make Redis connect out, and to where (outbound.ts).

import { Buffer } from 'node:buffer'
import { describe, expect, it } from 'vitest'
import { outboundTarget } from './outbound.js'

describe('outboundTarget', () => {
  it('MIGRATE and CLUSTER MEET name host and port, and run as the gateway user', () => {
    expect(outboundTarget(['migrate', 'Redis-B.example', '6380', 'k', '0', '100'])).toEqual({
      command: 'MIGRATE',
      endpoint: 'redis-b.example:6380',
      gatewayUser: true,
    })
    expect(outboundTarget(['CLUSTER', 'meet', '10.0.0.7', '7000'])).toEqual({ command: 'CLUSTER MEET', endpoint: '10.0.0.7:7000', gatewayUser: true })
    expect(outboundTarget([Buffer.from('MIGRATE'), Buffer.from('::1'), '6379', '', '0', '5', 'KEYS', 'a'])?.endpoint).toBe('[::1]:6379')
  })

  it('REPLICAOF and SLAVEOF name a host, but NO ONE names none', () => {
    expect(outboundTarget(['REPLICAOF', '10.0.0.9', '6379'])).toEqual({ command: 'REPLICAOF', endpoint: '10.0.0.9:6379', gatewayUser: false })
    expect(outboundTarget(['slaveof', 'h', '1'])?.command).toBe('SLAVEOF')
    expect(outboundTarget(['REPLICAOF', 'no', 'one'])).toBeNull()
  })

  it('a malformed port still names no endpoint id that discovery could have', () => {
    expect(outboundTarget(['MIGRATE', 'h', '6379x', 'k', '0', '1'])?.endpoint).toBe('h:6379x')
    expect(outboundTarget(['MIGRATE'])?.endpoint).toBe(':')
  })

  it('other commands connect nowhere', () => {
    for (const args of [['GET', 'k'], ['CLUSTER', 'INFO'], ['CONFIG', 'SET', 'replicaof', 'x'], []]) expect(outboundTarget(args)).toBeNull()
  })
})
