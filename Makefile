# The two commands of the README: `make run` and `make test`. Both install into .venv first
# (once; again when pyproject.toml changes). `make test-fast` is the edit loop: the suite
# without the end-to-end tests marked slow (CI runs all of them: `make test`).
PYTHON ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@# `segen team up` runs Debian's PostgreSQL server; contrib has pg_trgm, which Prefect needs.
	@# Where it cannot be installed (no apt-get, not root) only the team commands and tests fail.
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib; } || \
	  echo "warning: PostgreSQL (initdb) not installed: segen team will not start" >&2
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
