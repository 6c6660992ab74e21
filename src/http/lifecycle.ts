// The gateway's readiness through its life, as /readyz reports it: not ready until its config is
// applied (the static instances are in the routing table), the first Kubernetes sync is done (when
// discovery uses Kubernetes) and the data listener is up; not ready again from the moment shutdown
// begins, while the data plane still serves (load balancers take the pod out meanwhile).

import type { Readiness } from './ops-plane.js'

export interface ReadinessChecks {
  /** Whether the first Kubernetes sync is done; null when Kubernetes discovery is off. */
  kubernetesSynced(): boolean | null
  dataListening(): boolean
}

export class Lifecycle implements Readiness {
  private configured = false
  private stopping = false

  constructor(private readonly checks: ReadinessChecks) {}

  /** The config was applied: the routing table holds the static instances. */
  configApplied(): void {
    this.configured = true
  }

  /** Shutdown began: not ready from now on. */
  stopBegins(): void {
    this.stopping = true
  }

  notReadyReason(): string | null {
    if (this.stopping) return 'shutting down'
    if (!this.configured) return 'first discovery sync not done'
    if (this.checks.kubernetesSynced() === false) return 'first Kubernetes sync not done'
    if (!this.checks.dataListening()) return 'data listener not up'
    return null
  }
}
