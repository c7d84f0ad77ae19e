# Two commands matter on a fresh machine: `make demo` and `make test`.
# Rust build outputs stay outside the clone so a second run is fast and the tree stays clean.
# One target dir per checkout: cargo's freshness checks follow the absolute source paths of the
# checkout that built a unit, so a target dir shared by two clones can run one clone's binaries
# for the other (and the e2e harness finds its repository from its build-time path).
CHECKOUT_ID := $(shell printf '%s' "$(CURDIR)" | cksum | cut -d' ' -f1)
export CARGO_TARGET_DIR ?= $(HOME)/.cache/pgop/target/$(CHECKOUT_ID)
export PGOP_CACHE ?= $(HOME)/.cache/pgop
export KUBECONFIG_LOCAL := $(CURDIR)/.local/kubeconfig

CARGO ?= cargo

.PHONY: all build target-dir tools world up down demo test unit e2e crds crds-check chart chart-check chart-lint \
	fmt lint fmt-check \
	clippy shellcheck check-pure bench bench-capacity clean-local bench-webhook bench-controller \
	bench-world bench-database bench-rollout images

all: build

## Claims this checkout's target dir and removes those of clones that are gone (the disk is shared).
target-dir:
	scripts/prune-targets.sh "$(CURDIR)"

build: target-dir
	$(CARGO) build --workspace --bins

## The controller and webhook images, where a container engine runs (scripts/images.sh).
images:
	scripts/images.sh

## Go-built control-plane binaries (kube-apiserver, etcd, kwok, helm, ...) cached under $(PGOP_CACHE).
tools:
	scripts/build-tools.sh

## The test world's programs (Patroni venv, PostgreSQL 14-18) under $(PGOP_CACHE)/world; needs root.
## `scripts/world-install.sh --verify` also starts every major once as user postgres.
world:
	scripts/world-install.sh

up: tools
	scripts/up.sh

down:
	scripts/down.sh

demo: tools build
	scripts/demo.sh

## Regenerates crds/*.yaml from the Rust types (a unit test fails when they drift).
crds: target-dir
	$(CARGO) run -q -p controller --bin crdgen -- crds

## Fails when crds/ differs from what the types generate (changed or new files).
crds-check: crds
	@git diff --exit-code crds/ || { echo "crds-check: crds/ differs from the Rust types; run make crds and commit crds/" >&2; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard crds/); \
	if [ -n "$$untracked" ]; then echo "crds-check: new CRD files not committed: $$untracked" >&2; exit 1; fi

## Regenerates the chart's generated files: its crds/ (the same YAML as crds/), the controller's
## ClusterRole rules (templates/_operator-rules.tpl, from the children table), values.schema.json
## (from values.yaml and the operator's configuration types) and the values listing in its
## README.md. Unit tests in controller/src/bin/chartgen fail when they drift.
chart: target-dir
	$(CARGO) run -q -p controller --bin chartgen -- charts/postgres-operator

## Fails when the chart's generated files differ from what the Rust sources generate.
chart-check: chart
	@git diff --exit-code charts/ || { echo "chart-check: charts/ differs from the generated files; run make chart and commit" >&2; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard charts/); \
	if [ -n "$$untracked" ]; then echo "chart-check: new chart files not committed: $$untracked" >&2; exit 1; fi

## helm lint of the chart with its default values and a few variants (the e2e test renders more).
chart-lint: tools
	scripts/chart-lint.sh

unit: target-dir
	$(CARGO) test --workspace --exclude e2e

e2e: tools build
	scripts/up.sh
	$(CARGO) test -p e2e --no-fail-fast -- --test-threads=2

## Everything CI checks, cheapest first so a failure shows fast: the static checks (lint), the
## CRD and chart drift checks, helm lint, the unit tests, then the end-to-end tests.
test: lint crds-check chart-check chart-lint unit e2e

fmt:
	$(CARGO) fmt --all

## The static checks (no tests run): purity of common, formatting, shell scripts, clippy.
lint: check-pure fmt-check shellcheck clippy

## common's normal dependencies hold no async runtime or I/O stack (tokio, hyper, mimalloc, kube-client, kube-runtime).
check-pure:
	CARGO="$(CARGO)" scripts/check-pure.sh

fmt-check:
	$(CARGO) fmt --all -- --check

## shellcheck on scripts/*.sh (installed from Debian's packages when missing).
shellcheck:
	scripts/shellcheck.sh

clippy: target-dir
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench-capacity: tools target-dir
	scripts/up.sh
	$(CARGO) run --release -p bench --bin bench-capacity

bench: bench-capacity bench-webhook bench-controller

clean-local: down
	rm -rf .local

## Admission webhook throughput, latency and memory (see BENCHMARKS.md).
bench-webhook: target-dir
	$(CARGO) build --release -p webhook -p bench --bins
	$(CARGO_TARGET_DIR)/release/bench-webhook

## Controller convergence, API requests, latency and memory at 100 and 1000 clusters (BENCHMARKS.md).
bench-controller: tools target-dir
	scripts/up.sh
	$(CARGO) build --release -p controller -p bench --bins
	$(CARGO_TARGET_DIR)/release/bench-controller

## Real Patroni + PostgreSQL in the test world (BENCHMARKS.md): apply -> writable, replicas
## streaming, failover write gaps and lost commits, idle memory and CPU per member, clusters at
## once. Needs root (the pod runner) and `make world`; options: BENCH_WORLD_ARGS="--only apply".
bench-world: tools target-dir
	scripts/up.sh
	$(CARGO) build --release -p controller -p bench --bins
	$(CARGO_TARGET_DIR)/release/bench-world $(BENCH_WORLD_ARGS)

## Rolling updates of a 3-member cluster under a 10 ms writer (BENCHMARKS.md): write gap, commits
## lost, switchovers, total time; and a configuration-only change (restarts). Needs `make world`.
bench-rollout: tools target-dir
	scripts/up.sh
	$(CARGO) build --release -p controller -p bench --bins
	$(CARGO_TARGET_DIR)/release/bench-world --only rollout $(BENCH_ROLLOUT_ARGS)

## The complete manifest's roles and databases on N real clusters (BENCHMARKS.md): apply -> every
## role logs in, statements and writes per no-op sync, peak connections the controller holds.
## Needs root (the pod runner) and `make world`; options: BENCH_DATABASE_ARGS="--clusters 5".
bench-database: tools target-dir
	scripts/up.sh
	$(CARGO) build --release -p controller -p bench --bins
	$(CARGO_TARGET_DIR)/release/bench-database $(BENCH_DATABASE_ARGS)
