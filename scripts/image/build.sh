#!/usr/bin/env bash
# Builds the repository's Dockerfile, unchanged, with buildah on a machine with no Docker engine and
# no registry for base images:
#
#   1. a stand-in for the Dockerfile's base (node:<version>-bookworm-slim): Debian made with
#      debootstrap (minbase) from the machine's apt mirror, plus the machine's own Node binary, npm and
#      corepack laid out as in the official image (/usr/local/bin/node, /usr/local/lib/node_modules,
#      user `node` uid/gid 1000, a docker-entrypoint.sh, CMD node);
#   2. `buildah bud --storage-driver vfs --isolation chroot --pull=never` of the real Dockerfile with
#      --build-arg NODE_IMAGE=<the stand-in>.
#
# Why the build-arg: the Dockerfile pins its base by digest (ARG NODE_IMAGE=node:...@sha256:...). A
# digest is the hash of the registry's manifest; a locally made image cannot have it, and buildah
# refuses to put one on it ("tag by digest not supported"), while `--pull=never` with the pinned
# reference fails with "node@sha256:...: image not known". So the stand-in is named
# localhost/stand-in/<the Dockerfile's name:tag> and the one ARG every FROM uses points at it; the
# Dockerfile itself is built as it is. A registry-connected build (docker build, buildah bud with
# network access) uses the pinned default.
#
# Cache (between runs and CI reruns): the stand-in images live in the image store under
# ${REDIS_GATEWAY_CACHE:-$HOME/.cache/redis-gateway}/image (see buildah.sh), each labelled with a
# key of what it was made from (suite, mirror, Node/npm version and binary hash); a matching one is
# reused, so only the first run pays for debootstrap. STANDIN_REBUILD=1 makes both again. npm's
# download cache for the build's `RUN --mount=type=cache` is buildah's own (under /var/tmp).
#
# Environment:
#   REDIS_GATEWAY_IMAGE  name of the built image (default localhost/redis-gateway:dev)
#   REDIS_GATEWAY_CACHE  cache root (default $HOME/.cache/redis-gateway)
#   STANDIN_REBUILD=1    remake the stand-in base even when a cached one matches
#   DEBIAN_MIRROR        mirror for debootstrap (default: the machine's apt source for the suite)
# Needs: root (buildah's chroot isolation, debootstrap); installs buildah, debootstrap and runc
# (the OCI runtime test/image/image.test.ts runs the image with) with apt-get when missing. runc,
# not crun (which buildah pulls in): crun 1.8 refuses this machine kind's hybrid cgroup layout
# ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2", also with
# --cgroup-manager=disabled).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bw() { bash "$repo/scripts/image/buildah.sh" "$@"; }

IMAGE="${REDIS_GATEWAY_IMAGE:-localhost/redis-gateway:dev}"
# Bump when the way the stand-in is made changes: cached stand-ins with another format are remade.
STANDIN_FORMAT=1
KEY_LABEL=io.redis-gateway.stand-in.key

log() { printf '[image] %s\n' "$*"; }
die() {
  printf '[image] ERROR: %s\n' "$*" >&2
  exit 1
}
current=''
work=''
# shellcheck disable=SC2154 # status is assigned inside the trap
trap 'status=$?; if [ -n "$work" ]; then rm -rf "$work"; fi; if [ "$status" -ne 0 ] && [ -n "$current" ]; then printf "[image] ERROR: failed while: %s (exit %s)\n" "$current" "$status" >&2; fi' EXIT

[ "$(id -u)" -eq 0 ] || die "run as root: buildah's chroot isolation and debootstrap need it"
started=$SECONDS

# ---------------------------------------------------------------------------------------------
# Packages (only when the command is missing).

apt_updated=''
apt_install() { # apt_install PACKAGE COMMAND
  local pkg="$1" cmd="$2"
  if command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  current="apt-get install -y $pkg (for $cmd)"
  log "$cmd not found: $current"
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" || die "apt-get install -y $pkg failed"
  command -v "$cmd" >/dev/null 2>&1 || die "$pkg installed but $cmd is still not on PATH"
  current=''
}
apt_install buildah buildah
apt_install debootstrap debootstrap
apt_install runc runc
log "$(buildah --version); debootstrap $(dpkg-query -W -f='${Version}' debootstrap); $(runc --version | head -1)"

# ---------------------------------------------------------------------------------------------
# What the Dockerfile builds on: the default of `ARG NODE_IMAGE=`, e.g.
# node:20.20.2-bookworm-slim@sha256:... -> name:tag node:20.20.2-bookworm-slim, Node 20.20.2, bookworm.

pinned="$(sed -n 's/^ARG NODE_IMAGE=\([^[:space:]]*\).*/\1/p' "$repo/Dockerfile" | head -1)"
[ -n "$pinned" ] || die "no 'ARG NODE_IMAGE=' default in Dockerfile: this script overrides that ARG with the stand-in"
base_tag="${pinned%%@*}"
[[ "$base_tag" =~ ^(docker\.io/)?(library/)?node:([0-9]+)\.([0-9]+)\.([0-9]+)-([a-z]+)-slim$ ]] ||
  die "Dockerfile base $pinned is not node:<x.y.z>-<debian suite>-slim: the stand-in only imitates that"
base_major="${BASH_REMATCH[3]}"
base_version="${BASH_REMATCH[3]}.${BASH_REMATCH[4]}.${BASH_REMATCH[5]}"
suite="${BASH_REMATCH[6]}"
standin="localhost/stand-in/node:${base_version}-${suite}-slim"
debian_ref="localhost/stand-in/debian:${suite}-minbase"
log "Dockerfile base: $pinned"
log "stand-in:        $standin (on $debian_ref)"

# The machine's Node goes into the stand-in: its major must be the Dockerfile's.
node_bin="$(readlink -f "$(command -v node)")" || die "node not found on PATH: the stand-in base copies the machine's Node"
node_version="$("$node_bin" -p process.versions.node)"
[ "${node_version%%.*}" = "$base_major" ] || die "the machine's Node is $node_version; the Dockerfile's base is Node $base_version: a stand-in needs the same major"
[ "$node_version" = "$base_version" ] || log "note: the machine's Node is $node_version, the Dockerfile pins $base_version: the stand-in runs $node_version"
npm_dir="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)" || die "npm not found on PATH"
[ -f "$npm_dir/bin/npm-cli.js" ] || die "npm's package directory not found (looked at $npm_dir)"
npm_version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$npm_dir/package.json" | head -1)"
corepack_dir="$(dirname "$npm_dir")/corepack"
[ -f "$corepack_dir/dist/corepack.js" ] || corepack_dir=''

# The mirror debootstrap uses: DEBIAN_MIRROR, else the machine's apt source that serves the suite
# (deb822 .sources or a one-line sources.list), else debootstrap's own default.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  shopt -s nullglob
  sources=(/etc/apt/sources.list.d/*.sources)
  lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  shopt -u nullglob
  if [ "${#sources[@]}" -gt 0 ]; then
    mirror="$(awk -v suite="$suite" 'BEGIN { RS = "" } {
        uri = ""; ok = 0; n = split($0, line, "\n")
        for (i = 1; i <= n; i++) {
          if (line[i] ~ /^URIs:/) { split(line[i], u, /[ \t]+/); uri = u[2] }
          if (line[i] ~ /^Suites:/) { m = split(line[i], s, /[ \t]+/); for (j = 2; j <= m; j++) if (s[j] == suite) ok = 1 }
        }
        if (ok && uri != "") { print uri; exit }
      }' "${sources[@]}")"
  fi
  if [ -z "$mirror" ]; then
    for f in "${lists[@]}"; do
      [ -f "$f" ] || continue
      mirror="$(awk -v suite="$suite" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' "$f")"
      [ -n "$mirror" ] && break
    done
  fi
fi
log "debootstrap mirror: ${mirror:-(debootstrap default)}"

# Key label of a stored image, or nothing when the image is not there.
stored_key() { bw inspect --type image --format "{{index .OCIv1.Config.Labels \"$KEY_LABEL\"}}" "$1" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------------
# 1a. Debian minbase (debootstrap), cached.

phase=$SECONDS
debian_key="format=$STANDIN_FORMAT suite=$suite variant=minbase arch=$(dpkg --print-architecture) mirror=${mirror:-default}"
if [ -z "${STANDIN_REBUILD:-}" ] && [ "$(stored_key "$debian_ref")" = "$debian_key" ]; then
  log "reusing cached $debian_ref"
else
  current="debootstrap --variant=minbase $suite"
  log "making $debian_ref: $current (a few minutes, once)"
  ctr="$(bw from --pull=never scratch)"
  mnt="$(bw mount "$ctr")"
  dlog="$(mktemp)"
  # shellcheck disable=SC2086 # an empty mirror is left out on purpose
  if ! debootstrap --variant=minbase --arch "$(dpkg --print-architecture)" "$suite" "$mnt" $mirror >"$dlog" 2>&1; then
    tail -n 40 "$dlog" >&2
    [ -f "$mnt/debootstrap/debootstrap.log" ] && tail -n 40 "$mnt/debootstrap/debootstrap.log" >&2
    bw rm "$ctr" >/dev/null 2>&1 || true
    rm -f "$dlog"
    die "debootstrap failed (log above)"
  fi
  rm -f "$dlog"
  # What debian:*-slim images also leave out: package caches and lists, logs.
  rm -rf "$mnt"/var/cache/apt/archives/*.deb "$mnt"/var/cache/apt/*.bin "$mnt"/var/lib/apt/lists/* "$mnt"/var/log/*.log
  : >"$mnt/etc/hostname"
  bw umount "$ctr" >/dev/null
  bw config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --os linux --arch "$(dpkg --print-architecture)" --label "$KEY_LABEL=$debian_key" "$ctr"
  bw commit --quiet --rm "$ctr" "$debian_ref" >/dev/null
  current=''
fi
log "debian base ready ($((SECONDS - phase)) s)"

# ---------------------------------------------------------------------------------------------
# 1b. The Node layer, cached: as the official node image lays it out.

phase=$SECONDS
debian_id="$(bw inspect --type image --format '{{.FromImageID}}' "$debian_ref")"
node_key="format=$STANDIN_FORMAT base=$debian_id node=$node_version sha256=$(sha256sum "$node_bin" | cut -d' ' -f1) npm=$npm_version corepack=${corepack_dir:+yes}"
if [ -z "${STANDIN_REBUILD:-}" ] && [ "$(stored_key "$standin")" = "$node_key" ]; then
  log "reusing cached $standin"
else
  current="making $standin"
  log "$current: Node $node_version ($node_bin), npm $npm_version"
  ctr="$(bw from --pull=never "$debian_ref")"
  mnt="$(bw mount "$ctr")"
  install -D -m 0755 "$node_bin" "$mnt/usr/local/bin/node"
  mkdir -p "$mnt/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$mnt/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  if [ -n "$corepack_dir" ]; then
    cp -a "$corepack_dir" "$mnt/usr/local/lib/node_modules/corepack"
    ln -s ../lib/node_modules/corepack/dist/corepack.js "$mnt/usr/local/bin/corepack"
  fi
  ln -s node "$mnt/usr/local/bin/nodejs"
  # The official image's entrypoint behaviour: a first argument that is an option, or no command,
  # runs node with the arguments. (The redis-gateway Dockerfile sets its own ENTRYPOINT.)
  cat >"$mnt/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1" || true)" ]; then
  set -- node "$@"
fi
exec "$@"
EOF
  chmod 0755 "$mnt/usr/local/bin/docker-entrypoint.sh"
  bw umount "$ctr" >/dev/null
  bw run --isolation chroot "$ctr" -- sh -ec '
    groupadd --gid 1000 node
    useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    node --version
    npm --version'
  bw config --env "NODE_VERSION=$node_version" --entrypoint '["docker-entrypoint.sh"]' --cmd node \
    --label "$KEY_LABEL=$node_key" \
    --label "io.redis-gateway.stand-in.for=$pinned" "$ctr"
  bw commit --quiet --rm "$ctr" "$standin" >/dev/null
  current=''
fi
log "stand-in base ready ($((SECONDS - phase)) s)"

# ---------------------------------------------------------------------------------------------
# 2. The real Dockerfile.

# Where npm's TLS goes through an intercepting proxy (NODE_EXTRA_CA_CERTS or npm's cafile on this
# machine), the build's `npm ci` needs that CA too: a directory holding it and an npm global config
# naming it is bind-mounted over /usr/local/etc (npm's global config directory with node in
# /usr/local; empty in Debian images) in the RUN steps. It is there only while a step runs: a -v
# onto a path that does not exist would leave an empty mount-point file in the image, so the target
# is a directory every Debian image has.
build_mounts=()
ca="${NODE_EXTRA_CA_CERTS:-}"
if [ -z "$ca" ]; then
  ca="$(npm config get cafile 2>/dev/null || true)"
  case "$ca" in null | undefined) ca='' ;; esac
fi
if [ -n "$ca" ] && [ -f "$ca" ]; then
  work="$(mktemp -d)"
  cp "$ca" "$work/build-ca.crt"
  printf 'cafile=/usr/local/etc/build-ca.crt\n' >"$work/npmrc"
  chmod 0755 "$work"
  chmod 0644 "$work/npmrc" "$work/build-ca.crt"
  build_mounts=(-v "$work:/usr/local/etc:ro")
  log "npm's CA for the build: $ca (bind-mounted into RUN steps only)"
fi

phase=$SECONDS
current="buildah bud $IMAGE"
log "building $IMAGE from Dockerfile (--build-arg NODE_IMAGE=$standin)"
bw bud --isolation chroot --pull=never --layers=false \
  --build-arg "NODE_IMAGE=$standin" \
  "${build_mounts[@]}" \
  -f "$repo/Dockerfile" -t "$IMAGE" "$repo"
current=''
# The image this run replaced is left untagged: remove such leftovers so the store does not grow.
bw rmi --prune >/dev/null 2>&1 || true
log "built $IMAGE ($((SECONDS - phase)) s)"

bw inspect --type image --format \
  '[image] id {{.FromImageID}}, user {{.OCIv1.Config.User}}, workdir {{.OCIv1.Config.WorkingDir}}, entrypoint {{.OCIv1.Config.Entrypoint}}, cmd {{.OCIv1.Config.Cmd}}, stopsignal {{.OCIv1.Config.StopSignal}}' \
  "$IMAGE"
echo
log "done in $((SECONDS - started)) s"
