#!/usr/bin/env bash
# Builds (once) the binaries the Kubernetes test suite needs, from Go modules:
#   kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver at KUBE_VERSION, in a throwaway module
#                   that replaces every staging module (k8s.io/api, k8s.io/apiserver, ...) with
#                   its published k8s.io/<name> v0.<minor>.<patch> (the kubernetes go.mod points
#                   them at ./staging/src/..., which a module download does not contain);
#   etcd            go.etcd.io/etcd/server/v3/etcdmain at ETCD_VERSION (Debian's etcd-server is
#                   3.4.23: see the note at build_etcd);
#   helm            helm.sh/helm/v3/cmd/helm at HELM_VERSION, with the ldflags of helm's own
#                   Makefile (its version, and its default Kubernetes version from its client-go).
# Versions are pinned in scripts/kube/versions.env. Binaries are cached outside the repo, keyed by
# version: ${REDIS_GATEWAY_CACHE:-$HOME/.cache/redis-gateway}/bin/<tool>-<version>/<tool>.
# A cached binary that answers --version is reused (helm: only when its BUILD-INFO shows the ldflags
# this script links with now); otherwise it is built. Any failure exits non-zero with a message:
# nothing is skipped.
#
# Environment:
#   REDIS_GATEWAY_CACHE  cache root (default $HOME/.cache/redis-gateway)
#   KUBE_TOOLS           which tools, space-separated (default "kube-apiserver etcd helm")
#   KUBE_TOOLS_REBUILD=1 rebuild even when a cached binary exists
#   KUBE_TOOLS_JOBS      go build -p (default: nproc)
# Needs: Go >= 1.26 (go on PATH or /usr/local/go/bin), the Go module proxy; installs openssl and
# iproute2 with apt-get when their commands are missing (root, or sudo).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$script_dir/versions.env"

CACHE="${REDIS_GATEWAY_CACHE:-$HOME/.cache/redis-gateway}"
TOOLS="${KUBE_TOOLS:-kube-apiserver etcd helm}"
JOBS="${KUBE_TOOLS_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# Free space a fresh build needs (module cache + build cache + binaries), checked before building.
MIN_FREE_MB=6000

log() { printf '[kube-tools] %s\n' "$*"; }
die() {
  printf '[kube-tools] ERROR: %s\n' "$*" >&2
  current=''
  exit 1
}
current=''
# shellcheck disable=SC2154 # status is assigned inside the trap
trap 'status=$?; if [ "$status" -ne 0 ] && [ -n "$current" ]; then printf "[kube-tools] ERROR: failed while: %s (exit %s)\n" "$current" "$status" >&2; fi' EXIT

# ---------------------------------------------------------------------------------------------
# System packages (only when the command is missing).

apt_updated=''
apt_install() { # apt_install PACKAGE COMMAND
  local pkg="$1" cmd="$2"
  if command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  local sudo=''
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "$cmd is missing and this is not root (and no sudo): install Debian package $pkg"
    sudo='sudo'
  fi
  current="apt-get install -y $pkg (for $cmd)"
  log "$cmd not found: $current"
  if [ -z "$apt_updated" ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update || die "apt-get update failed"
    apt_updated=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" || die "apt-get install -y $pkg failed"
  command -v "$cmd" >/dev/null 2>&1 || die "$pkg installed but $cmd is still not on PATH"
  current=''
}

# openssl: certificates and service-account keys (test/kubernetes/helpers/cluster.ts).
apt_install openssl openssl
# ip: network namespaces for Redis servers with non-loopback addresses (EndpointSlices refuse loopback).
apt_install iproute2 ip

# ---------------------------------------------------------------------------------------------
# Go.

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null 2>&1 || die "go not found (PATH or /usr/local/go/bin): Go >= 1.26 is needed to build kube-apiserver, etcd and helm (Debian's golang package is too old)"
log "go: $(go version) ($(command -v go))"

export CGO_ENABLED=0     # static binaries, as the upstream release builds
export GOFLAGS=-trimpath # no local paths in the binaries; the same flags keep the Go build cache valid
export GOWORK=off
unset GOOS GOARCH

bin_root="$CACHE/bin"
src_root="$CACHE/src"
mkdir -p "$bin_root" "$src_root"

# One run at a time per cache (two CI steps or shells sharing a machine).
exec 9>"$CACHE/.tools.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || {
    log "another tools.sh holds $CACHE/.tools.lock: waiting (up to 90 min)"
    flock -w 5400 9 || die "timed out waiting for $CACHE/.tools.lock"
  }
fi

checked_space=''
check_space() {
  [ -n "$checked_space" ] && return 0
  checked_space=1
  local dir free_mb
  for dir in "$CACHE" "$(go env GOMODCACHE)" "$(go env GOCACHE)"; do
    mkdir -p "$dir"
    free_mb=$(df -Pm "$dir" | awk 'NR==2 {print $4}')
    if [ -n "$free_mb" ] && [ "$free_mb" -lt "$MIN_FREE_MB" ]; then
      die "only ${free_mb} MB free under $dir; building the Kubernetes tools needs about ${MIN_FREE_MB} MB"
    fi
  done
}

# The command that prints a tool's version (helm has no --version flag).
version_of() { # version_of TOOL BINARY
  case "$1" in
    helm) "$2" version --short 2>&1 ;;
    *) "$2" --version 2>&1 ;;
  esac
}

# cached TOOL VERSION [LDFLAGS] -> 0 when $bin_root/TOOL-VERSION/TOOL exists and prints its
# version, and, when LDFLAGS is given, its BUILD-INFO says it was linked with exactly those
# (a binary from an older recipe of this script is rebuilt once). Tools whose ldflags hold the
# build date (kube-apiserver) are checked by version only.
cached() {
  local bin="$bin_root/$1-$2/$1"
  [ "${KUBE_TOOLS_REBUILD:-}" = 1 ] && return 1
  [ -x "$bin" ] || return 1
  if [ $# -ge 3 ]; then
    local built
    built=$(sed -n 's/^ldflags=//p' "$bin_root/$1-$2/BUILD-INFO" 2>/dev/null | sed -n 1p)
    if [ "$built" != "$3" ]; then
      log "$1 $2: cached binary was linked with other ldflags (${built:-no BUILD-INFO}): rebuilding with: $3"
      return 1
    fi
  fi
  local out
  if out=$(version_of "$1" "$bin" | sed -n "1,3p") && [ -n "$out" ]; then
    log "$1 $2: cached at $bin ($(printf '%s' "$out" | tr '\n' ' '))"
    return 0
  fi
  log "$1 $2: cached binary does not run (version: $out): rebuilding"
  return 1
}

# go_build TOOL VERSION MODULE_DIR PACKAGE LDFLAGS -> builds into $bin_root/TOOL-VERSION/TOOL
go_build() {
  local tool="$1" version="$2" dir="$3" pkg="$4" ldflags="$5"
  local out_dir="$bin_root/$tool-$version"
  local out="$out_dir/$tool"
  mkdir -p "$out_dir"
  current="go mod tidy for $tool $version in $dir"
  log "$current"
  (cd "$dir" && go mod tidy) || die "$current failed"
  current="go build $pkg ($tool $version, -p $JOBS)"
  log "$current: first build takes minutes on 2 cores"
  local started=$SECONDS
  (cd "$dir" && go build -p "$JOBS" -ldflags="$ldflags" -o "$out.tmp.$$" "$pkg") || {
    rm -f "$out.tmp.$$"
    die "$current failed (command: cd $dir && CGO_ENABLED=0 GOFLAGS=-trimpath go build -p $JOBS -ldflags='$ldflags' -o $out $pkg)"
  }
  mv -f "$out.tmp.$$" "$out"
  local took=$((SECONDS - started))
  local version_out
  version_out=$(version_of "$tool" "$out" | sed -n "1,3p" | tr '\n' ' ') || die "built $out but it does not print its version: $version_out"
  {
    echo "tool=$tool"
    echo "version=$version"
    echo "package=$pkg"
    echo "go=$(go version)"
    echo "ldflags=$ldflags"
    echo "build_seconds=$took"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$out_dir/BUILD-INFO"
  log "$tool $version: built in ${took}s, $(du -h "$out" | cut -f1), $out ($version_out)"
  current=''
}

# ---------------------------------------------------------------------------------------------

build_kube_apiserver() {
  local v="$KUBE_VERSION"
  cached kube-apiserver "$v" && return 0
  check_space
  [[ "$v" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "KUBE_VERSION must look like v1.36.3, not $v"
  local minor="${BASH_REMATCH[1]}" staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
  local dir="$src_root/kube-apiserver-$v"
  mkdir -p "$dir"

  current="go mod download k8s.io/kubernetes@$v"
  log "$current"
  local info gomod
  info=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v") || die "$current failed: $info"
  gomod=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || die "$current: no go.mod in its answer: $info"

  # Every staging module that release's go.mod replaces with ./staging/src/k8s.io/<name>.
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$gomod" | sort -u)
  [ -n "$staging" ] || die "found no ./staging replace directives in $gomod"
  log "kube-apiserver $v: replacing $(printf '%s\n' "$staging" | wc -l) staging modules with $staging_version"

  {
    echo "// Generated by scripts/kube/tools.sh: builds kube-apiserver $v. Do not edit; delete the folder to regenerate."
    echo "module redis-gateway.local/kube-tools"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod" | sed -n 1p)"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "tool k8s.io/kubernetes/cmd/kube-apiserver"
    echo
    echo "replace ("
    local m
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
    echo ")"
  } >"$dir/go.mod.new"
  if ! cmp -s "$dir/go.mod.new" "$dir/go.mod"; then
    mv -f "$dir/go.mod.new" "$dir/go.mod"
    rm -f "$dir/go.sum"
  else
    rm -f "$dir/go.mod.new"
  fi

  # What hack/lib/version.sh stamps into release binaries (/version, kubectl's skew warnings).
  local cv=k8s.io/component-base/version gv=k8s.io/client-go/pkg/version date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w"
  local p
  for p in "$cv" "$gv"; do
    ldflags="$ldflags -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  go_build kube-apiserver "$v" "$dir" k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
}

# Debian bookworm's etcd-server is 3.4.23. It is not used: Kubernetes 1.36 supports etcd >= 3.5
# (its own go.mod pins the etcd 3.6 client), and tests need a server that matches what clusters run.
build_etcd() {
  local v="$ETCD_VERSION"
  cached etcd "$v" && return 0
  check_space
  local dir="$src_root/etcd-$v"
  mkdir -p "$dir"
  cat >"$dir/go.mod.new" <<EOF
// Generated by scripts/kube/tools.sh: builds etcd $v. Do not edit; delete the folder to regenerate.
module redis-gateway.local/etcd-tools

go 1.26.0

require go.etcd.io/etcd/server/v3 $v
EOF
  if ! cmp -s "$dir/go.mod.new" "$dir/go.mod"; then
    mv -f "$dir/go.mod.new" "$dir/go.mod"
    rm -f "$dir/go.sum"
  else
    rm -f "$dir/go.mod.new"
  fi
  cat >"$dir/main.go" <<'EOF'
// Generated by scripts/kube/tools.sh. The same entry point as etcd's own main.go
// (module go.etcd.io/etcd/v3, which is not a published module): it only calls etcdmain.Main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
  go_build etcd "$v" "$dir" . "-s -w"
}

build_helm() {
  local v="$HELM_VERSION"
  local dir="$src_root/helm-$v"
  mkdir -p "$dir"

  # What helm's own Makefile links into release binaries: the version, and the Kubernetes version
  # helm assumes without a cluster (`helm template`/`helm lint` without --kube-version; chart
  # kubeVersion constraints are checked against it). Without the latter helm says v1.20, and a
  # chart with kubeVersion ">=1.23" fails to render. Like the Makefile, it is taken from the
  # k8s.io/client-go version in helm's go.mod: v0.X.Y -> Kubernetes 1.X.
  current="go mod download helm.sh/helm/v3@$v"
  local info gomod client_go
  info=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$v") || die "$current failed: $info"
  gomod=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || die "$current: no go.mod in its answer: $info"
  client_go=$(sed -n 's#^[[:space:]]*k8s\.io/client-go[[:space:]]\{1,\}\(v[0-9][^[:space:]]*\).*#\1#p' "$gomod" | sed -n 1p)
  [[ "$client_go" =~ ^v0\.([0-9]+)\.[0-9]+ ]] || die "no k8s.io/client-go v0.X.Y requirement in $gomod (found '$client_go')"
  local k8s_major=1 k8s_minor="${BASH_REMATCH[1]}"
  current=''
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local p
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags="$ldflags -X $p.k8sVersionMajor=$k8s_major -X $p.k8sVersionMinor=$k8s_minor"
  done

  cached helm "$v" "$ldflags" && return 0
  check_space
  cat >"$dir/go.mod.new" <<EOF
// Generated by scripts/kube/tools.sh: builds helm $v. Do not edit; delete the folder to regenerate.
module redis-gateway.local/helm-tools

go 1.26.0

require helm.sh/helm/v3 $v

tool helm.sh/helm/v3/cmd/helm
EOF
  if ! cmp -s "$dir/go.mod.new" "$dir/go.mod"; then
    mv -f "$dir/go.mod.new" "$dir/go.mod"
    rm -f "$dir/go.sum"
  else
    rm -f "$dir/go.mod.new"
  fi
  go_build helm "$v" "$dir" helm.sh/helm/v3/cmd/helm "$ldflags"
}

started_all=$SECONDS
log "cache: $CACHE; tools: $TOOLS; versions: kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION"
for tool in $TOOLS; do
  case "$tool" in
    kube-apiserver) build_kube_apiserver ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    *) die "unknown tool '$tool' in KUBE_TOOLS (known: kube-apiserver etcd helm)" ;;
  esac
done
log "ready in $((SECONDS - started_all))s:"
for tool in $TOOLS; do
  case "$tool" in
    kube-apiserver) v="$KUBE_VERSION" ;;
    etcd) v="$ETCD_VERSION" ;;
    helm) v="$HELM_VERSION" ;;
  esac
  log "  $bin_root/$tool-$v/$tool"
done
