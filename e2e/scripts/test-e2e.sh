#!/usr/bin/env bash
# `make test-e2e`: starts a fresh local cluster, runs the e2e crate's tests against it, and always
# tears the cluster down afterwards. It replaces a cluster that `make up` left running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

cleanup() { bash "$e2e_dir/scripts/cluster.sh" down || true; }
trap cleanup EXIT

started=$SECONDS
bash "$e2e_dir/scripts/cluster.sh" up
log "bring-up took $((SECONDS - started)) s"
(cd "$repo_dir" && cargo test -p socketfleet-e2e -- --nocapture --test-threads=1)
