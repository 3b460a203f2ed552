#!/usr/bin/env bash
# Runs Helm, built once from its Go module (pinned in charts/tools/helm/go.mod) into
# ~/.cache/socketfleet/bin/helm-<version>. Every part of the project calls Helm through this
# script, so the chart tests and the e2e tests use the same build.
#   scripts/helm.sh lint --strict charts/socketfleet-operator
#   scripts/helm.sh --print-path   # build if needed, print the binary's path
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
module_dir="$root/charts/tools/helm"
version="$(awk '$1 == "helm.sh/helm/v4" { print $2 }' "$module_dir/go.mod")"
if [[ -z $version ]]; then
  echo "helm.sh: no helm.sh/helm/v4 requirement in $module_dir/go.mod" >&2
  exit 1
fi
bin_dir="${SOCKETFLEET_BIN_DIR:-$HOME/.cache/socketfleet/bin}"
binary="$bin_dir/helm-$version"

if [[ ! -x $binary ]]; then
  mkdir -p "$bin_dir"
  echo "helm.sh: building Helm $version into $binary (once)" >&2
  # A temporary name keeps a half-written binary from being used if the build is interrupted.
  (
    cd "$module_dir"
    GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
      -o "$binary.tmp.$$" helm.sh/helm/v4/cmd/helm
  )
  mv "$binary.tmp.$$" "$binary"
fi

if [[ ${1:-} == --print-path ]]; then
  echo "$binary"
  exit 0
fi
exec "$binary" "$@"
