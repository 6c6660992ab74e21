// Reading a gateway event stream (SSE) as a test sees it: the `data:` lines and `: ` comments as
// they arrive, and whether the server ended the response.

/** What has arrived on an event stream so far. */
export interface EventLines {
  /** The payload of each `data:` line, in order. */
  readonly events: string[]
  /** Comment lines (`: ...`, e.g. heartbeats), in order. */
  readonly comments: string[]
  /** The server ended the response cleanly. */
  readonly ended: boolean
  /** Reading failed other than by our own abort (e.g. the server reset the connection). */
  readonly failed: boolean
}

/**
 * Reads `body` in the background, splitting it into lines. `signal` is the request's abort signal:
 * a read that fails because the test aborted is neither ended nor failed.
 */
export function readEventLines(body: ReadableStream<Uint8Array>, signal: AbortSignal): EventLines {
  const events: string[] = []
  const comments: string[] = []
  let ended = false
  let failed = false
  const reader = body.getReader()
  const dec = new TextDecoder()
  void (async () => {
    let buf = ''
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) {
          ended = true
          return
        }
        buf += dec.decode(value, { stream: true })
        let i: number
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i)
          buf = buf.slice(i + 1)
          if (line.startsWith('data: ')) events.push(line.slice(6))
          else if (line.startsWith(': ')) comments.push(line.slice(2))
        }
      }
    } catch {
      if (!signal.aborted) failed = true
    }
  })()
  return {
    events,
    comments,
    get ended() {
      return ended
    },
    get failed() {
      return failed
    },
  }
}
