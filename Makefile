# The two commands of the README: `make run` and `make test`. Both install into .venv first
# (once; again when pyproject.toml changes). `make test-fast` is the edit loop: the suite
# without the end-to-end tests marked slow (CI runs all of them: `make test`).
PYTHON ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade uv
	$(VENV)/bin/uv pip install --compile-bytecode --python $(VENV)/bin/python -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/segen run

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf .segen
