// Who a request runs as inside Redis (README "Tokens and Redis ACL users"): the Redis user whose
// connection carries its commands, and whose ACL Redis checks for every command, scripts included.
//   gateway  the configured `redis.username`: health checks, and a direct MIGRATE or CLUSTER MEET
//            once its target was found among the discovered endpoints;
//   level    the user the gateway provisions on each endpoint for a token level (read, write,
//            admin), allowed exactly what a token of that level may run directly;
//   user     an operator-managed ACL user named by the token (`redisUser`), with its own key and
//            channel patterns.

/** A token's level, and the commands a level user may run (README "Tokens"); least first. */
export const ACCESS_LEVELS = ['read', 'write', 'admin'] as const
export type Access = (typeof ACCESS_LEVELS)[number]

export type Identity =
  | { readonly kind: 'gateway' }
  | { readonly kind: 'level'; readonly level: Access }
  | {
      readonly kind: 'user'
      readonly user: string
      readonly password: string
      /** Distinguishes connections: the user name and a digest of the password. */
      readonly key: string
    }

export const GATEWAY_IDENTITY: Identity = Object.freeze({ kind: 'gateway' })

export const LEVEL_IDENTITY: Readonly<Record<Access, Identity>> = Object.freeze({
  read: Object.freeze({ kind: 'level', level: 'read' }),
  write: Object.freeze({ kind: 'level', level: 'write' }),
  admin: Object.freeze({ kind: 'level', level: 'admin' }),
})

/** The Redis user name an identity authenticates as, for messages and logs (never the password). */
export function identityName(id: Identity, gatewayUser: string): string {
  switch (id.kind) {
    case 'gateway':
      return gatewayUser === '' ? 'default' : gatewayUser
    case 'level':
      return `the ${id.level} user`
    case 'user':
      return id.user
  }
}
