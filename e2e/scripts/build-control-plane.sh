#!/usr/bin/env bash
# Builds the local cluster's Go binaries from the pinned modules in e2e/go and prints the folder that
# holds them. kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from
# e2e/go/kubernetes; etcd comes from e2e/go/etcd.
#
# Each module's binaries are cached in ~/.cache/socketfleet/bin/<module>-<hash>, where the hash covers
# that module's go.mod and go.sum and the recipe number below, so CI on the same machine and later runs reuse them,
# while a fresh machine (or a changed pin) builds them again. Go's own build and module caches
# (GOCACHE, GOMODCACHE) are the defaults.
#
# Usage: build-control-plane.sh [kubernetes|etcd|all]   (default all; prints one folder per module)
set -euo pipefail

e2e_dir=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${SOCKETFLEET_BIN_CACHE:-$HOME/.cache/socketfleet/bin}
# A dependency that asks for a newer Go must fail here, not fetch a toolchain.
export GOTOOLCHAIN=local CGO_ENABLED=0
# Go's own installer puts it in /usr/local/go, which a non-login shell may not have on its PATH.
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "build-control-plane: go not found; install Go 1.26" >&2; exit 1; }
# Upstream builds run `go` at normal priority on big machines; here other builds share two cores.
nice_cmd=(nice -n "${SOCKETFLEET_BUILD_NICE:-10}")

# Bump when the build commands or flags below change, so cached binaries built the old way are not reused.
recipe=1

# Prints the cache folder for one module: its name and a hash of its pins and of the recipe number.
cache_dir_for() {
  local module=$1 hash
  hash=$( (cat "$e2e_dir/go/$module/go.mod" "$e2e_dir/go/$module/go.sum"; echo "recipe $recipe") |
    sha256sum | cut -c1-16)
  echo "$cache_root/$module-$hash"
}

# Builds the Kubernetes commands with the version stamp hack/lib/version.sh would write, so /version,
# `--version` and Helm's kubeVersion checks see v1.37.x instead of v0.0.0-master.
build_kubernetes() {
  local out=$1 src=$e2e_dir/go/kubernetes version major minor build_date ldflags=() pkg
  version=$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  major=${version#v}; major=${major%%.*}
  minor=${version#v"$major".}; minor=${minor%%.*}
  # The module's publication time stands in for the build date, so the stamp is reproducible.
  build_date=$(cd "$src" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=("-X $pkg.gitVersion=$version" "-X $pkg.gitMajor=$major" "-X $pkg.gitMinor=$minor"
      "-X $pkg.gitTreeState=archive" "-X $pkg.buildDate=$build_date")
  done
  (cd "$src" && "${nice_cmd[@]}" go build -trimpath -tags selinux,notest \
    -ldflags "-s -w ${ldflags[*]}" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

# The etcd version is a constant in its source; only the Git SHA would be stamped, and a module zip has none.
build_etcd() {
  local out=$1
  (cd "$e2e_dir/go/etcd" && "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w" -o "$out/etcd" \
    go.etcd.io/etcd/server/v3)
}

# Builds one module into its cache folder unless a finished build is already there. A lock lets two
# callers (make up and a test, or two helpers) share one build instead of racing.
ensure_module() {
  local module=$1 dir
  dir=$(cache_dir_for "$module")
  mkdir -p "$cache_root"
  exec {lock}>"$dir.lock"
  flock "$lock"
  if [[ ! -f $dir/.complete ]]; then
    echo "build-control-plane: building $module into $dir (the first build takes a while)" >&2
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    local started=$SECONDS
    "build_$module" "$dir.partial"
    touch "$dir.partial/.complete"
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
    echo "build-control-plane: built $module in $((SECONDS - started)) s" >&2
  fi
  exec {lock}>&-
  echo "$dir"
}

case ${1:-all} in
  kubernetes | etcd) ensure_module "$1" ;;
  all)
    ensure_module etcd
    ensure_module kubernetes
    ;;
  *)
    echo "usage: $0 [kubernetes|etcd|all]" >&2
    exit 2
    ;;
esac
