# socketfleet: the two commands a person needs are `make up` and `make test`.
# Each sub-target below is owned by one part of the project; `make test` runs them all, as CI does.

SHELL := /bin/bash
# Build outputs live outside the clone so a fresh clone reuses them; nothing requires the cache.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/socketfleet/target
CARGO ?= cargo

.PHONY: up down test deps build lint test-unit test-js test-chart test-e2e bench crds

## up: bring the main job up for a person to try: a local Kubernetes cluster built from Go modules
## (etcd, kube-apiserver, controller manager, scheduler), a Redis Cluster, the node agent that runs
## pods as processes, the operator installed with Helm and the minimal example applied. It prints
## the kubeconfig (e2e/.local/kubeconfig) and the next commands. Needs root (network namespaces).
up: deps
	bash e2e/scripts/up.sh

## down: stop everything `make up` started and remove its bridge, network namespaces and veths.
down:
	bash e2e/scripts/cluster.sh down

## test: everything CI runs.
test: deps lint test-unit test-js test-chart test-e2e

## deps: install the system packages and npm modules the tests need (idempotent).
deps:
	bash scripts/deps.sh

## build: release binaries of the gateway and the operator.
build:
	$(CARGO) build --release -p socketfleet-gateway -p socketfleet-operator

## lint: formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test-unit: unit and integration tests of every crate except the slow e2e crate.
test-unit:
	$(CARGO) test --workspace --exclude socketfleet-e2e

## test-js: drive a real gateway with the npm socket.io-client (gateway/tests/js).
test-js:
	$(CARGO) build -p socketfleet-gateway
	cd gateway/tests/js && node --test --test-concurrency=1

## test-chart: fail when the committed CRD YAML drifts from the Rust types; lint and render the chart.
test-chart:
	bash scripts/test-chart.sh

## crds: regenerate crds/ and the chart's CRD template from operator/src/crd.rs.
crds:
	$(CARGO) run -q -p socketfleet-operator -- crd > crds/realtimenamespaces.socketfleet.io.yaml
	$(CARGO) run -q -p socketfleet-operator -- crd --chart > charts/socketfleet-operator/templates/crd.yaml

## test-e2e: start a fresh local cluster, run the e2e crate's tests against it, tear it down.
test-e2e:
	bash e2e/scripts/test-e2e.sh

## bench: measure the gateway beside Node socket.io on this machine; prints the table, writes bench/REPORT.md.
## BENCH_ARGS passes options to `socketfleet-bench run`, e.g. BENCH_ARGS="--runs 1 --only idle".
bench: deps
	$(CARGO) build --release -p socketfleet-gateway -p socketfleet-bench
	cd bench/node && if [[ ! -d node_modules ]]; then npm ci --no-audit --no-fund --loglevel=error; fi
	$(CARGO_TARGET_DIR)/release/socketfleet-bench run $(BENCH_ARGS)

.PHONY: soak
## soak: run the heartbeat, join-after-disconnect and chatty-client field cases at full scale
## against a release gateway (about 20 minutes; not part of `make test`). Figures: bench/SOAK.md.
soak: deps
	$(CARGO) build --release -p socketfleet-gateway
	mkdir -p /tmp/soak && cp --remove-destination $(CARGO_TARGET_DIR)/release/socketfleet-gateway /tmp/soak/socketfleet-gateway
	cd gateway/tests/js && SOCKETFLEET_SOAK=1 SOCKETFLEET_GATEWAY_BIN=/tmp/soak/socketfleet-gateway \
		node --test --test-concurrency=1 heartbeat.test.js join_after_disconnect.test.js chatty_and_vanishing.test.js
