#!/usr/bin/env bash
# Chart checks run by `make test-chart`:
#  1. the committed CRD YAML (crds/ and the chart's template) matches the Rust types;
#  2. `helm lint --strict` and `helm template` pass for the default values and the toggles;
#  3. values.schema.json rejects bad values.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/socketfleet-operator
cargo_target="${CARGO_TARGET_DIR:-$HOME/.cache/socketfleet/target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build -q -p socketfleet-operator
operator="$cargo_target/debug/socketfleet-operator"

drift=0
"$operator" crd >"$work/crd.yaml"
"$operator" crd --chart >"$work/chart-crd.yaml"
for pair in "crds/realtimenamespaces.socketfleet.io.yaml:$work/crd.yaml" "$chart/templates/crd.yaml:$work/chart-crd.yaml"; do
  committed="${pair%%:*}"
  generated="${pair#*:}"
  if ! diff -u "$committed" "$generated" >"$work/diff"; then
    echo "test-chart: $committed differs from the CRD generated from operator/src/crd.rs:" >&2
    head -40 "$work/diff" >&2
    drift=1
  fi
done
if ((drift)); then
  echo "test-chart: run 'make crds' and commit the result" >&2
  exit 1
fi
echo "test-chart: CRD YAML matches the Rust types"

helm() { scripts/helm.sh "$@"; }

value_sets=(
  ""
  "--set crds.install=false"
  "--set serviceMonitor.enabled=true"
  "--set watchNamespace=apps --set serviceMonitor.enabled=true"
  "--set leaderElection.enabled=false --set rbac.create=false --set serviceAccount.create=false"
  "--set replicaCount=2 --set logFormat=json"
)
for values in "${value_sets[@]}"; do
  # shellcheck disable=SC2086 # each entry is a list of flags
  helm lint --strict "$chart" $values >"$work/lint" 2>&1 || { cat "$work/lint" >&2; echo "test-chart: lint failed with: $values" >&2; exit 1; }
  # shellcheck disable=SC2086
  helm template socketfleet "$chart" --namespace socketfleet-system $values >"$work/rendered.yaml" 2>"$work/template-errors" \
    || { cat "$work/template-errors" >&2; echo "test-chart: template failed with: $values" >&2; exit 1; }
  echo "test-chart: lint and template pass with: ${values:-default values}"
done

# The default render must contain the CRD with the keep policy, and no CRD without crds.install.
helm template socketfleet "$chart" >"$work/default.yaml"
grep -q "kind: CustomResourceDefinition" "$work/default.yaml" || { echo "test-chart: default render has no CRD" >&2; exit 1; }
grep -q "helm.sh/resource-policy: keep" "$work/default.yaml" || { echo "test-chart: CRD lacks the keep policy" >&2; exit 1; }
helm template socketfleet "$chart" --set crds.install=false >"$work/no-crd.yaml"
if grep -q "kind: CustomResourceDefinition" "$work/no-crd.yaml"; then
  echo "test-chart: crds.install=false still renders the CRD" >&2
  exit 1
fi

bad_values=(
  "--set replicaCount=-1"
  "--set logFormat=yaml"
  "--set image.pullPolicy=Sometimes"
  "--set unknownKey=1"
  "--set serviceMonitor.interval=often"
)
for values in "${bad_values[@]}"; do
  # shellcheck disable=SC2086
  if helm template socketfleet "$chart" $values >/dev/null 2>&1; then
    echo "test-chart: values.schema.json accepted bad values: $values" >&2
    exit 1
  fi
done
echo "test-chart: values.schema.json rejects ${#bad_values[@]} bad value sets"
