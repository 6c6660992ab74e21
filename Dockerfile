# syntax=docker/dockerfile:1
# redis-gateway image: build the TypeScript, then a runtime image with production dependencies only.
#
#   docker build -t redis-gateway:dev .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/gateway.yaml:/etc/redis-gateway/config/gateway.yaml:ro" redis-gateway:dev
#
# Base: Debian bookworm slim, Node pinned by exact version (the CI machine's Node, 20.20.2) and by
# digest: the multi-arch index digest of node:20.20.2-bookworm-slim (its linux/amd64 manifest is
# sha256:3d0f05455dea2c82e2f76e7e2543964c30f6b7d673fc1a83286736d44fe4c41c). The tag is for people;
# the digest is what is pulled, so a re-pushed tag changes nothing until the digest is updated. To
# update (new Node patch, or the same tag rebuilt with Debian fixes), take the top-level index
# digest, not a per-platform one:
#   docker buildx imagetools inspect node:20.20.2-bookworm-slim    (the "Digest:" line), or
#   skopeo inspect --raw docker://docker.io/library/node:20.20.2-bookworm-slim | sha256sum
# and replace tag and digest in NODE_IMAGE below; Renovate/Dependabot can keep both current.
#
# Signals: node runs as PID 1 in exec form (no shell in between), so SIGTERM from the kubelet reaches
# the gateway, whose handler (src/main.ts) fails /readyz, waits shutdown.delay, drains in-flight
# requests for up to shutdown.timeout and exits. PID 1 ignores signals that have no handler, which is
# why a process without one needs tini; the gateway installs handlers for SIGTERM and SIGINT, and it
# starts no child processes, so there are no zombies to reap: no tini, no --init needed.
#
# Built in CI without a Docker engine or a registry: scripts/image/build.sh runs this file unchanged
# with buildah on a locally made stand-in base passed as --build-arg NODE_IMAGE (a digest cannot be
# given to a local image), and test/image/image.test.ts runs the result with runc read-only as uid
# 1000 against a real Redis, as the chart's securityContext does (uid 1000, read-only root
# filesystem, writable /tmp emptyDir).

ARG NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

# ---- build: compile src/ to dist/ with the dev dependencies (TypeScript) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No production dependency needs an install script (no native addons), so none is run.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime ----
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    GATEWAY_CONFIG=/etc/redis-gateway/config/gateway.yaml
WORKDIR /app
# npm and corepack are not needed at run time: less to scan, less to patch.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --from=build --chown=0:0 /app/dist/src ./dist/src
COPY --chown=0:0 package.json ./
# The image's `node` user, by number so runAsNonRoot can verify it. Files stay owned by root:
# the process cannot modify its own code.
USER 1000:1000
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
# Node's options as an environment variable, so that a deployment can change them (the chart's
# nodeOptions): a flag on the command line would override whatever NODE_OPTIONS says. The default
# is a 64 MiB semi-space, so requests in flight under load die young instead of being promoted to the
# old generation (bench/README.md: -10 % CPU per GET, -9 % per 100-command pipeline; a smaller one
# trades throughput for tail latency: charts/redis-gateway/README.md, "Node options"). The gateway
# turns V8's allocation-site pretenuring off itself (src/core/v8-tuning.ts).
ENV NODE_OPTIONS="--max-semi-space-size=64"
ENTRYPOINT ["node", "dist/src/main.js"]
