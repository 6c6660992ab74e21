// When the standard OTEL_* variables turn tracing on (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is
// set), and when they turn it off.
import { describe, expect, it } from 'vitest'
import { loadRuntimeEnv } from './load.js'

const tracing = (env: NodeJS.ProcessEnv) => loadRuntimeEnv(env).tracing

describe('loadRuntimeEnv().tracing', () => {
  it('is off with no OTEL_* variable', () => {
    expect(tracing({})).toEqual({ enabled: false, serviceNameSet: false })
    expect(tracing({ OTEL_SERVICE_NAME: 'x' })).toEqual({ enabled: false, serviceNameSet: true })
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }).enabled).toBe(false)
  })
  it('is on with an OTLP endpoint (all signals or traces only) or a trace exporter', () => {
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }).enabled).toBe(true)
    expect(tracing({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces' }).enabled).toBe(true)
    expect(tracing({ OTEL_TRACES_EXPORTER: 'console' }).enabled).toBe(true)
  })
  it('is off when the SDK is disabled or the exporter is none, whatever else is set', () => {
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://j:4318', OTEL_SDK_DISABLED: 'true' }).enabled).toBe(false)
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://j:4318', OTEL_SDK_DISABLED: 'TRUE' }).enabled).toBe(false)
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://j:4318', OTEL_TRACES_EXPORTER: 'none' }).enabled).toBe(false)
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://j:4318', OTEL_SDK_DISABLED: 'false' }).enabled).toBe(true)
  })
})
