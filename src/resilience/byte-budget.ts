// Memory that requests hold: request bodies being read and replies being received from Redis and
// written back to clients. Two bounds, so that one client cannot take memory from the others:
// - per request, its replies may keep at most `limits.maxReply` bytes (checked while they stream in
//   from Redis: a reply over it is skipped, not kept, and the request gets a 413);
// - all requests together hold at most `limits.inflightBytes` beyond a small allowance each
//   (SMALL_REQUEST_BYTES): a request that would go over is refused with a 503, while small requests
//   keep being served even when big ones have used the budget up.
// A request's bytes are given back when its reply has left for the client (or the client is gone).

/** Bytes every request may hold without drawing on the shared budget. */
export const SMALL_REQUEST_BYTES = 64 * 1024

/**
 * What one element of a reply costs beyond its bytes (a JavaScript value and its slot): counted
 * against the reply limits, so a reply of millions of tiny elements is bounded like a big string.
 */
export const REPLY_ELEMENT_BYTES = 48

/** The shared budget of all requests (`limits.inflightBytes`). */
export class ByteBudget {
  private used = 0
  /** Highest use seen, for figures and tests. */
  private peak = 0

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used
  }

  get highWater(): number {
    return this.peak
  }

  tryTake(n: number): boolean {
    const used = this.used + n
    if (used > this.limit) return false
    this.used = used
    if (used > this.peak) this.peak = used
    return true
  }

  /** Takes `n` even beyond the limit (bytes already held that cannot be refused any more). */
  force(n: number): void {
    this.used += n
    if (this.used > this.peak) this.peak = this.used
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n)
  }
}

/**
 * The outcome of charging reply bytes: taken, refused because the request's replies would pass
 * `limits.maxReply`, or refused because the shared budget is used up.
 */
export type Charge = 'ok' | 'too-large' | 'overloaded'

/**
 * One request's share of the budget; release() gives it back (idempotent) and ends the lease: a
 * reply still arriving for a request whose client is gone is then refused (skipped, never stored).
 */
export class RequestLease {
  /** Everything charged: body and reply bytes. */
  private total = 0
  private released = false
  private reply = 0
  /** The part of `total` taken from the shared budget (beyond the free allowance). */
  private shared = 0
  /** Bytes held without drawing on the shared budget: SMALL_REQUEST_BYTES, 0 after chargeAll(). */
  private allowance = SMALL_REQUEST_BYTES

  constructor(
    private readonly budget: ByteBudget,
    /** Reply bytes this request may keep (`limits.maxReply`). */
    readonly maxReplyBytes: number,
  ) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.total
  }

  /** Charges request-body bytes; false when the shared budget cannot take them. */
  takeBody(n: number): boolean {
    return this.take(n)
  }

  /** Charges reply bytes (REPLY_ELEMENT_BYTES per element included by the caller). */
  takeReply(n: number): Charge {
    if (this.reply + n > this.maxReplyBytes) return 'too-large'
    if (!this.take(n)) return 'overloaded'
    this.reply += n
    return 'ok'
  }

  /**
   * Charges the encoded reply (its JSON text, then the bytes waiting to leave for the client),
   * before it is built: JSON can be several times the raw reply (a byte 0x00 is `\u0000` in
   * UTF-8 mode, 6 bytes; base64 is 4/3), which reply charging alone does not see. Refused (false)
   * when the shared budget cannot take it, unless `force`: a write's reply is always taken, since
   * the write has run and cannot be taken back; it then counts against the budget, so that later
   * requests are refused while it is held.
   */
  takeOutput(n: number, force: boolean): boolean {
    return this.take(n, force)
  }


  /**
   * From now on every byte of the request counts against the shared budget, those it holds already
   * included: for a request that waits in an endpoint's queue (upstream/dispatch.ts), so that
   * thousands of waiting requests cannot hold more than limits.inflightBytes with bodies each
   * within the free allowance. False, and nothing changed, when the budget cannot take them.
   */
  chargeAll(): boolean {
    if (this.released) return false
    if (this.allowance === 0) return true
    const need = this.total - this.shared
    if (need > 0) {
      if (!this.budget.tryTake(need)) return false
      this.shared += need
    }
    this.allowance = 0
    return true
  }

  /** `force`: taken from the shared budget even beyond its limit (see takeOutput). */
  private take(n: number, force = false): boolean {
    if (this.released) return false
    const total = this.total + n
    const need = total - this.allowance - this.shared
    if (need > 0) {
      if (force) this.budget.force(need)
      else if (!this.budget.tryTake(need)) return false
      this.shared += need
    }
    this.total = total
    return true
  }


  /** The lease was released: its request is over (answered, or its client gone). */
  get ended(): boolean {
    return this.released
  }

  release(): void {
    this.released = true
    if (this.shared > 0) this.budget.give(this.shared)
    this.shared = 0
    this.total = 0
    this.reply = 0
    this.allowance = SMALL_REQUEST_BYTES
  }
}
