#!/usr/bin/env bash
# buildah with this project's own image store: the vfs storage driver (plain directories: no
# overlayfs or fuse needed, works inside a VM or container) under the cache directory, so the
# stand-in base and the built image survive between runs and nothing touches the machine's default
# store (/var/lib/containers). scripts/image/build.sh and test/image/image.test.ts both go through
# here; use it to look at the result by hand:
#
#   bash scripts/image/buildah.sh images
#   bash scripts/image/buildah.sh inspect --type image localhost/redis-gateway:dev
#
# Environment: REDIS_GATEWAY_CACHE (default $HOME/.cache/redis-gateway); the store is
# $REDIS_GATEWAY_CACHE/image/storage, its run-time state (locks) under /run. Needs root.
set -euo pipefail

cache="${REDIS_GATEWAY_CACHE:-${HOME:-/root}/.cache/redis-gateway}"
exec buildah --root "$cache/image/storage" --runroot /run/redis-gateway-image/storage --storage-driver vfs "$@"
