# Two entry points a new user needs: `make demo` and `make test`.
# Both create .venv with the project installed (editable, with dev extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# multiaddr depends on trio-typing, whose old trio-stubs shadow trio's own
	# inline types for mypy; multiaddr never imports it, so the dev env drops it.
	$(BIN)/pip uninstall --quiet --yes trio-typing
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/autonat demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis

# The NAT lab (needs root, iproute2, iptables, nftables, nginx, coturn): real kernel
# NAT in network namespaces; prints scenario | expected and got TCP and UDP profile |
# time to verdict | the UDP oracle's answers (coturn).
.PHONY: lab
lab: $(STAMP)
	$(BIN)/python -m tests.lab.run_matrix

# Benchmarks (benchmarks/run.py): installs wrk and nginx (Debian packages, as root)
# and matplotlib (the bench extra) when missing, then prints one table of ratios
# against baselines measured in the same run; results and plots go to
# benchmarks/results/. py-libp2p is installed by the runner into a virtualenv
# under its temporary directory, never into .venv. BENCH_ARGS is passed on, e.g.
# make bench BENCH_ARGS="--quick" or BENCH_ARGS="--only setup --sizes 1000,2000".
BENCH_ARGS ?=

bench: $(STAMP)
	@need=""; \
	command -v wrk >/dev/null 2>&1 || need="$$need wrk"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$$need nginx-light"; \
	if [ -n "$$need" ]; then \
		if [ "$$(id -u)" -ne 0 ]; then echo "missing$$need and not root: cannot install them" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need; \
	fi
	$(BIN)/python -c "import matplotlib" 2>/dev/null || { \
		$(BIN)/pip install --quiet -e '.[dev,bench]' && \
		$(BIN)/pip uninstall --quiet --yes trio-typing; }
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
