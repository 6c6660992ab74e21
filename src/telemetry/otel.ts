// Starts the OpenTelemetry Node SDK for traces when the standard OTEL_* variables ask for it
// (RuntimeEnv.tracing): exporter, endpoint, protocol, headers, sampler and resource all come from
// those variables, read by the SDK itself. Nothing here runs when tracing is off: the SDK is
// loaded with a dynamic import, so an untraced gateway neither loads nor pays for it.
// No auto-instrumentation: the gateway's own spans (tracing.ts) are the whole trace.

import { ROOT_CONTEXT, trace, type Context, type ContextManager, type Tracer } from '@opentelemetry/api'
import type { Logger } from 'pino'
import type { RuntimeEnv } from '../config/load.js'

export interface TracingHandle {
  readonly tracer: Tracer
  /** Flushes buffered spans and stops the exporter. */
  shutdown(): Promise<void>
}

export const SERVICE_NAME = 'redis-gateway'

/**
 * The gateway hands every span its parent explicitly (tracing.ts), so it needs no ambient context.
 * The SDK's default context manager (AsyncLocalStorage) would track every promise of every request:
 * measured at ~45 % of a saturated core's throughput even with 1 % sampling
 * (bench/observability-cost.ts). This one keeps no context at all.
 */
const EXPLICIT_CONTEXT: ContextManager = {
  active: (): Context => ROOT_CONTEXT,
  with: (_ctx, fn, thisArg, ...args) => fn.call(thisArg, ...args),
  bind: (_ctx, target) => target,
  enable() {
    return this
  },
  disable() {
    return this
  },
}

export async function startTracing(env: RuntimeEnv['tracing'], logger: Logger, version: string): Promise<TracingHandle | null> {
  if (!env.enabled) return null
  const { NodeSDK } = await import('@opentelemetry/sdk-node')
  const sdk = new NodeSDK({
    // OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES) win when set.
    ...(env.serviceNameSet ? {} : { serviceName: SERVICE_NAME }),
    instrumentations: [],
    contextManager: EXPLICIT_CONTEXT,
  })
  sdk.start()
  logger.info('OpenTelemetry tracing on (OTEL_* environment)')
  return {
    tracer: trace.getTracer(SERVICE_NAME, version),
    shutdown: () => sdk.shutdown(),
  }
}
