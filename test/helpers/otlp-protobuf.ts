// Decodes an OTLP/HTTP protobuf trace export (ExportTraceServiceRequest, opentelemetry-proto
// trace/v1 and common/v1) into plain objects: what a collector or Jaeger receives on :4318 with the
// exporter's default protocol. Written from the .proto field numbers, independent of the SDK's own
// encoder, so a test checks the bytes on the wire rather than the SDK against itself. Only what
// the tests read is kept; unknown fields are skipped as the protobuf wire format allows.

export type OtlpValue = string | boolean | number | bigint | OtlpValue[] | null

export interface OtlpEvent {
  readonly name: string
  readonly attributes: Record<string, OtlpValue>
}

export interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  /** '' for a root span. */
  readonly parentSpanId: string
  readonly name: string
  /** SpanKind: 1 internal, 2 server, 3 client. */
  readonly kind: number
  readonly startNs: bigint
  readonly endNs: bigint
  readonly attributes: Record<string, OtlpValue>
  readonly events: OtlpEvent[]
  /** StatusCode: 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message: string }
}

export interface OtlpResourceSpans {
  readonly resource: Record<string, OtlpValue>
  readonly scopes: { readonly name: string; readonly version: string; readonly spans: OtlpSpan[] }[]
}

export const SPAN_KIND = { internal: 1, server: 2, client: 3 } as const
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const

class Reader {
  private pos = 0
  constructor(private readonly buf: Uint8Array) {}
  get done(): boolean {
    return this.pos >= this.buf.length
  }
  varint(): bigint {
    let result = 0n
    let shift = 0n
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint')
      const b = this.buf[this.pos++]!
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return result
      shift += 7n
      if (shift > 63n) throw new Error('varint too long')
    }
  }
  bytes(): Uint8Array {
    const n = Number(this.varint())
    if (this.pos + n > this.buf.length) throw new Error('truncated field')
    const b = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return b
  }
  fixed64(): bigint {
    if (this.pos + 8 > this.buf.length) throw new Error('truncated fixed64')
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getBigUint64(0, true)
    this.pos += 8
    return v
  }
  double(): number {
    if (this.pos + 8 > this.buf.length) throw new Error('truncated double')
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true)
    this.pos += 8
    return v
  }
  skip(wire: number): void {
    if (wire === 0) this.varint()
    else if (wire === 1) this.pos += 8
    else if (wire === 2) this.bytes()
    else if (wire === 5) this.pos += 4
    else throw new Error(`unsupported wire type ${wire}`)
  }
}

/** Calls fn(field, wire, reader) for each field of a message; fn returns false for fields it did not read. */
function each(buf: Uint8Array, fn: (field: number, wire: number, r: Reader) => boolean): void {
  const r = new Reader(buf)
  while (!r.done) {
    const tag = Number(r.varint())
    const field = tag >>> 3
    const wire = tag & 7
    if (!fn(field, wire, r)) r.skip(wire)
  }
}

const utf8 = new TextDecoder()
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** AnyValue: string 1, bool 2, int 3, double 4, array 5 (ArrayValue.values 1). */
function anyValue(buf: Uint8Array): OtlpValue {
  let v: OtlpValue = null
  each(buf, (f, w, r) => {
    if (f === 1 && w === 2) v = utf8.decode(r.bytes())
    else if (f === 2 && w === 0) v = r.varint() !== 0n
    else if (f === 3 && w === 0) {
      const n = BigInt.asIntN(64, r.varint())
      // Attributes that fit a number are compared as numbers.
      v = n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n
    } else if (f === 4 && w === 1) v = r.double()
    else if (f === 5 && w === 2) {
      const values: OtlpValue[] = []
      each(r.bytes(), (af, aw, ar) => af === 1 && aw === 2 && values.push(anyValue(ar.bytes())) > 0)
      v = values
    } else return false
    return true
  })
  return v
}

/** KeyValue: key 1, value 2. */
function keyValue(into: Record<string, OtlpValue>, buf: Uint8Array): void {
  let key = ''
  let value: OtlpValue = null
  each(buf, (f, w, r) => {
    if (f === 1 && w === 2) key = utf8.decode(r.bytes())
    else if (f === 2 && w === 2) value = anyValue(r.bytes())
    else return false
    return true
  })
  into[key] = value
}

/** Span.Event: name 2, attributes 3. */
function spanEvent(buf: Uint8Array): OtlpEvent {
  let name = ''
  const attributes: Record<string, OtlpValue> = {}
  each(buf, (f, w, r) => {
    if (f === 2 && w === 2) name = utf8.decode(r.bytes())
    else if (f === 3 && w === 2) keyValue(attributes, r.bytes())
    else return false
    return true
  })
  return { name, attributes }
}

/** Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8, attributes 9, events 11, status 15. */
function span(buf: Uint8Array): OtlpSpan {
  let traceId = ''
  let spanId = ''
  let parentSpanId = ''
  let name = ''
  let kind = 0
  let startNs = 0n
  let endNs = 0n
  const attributes: Record<string, OtlpValue> = {}
  const events: OtlpEvent[] = []
  const status = { code: 0, message: '' }
  each(buf, (f, w, r) => {
    if (f === 1 && w === 2) traceId = hex(r.bytes())
    else if (f === 2 && w === 2) spanId = hex(r.bytes())
    else if (f === 4 && w === 2) parentSpanId = hex(r.bytes())
    else if (f === 5 && w === 2) name = utf8.decode(r.bytes())
    else if (f === 6 && w === 0) kind = Number(r.varint())
    else if (f === 7 && w === 1) startNs = r.fixed64()
    else if (f === 8 && w === 1) endNs = r.fixed64()
    else if (f === 9 && w === 2) keyValue(attributes, r.bytes())
    else if (f === 11 && w === 2) events.push(spanEvent(r.bytes()))
    else if (f === 15 && w === 2) {
      // Status: message 2, code 3.
      each(r.bytes(), (sf, sw, sr) => {
        if (sf === 2 && sw === 2) status.message = utf8.decode(sr.bytes())
        else if (sf === 3 && sw === 0) status.code = Number(sr.varint())
        else return false
        return true
      })
    } else return false
    return true
  })
  return { traceId, spanId, parentSpanId, name, kind, startNs, endNs, attributes, events, status }
}

/** ScopeSpans: scope 1 (InstrumentationScope: name 1, version 2), spans 2. */
function scopeSpans(buf: Uint8Array): OtlpResourceSpans['scopes'][number] {
  let name = ''
  let version = ''
  const spans: OtlpSpan[] = []
  each(buf, (f, w, r) => {
    if (f === 1 && w === 2) {
      each(r.bytes(), (sf, sw, sr) => {
        if (sf === 1 && sw === 2) name = utf8.decode(sr.bytes())
        else if (sf === 2 && sw === 2) version = utf8.decode(sr.bytes())
        else return false
        return true
      })
    } else if (f === 2 && w === 2) spans.push(span(r.bytes()))
    else return false
    return true
  })
  return { name, version, spans }
}

/** ResourceSpans: resource 1 (Resource: attributes 1), scope_spans 2. */
function resourceSpans(buf: Uint8Array): OtlpResourceSpans {
  const resource: Record<string, OtlpValue> = {}
  const scopes: OtlpResourceSpans['scopes'] = []
  each(buf, (f, w, r) => {
    if (f === 1 && w === 2) each(r.bytes(), (rf, rw, rr) => rf === 1 && rw === 2 && (keyValue(resource, rr.bytes()), true))
    else if (f === 2 && w === 2) scopes.push(scopeSpans(r.bytes()))
    else return false
    return true
  })
  return { resource, scopes }
}

/** Decodes one ExportTraceServiceRequest body (resource_spans 1). */
export function decodeTraceExport(body: Uint8Array): OtlpResourceSpans[] {
  const out: OtlpResourceSpans[] = []
  each(body, (f, w, r) => f === 1 && w === 2 && out.push(resourceSpans(r.bytes())) > 0)
  return out
}
