// Static discovery: the instances written in the config file's `discovery.static` section, as the
// same InstanceSpec values Kubernetes discovery produces. Re-run on each config reload.
import { parseEndpointUrl, type GatewayConfig } from '../config/schema.js'
import { parseAnnotations } from './annotations.js'
import { endpointId, type InstanceSpec } from '../core/topology.js'

export const STATIC_SOURCE = 'static'

/** The configured static instances; an empty list when the section is absent. */
export function staticInstances(cfg: GatewayConfig): InstanceSpec[] {
  return (cfg.discovery.static?.instances ?? []).map((inst) => {
    const { policy, errors } = parseAnnotations(inst.annotations)
    return {
      name: inst.name,
      source: STATIC_SOURCE,
      // The config schema validated these, so parsing cannot fail here.
      endpoints: inst.endpoints.map((e) => {
        const { host, port } = parseEndpointUrl(e)
        return { id: endpointId(host, port), host, port, ready: true }
      }),
      policy,
      annotationErrors: errors,
    }
  })
}
