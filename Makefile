# runfeed — developer entry points.
#
#   make run    install deps, build (release), start the local stack with demo data, the demo
#               page (/demo/) and the demo simulator (RUNFEED_DEMO_SIMULATOR=0: without it)
#   make stop   stop the local stack
#   make test   unit tests + integration tests against a separate, throwaway stack
#
# The stack is managed by scripts/stack.sh; see the README for the variables.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ifneq ($(wildcard /opt/swift/usr/bin/swift),)
export PATH := /opt/swift/usr/bin:$(PATH)
endif

SWIFT ?= swift

# The integration tests' throwaway stack (state dir, ports, binary, pytest arguments) is configured in
# scripts/test-integration.sh alone: its TEST_* variables (TEST_STATE, TEST_PG_PORT, TEST_PG_REPLICA_PORT,
# TEST_REDIS_PORT, TEST_HTTPS_PORT, TEST_HTTP_PORT, TEST_WEBAPP_PORT, TEST_CH_HTTP_PORT, TEST_CH_TCP_PORT,
# TEST_METRICS_BASE, TEST_WORKERS, TEST_BIN, …) and PYTEST_ARGS reach it through the environment, so
# `make test TEST_PG_PORT=25999 PYTEST_ARGS="-q -x"` works as it always did (make exports variables given on
# its command line).

.PHONY: bench help deps build build-info run stop status logs test test-model test-redis-modes test-sanitizers clean fuzz

help:
	@echo "make run     deps + release build + local stack with demo data, demo page and simulator (prints examples)"
	@echo "make stop    stop the local stack"
	@echo "make status  show the local stack's processes"
	@echo "make test    unit tests, then integration tests on a throwaway stack"
	@echo "make test-sanitizers  integration tests on ASan and TSan builds (.build-address, .build-thread)"
	@echo "make test-redis-modes  the Redis-heavy integration tests with the stack's Redis over TLS and as a cluster"
	@echo "make test-model  the convergence model, MODEL_SEEDS (5000) seeds per topology (make test runs 200)"
	@echo "make fuzz    libFuzzer targets (fuzz/targets), FUZZ_SECONDS (120) each; make test runs them 10 s each"
	@echo "make clean   stop stacks, delete .runfeed/ and .build/"

deps:
	bash scripts/deps.sh

# scripts/build-info.sh writes the source revision the build bakes in (runfeed --version,
# runfeed_build_info); a plain `swift build` keeps the last one written ("unknown" in a fresh clone).
build-info:
	@bash scripts/build-info.sh

build: build-info
	$(SWIFT) build -c release

run: deps build
	bash scripts/stack.sh start --seed
	@bash scripts/stack.sh examples

stop:
	bash scripts/stack.sh stop

status:
	@bash scripts/stack.sh status

logs:
	@bash scripts/stack.sh logs

# Unit tests first; then a fresh stack (debug binary, short holds, ClickHouse unless RUNFEED_CLICKHOUSE=0) for
# tests/integration (scripts/test-integration.sh run). The test stack is always stopped afterwards; its logs
# stay in its state dir's log/ and are printed when a test fails.
test: deps build-info
	$(SWIFT) build
	$(SWIFT) test
	bash fuzz/run.sh 10
	bash scripts/test-integration.sh run

# The Redis topology matrix (scripts/test-redis-modes.sh): REDIS_MODES (tls cluster), each on its own stack.
test-redis-modes: deps build-info
	$(SWIFT) build
	bash scripts/test-redis-modes.sh

# The convergence model (Tests/RunfeedCoreTests/ConvergenceModelTests.swift) over more seeds than make test
# runs: MODEL_SEEDS per topology (7 topologies; about 1 s per 100 seeds in a debug build).
MODEL_SEEDS ?= 5000
test-model:
	RUNFEED_MODEL_SEEDS=$(MODEL_SEEDS) $(SWIFT) test --filter ConvergenceModelTests

# AddressSanitizer and ThreadSanitizer builds (.build-address, .build-thread), each run through
# tests/integration on its own throwaway stack (.runfeed/san-<s>; ports PG 2547x, Redis 2647x,
# HTTPS 847x, HTTP 848x, webapp stand-in 2304x, CH 1817x/1917x, metrics base 19800/19900); fails on a failing test or on
# any $STATE/log/{asan,tsan}.* report.
# SANITIZERS picks a subset; SAN_PYTEST_ARGS (-q) is passed to pytest. See docs/RELIABILITY.md.
SANITIZERS ?= address thread
test-sanitizers: deps build-info
	bash scripts/test-sanitizers.sh $(SANITIZERS)

clean:
	-bash scripts/test-integration.sh clean
	-bash scripts/stack.sh clean
	rm -rf .build .build-fuzz

# libFuzzer targets for RunfeedCore's parsers (fuzz/README.md): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 120
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

# Benchmarks (docs/BENCHMARKS.md): a dedicated stack on its own ports, every scenario bounded
# and on loopback, tables rewritten in docs/BENCHMARKS.md. BENCH_ARGS go to bench/run.py
# (e.g. BENCH_ARGS="--quick --no-doc" for a smoke run).
BENCH_ARGS ?=
bench:
	bash scripts/deps.sh --bench
	bash scripts/build-info.sh
	$(SWIFT) build -c release
	BENCH_ARGS="$(BENCH_ARGS)" bash scripts/bench.sh $(BENCH_ARGS)
