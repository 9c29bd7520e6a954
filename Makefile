# TTQuant: every entry point works as the first command on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ttq-installed
OPS    := $(VENV)/.ttq-ops
BENCH_OUT := build/bench
PYTEST_ARGS ?=

.PHONY: all build debug annotate demo test test-fast bench bench-quick wheelhouse e2e lint clean distclean

all: build

# The venv, build requirements and an editable install (which builds the extensions once). The
# runtime dependencies come from the lock first, so tests run against what hosts install.
$(STAMP): pyproject.toml setup.py requirements/runtime.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements/runtime.lock
	$(PY) -m pip install -q "cython>=3.1" "setuptools>=77" wheel
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $@

# The controller's tools: Ansible, ansible-lint, ruff, cython-lint (pyproject's ops extra).
$(OPS): $(STAMP)
	$(PY) -m pip install -q --no-build-isolation -e '.[dev,ops]'
	touch $@

# Incremental rebuild of changed .pyx/.pxd/.h.
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace -j 2

debug: $(STAMP)
	TTQ_DEBUG=1 $(PY) setup.py -q build_ext --inplace -j 2

annotate: $(STAMP)
	TTQ_CYTHON_ANNOTATE=1 TTQ_CYTHON_FORCE=1 $(PY) setup.py -q build_ext --inplace -j 2
	@echo "annotated HTML: build/cython/**/*.html"

# make demo VENUE_ADAPTER=binance: the gateway's Binance adapter instead of the sim one
demo: build
	$(VENV)/bin/ttquant demo $(if $(VENUE_ADAPTER),--adapter $(VENUE_ADAPTER))

# Debian's Chromium: the backtest report's test opens the report in it (playwright drives it;
# playwright's own browser download is not reachable from our machines).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -q && apt-get install -y -q --no-install-recommends chromium

# PostgreSQL's server binaries: the database tests start a server of their own with them.
PG_SERVER := $(or $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres)),/usr/lib/postgresql/15/bin/postgres)
$(PG_SERVER):
	apt-get update -q && apt-get install -y -q --no-install-recommends postgresql

# Debian's Prometheus for its promtool: tests/ansible checks and unit-tests the alert rules with it.
PROMTOOL := /usr/bin/promtool
$(PROMTOOL):
	apt-get update -q && apt-get install -y -q --no-install-recommends prometheus

test: build $(CHROMIUM) $(PG_SERVER) $(PROMTOOL)
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything but the multi-million-record stress runs.
test-fast: build $(CHROMIUM) $(PG_SERVER) $(PROMTOOL)
	$(PY) -m pytest -m "not stress" $(PYTEST_ARGS)

bench: build $(PG_SERVER)
	mkdir -p $(BENCH_OUT)
	$(PY) bench/build_kernels.py
	$(PY) bench/backtest_peers.py --ensure-venv
	$(PY) -m pytest bench -p no:cacheprovider --benchmark-json=$(BENCH_OUT)/results.json $(PYTEST_ARGS)
	$(PY) bench/report.py $(BENCH_OUT)/results.json $(BENCH_OUT)/report.md

bench-quick: build $(PG_SERVER)
	mkdir -p $(BENCH_OUT)
	$(PY) bench/build_kernels.py
	$(PY) bench/backtest_peers.py --ensure-venv
	TTQ_BENCH_QUICK=1 $(PY) -m pytest bench -m quick -p no:cacheprovider --benchmark-json=$(BENCH_OUT)/results.json $(PYTEST_ARGS)
	$(PY) bench/report.py $(BENCH_OUT)/results.json $(BENCH_OUT)/report.md

# What the hosts install (ansible/, role ttquant): the locked dependencies as wheels (sdnotify is
# published only as an sdist, so its wheel is built here from the hash-checked sdist), the ttquant
# wheel built from this tree, and wheels.lock: the hashes of exactly these files, for --require-hashes.
wheelhouse: $(STAMP)
	rm -rf build/wheelhouse
	$(PY) -m pip wheel -q --require-hashes --only-binary=:all: --no-binary=sdnotify \
		-r requirements/runtime.lock -w build/wheelhouse
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w build/wheelhouse .
	$(PY) requirements/wheelhouse_lock.py build/wheelhouse > build/wheelhouse/wheels.lock

# The deployment end to end (tests/e2e/e2e_run.py): a Debian bookworm container booted with
# systemd-nspawn, Ansible deploying the wheelhouse and PostgreSQL into it, the stack's restarts,
# watchdog and stop, the shipper's rows and /metrics checked inside. Needs root and Debian's
# packages; TTQ_SKIP_E2E=1 skips it.
e2e: build wheelhouse
	$(PY) tests/e2e/e2e_run.py

# Clean today, and run by .ci/run: ruff, cython-lint, ansible-lint (production profile), and
# systemd-analyze verify and security on every unit (tests/systemd, in a root made for it).
lint: $(OPS)
	$(VENV)/bin/ruff check core strategies sidecars bench tests
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/cython-lint --max-line-length 120 --ignore=E701 \
		$$(git ls-files '*.pyx' '*.pxd')
	cd ansible && PATH="$(abspath $(VENV))/bin:$$PATH" ansible-lint -q
	$(PY) -m pytest -q -p no:randomly tests/systemd/test_units.py -k "verify or security"

clean:
	rm -rf build
	find core strategies sidecars bench -name '*.so' -delete
	find core strategies sidecars bench -name '*.c' -path '*/build/*' -delete

distclean: clean
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis .benchmarks
