# Two commands matter on a fresh machine: `make demo` and `make test`.
# Rust build outputs stay outside the clone so a second run is fast and the tree stays clean.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/pgop/target
export PGOP_CACHE ?= $(HOME)/.cache/pgop
export KUBECONFIG_LOCAL := $(CURDIR)/.local/kubeconfig

CARGO ?= cargo

.PHONY: all build tools up down demo test unit e2e crds crds-check fmt lint bench bench-capacity clean-local bench-webhook bench-controller

all: build

build:
	$(CARGO) build --workspace --bins

## Go-built control-plane binaries (kube-apiserver, etcd, kwok, helm, ...) cached under $(PGOP_CACHE).
tools:
	scripts/build-tools.sh

up: tools
	scripts/up.sh

down:
	scripts/down.sh

demo: tools build
	scripts/demo.sh

## Regenerates crds/*.yaml from the Rust types (a unit test fails when they drift).
crds:
	$(CARGO) run -q -p controller --bin crdgen -- crds

## Fails when crds/ differs from what the types generate.
crds-check: crds
	git diff --exit-code crds/

unit:
	$(CARGO) test --workspace --exclude e2e

e2e: tools build
	scripts/up.sh
	$(CARGO) test -p e2e --no-fail-fast -- --test-threads=2

test: unit e2e

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench-capacity: tools
	scripts/up.sh
	$(CARGO) run --release -p e2e --bin bench-capacity

bench: bench-capacity bench-webhook bench-controller

clean-local: down
	rm -rf .local

## Admission webhook throughput, latency and memory (see BENCHMARKS.md).
bench-webhook:
	$(CARGO) build --release -p webhook --bins
	$(CARGO_TARGET_DIR)/release/bench-webhook

## Controller convergence, API requests, latency and memory at 100 and 1000 clusters (BENCHMARKS.md).
bench-controller: tools
	scripts/up.sh
	$(CARGO) build --release -p controller --bins
	$(CARGO_TARGET_DIR)/release/bench-controller
