# etal: `make run` serves the API, `make test` runs every test. Both provision a private
# PostgreSQL cluster in .pg/ when DATABASE_URL is not set (scripts/pg.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
DB = DATABASE_URL="$${DATABASE_URL:-$$(scripts/pg.sh ensure)}"

.PHONY: help run test bench fmt lint pg pg-stop schema

help:
	@echo "make run      serve the GraphQL API, GraphiQL and the back office on http://127.0.0.1:8080/"
	@echo "make test     run every test of the workspace against a real PostgreSQL"
	@echo "make bench    run the benchmarks and rewrite docs/benchmarks.md"
	@echo "make fmt | lint | pg | pg-stop"

pg:
	@scripts/pg.sh ensure

pg-stop:
	@scripts/pg.sh stop

# Without ETAL_JWT_SECRET, a development key is made once in .dev-secret (git-ignored), so the
# demo tokens printed here work at once.
run:
	@export $(DB) && \
	if [ -z "$${ETAL_JWT_SECRET:-}" ]; then \
		[ -s .dev-secret ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .dev-secret; \
		export ETAL_JWT_SECRET="$$(cat .dev-secret)"; \
	fi && \
	scripts/assets.sh && $(CARGO) build --release --bin etal && ./target/release/etal migrate && \
	for r in producer market_admin customer auditor platform_admin; do echo "demo token $$r: $$(./target/release/etal token --role $$r)"; done && \
	export ETAL_MAIL_DIR="$${ETAL_MAIL_DIR:-$(CURDIR)/var/mail}" && exec ./target/release/etal serve

# Databases left by earlier runs (one per test) are dropped first.
test:
	@scripts/tools.sh && export $(DB) && scripts/pg.sh sweep "$$DATABASE_URL" && \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# BENCH_ARGS: e.g. `make bench BENCH_ARGS="--scale 0.1 --only replay"`.
bench:
	@scripts/assets.sh && export $(DB) && \
	$(CARGO) build --release -p etal-tests --bin etal-bench -p etal-api --bin etal && \
	target_dir="$${CARGO_TARGET_DIR:-target}" && \
	ETAL_BIN="$$target_dir/release/etal" "$$target_dir/release/etal-bench" --output docs/benchmarks.md $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
