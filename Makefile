# Two commands on a fresh machine: `make demo` and `make test`.
# The first interpreter that actually runs and is >= 3.11 (pyenv shims may exist for
# versions that are not active).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
SECONDS ?=

.PHONY: demo test lint bench clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "hashquarry needs Python >= 3.11 (python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: venv
	$(BIN)/hashquarry demo $(if $(SECONDS),--seconds $(SECONDS),)

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

test: venv lint
	$(BIN)/pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
