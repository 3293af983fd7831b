# mrenhance: `make demo` and `make test` create .venv if missing, then run.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The tuned glibc allocator is worth ~3x on small CPUs; the trim threshold must exceed a
# forward pass's peak, which mallopt alone cannot set (docs/performance.md).
export MALLOC_MMAP_THRESHOLD_ ?= 2147483647
export MALLOC_TRIM_THRESHOLD_ ?= 100000000000

.PHONY: venv demo test test-fast bench lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[samples,dev,bids]"
	$(PY) -m pip install -q -c constraints.txt --no-deps "asldro==2.2.0"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mrenhance demo --output demo_output --overwrite

# the full suite, slow tests included
test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -n 2 -q tests

# everything but the tests marked slow (pyproject.toml registers the marker)
test-fast: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -n 2 -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) demo_output .pytest_cache
