// Reads a request body into one Buffer with a hard size limit: Content-Length over the limit is
// refused before reading; a chunked body is cut off as soon as it passes the limit.

import { Buffer } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import { BadRequestError, OverloadedError, TooLargeError } from '../core/errors.js'
import type { RequestLease } from '../resilience/byte-budget.js'

const EMPTY = Buffer.alloc(0)

export function tooLarge(limit: number): TooLargeError {
  return new TooLargeError(`request body is larger than the limit of ${limit} bytes`, { closeConnection: true })
}

/** What a body read when the shared memory budget cannot take more bytes gets (the connection closes). */
export function bodyOverloaded(): OverloadedError {
  return new OverloadedError('the gateway holds as many request bytes as limits.inflightBytes allows; retry shortly', {
    retryAfterS: 1,
    closeConnection: true,
  })
}

/** The body, each chunk charged to `lease` as it arrives (503 OVERLOADED when the budget is used up). */
export function readBody(req: IncomingMessage, limit: number, lease: RequestLease | null = null): Promise<Buffer> {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit))
  if (req.readableEnded) return Promise.resolve(EMPTY)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const cleanup = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit || (lease !== null && !lease.takeBody(chunk.length))) {
        cleanup()
        // Stop reading; the response closes the connection (the rest of the body is not drained).
        req.pause()
        reject(size > limit ? tooLarge(limit) : bodyOverloaded())
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => {
      cleanup()
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(new BadRequestError(`request body could not be read: ${err.message}`))
    }
    const onClose = (): void => {
      if (!req.readableEnded) {
        cleanup()
        reject(new BadRequestError('client closed the connection before the body was complete'))
      }
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
  })
}

/** For tests and non-Node runtimes: the same limit on a fetch Request. */
export async function readRequestBody(req: Request, limit: number): Promise<Buffer> {
  const declared = req.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit)
  const ab = await req.arrayBuffer()
  if (ab.byteLength > limit) throw tooLarge(limit)
  return Buffer.from(ab)
}
