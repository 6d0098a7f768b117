# Two entry points a new user needs: `make demo` and `make test`.
# Both create .venv with the project installed (editable, with dev extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck clean

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

# The NAT lab (needs root, iproute2, iptables, nftables, nginx): real kernel NAT
# in network namespaces; prints scenario | expected | got | time to verdict.
.PHONY: lab
lab: $(STAMP)
	$(BIN)/python -m tests.lab.run_matrix
