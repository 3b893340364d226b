# snnc: `make demo` and `make test` set up .venv (Python 3.10) on first use.
SHELL := /bin/bash
VENV  := .venv
VPY   := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Python 3.10 is required by lava-nc 0.10.0 / lava-dl 0.6.0. Prefer pyenv's 3.10.13, then python3.10 on PATH.
PYTHON310 ?= $(shell \
	if command -v pyenv >/dev/null 2>&1 && [ -x "$$(pyenv root)/versions/3.10.13/bin/python" ]; then \
		echo "$$(pyenv root)/versions/3.10.13/bin/python"; \
	elif command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys' >/dev/null 2>&1; then \
		command -v python3.10; \
	fi)

.PHONY: demo test test-fast fuzz lint format bench clean venv

venv: $(STAMP)

$(VPY):
	@if [ -z "$(PYTHON310)" ]; then \
		echo "error: Python 3.10 not found. Install it (e.g. 'pyenv install 3.10.13' or your OS package python3.10 with venv) and rerun." >&2; \
		exit 1; \
	fi
	$(PYTHON310) -m venv $(VENV)

$(STAMP): $(VPY) pyproject.toml
	$(VPY) -m pip install --upgrade "pip<25" >/dev/null
	$(VPY) -m pip install -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m snnc.demo

test: $(STAMP)
	$(VPY) -m pytest -x -q --timeout=1200 tests

test-fast: $(STAMP)
	$(VPY) -m pytest -q -m "not slow" tests

# Long fuzzing run of every input file kind (CI runs the same tests with few examples).
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	SNNC_FUZZ_PROFILE=long SNNC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VPY) -m pytest -q -p no:cacheprovider \
		--hypothesis-show-statistics tests/fuzz

lint: $(STAMP)
	$(VENV)/bin/ruff check snnc tests benchmarks tools examples
	$(VENV)/bin/ruff format --check snnc tests benchmarks tools examples

format: $(STAMP)
	$(VENV)/bin/ruff check --fix snnc tests benchmarks tools examples
	$(VENV)/bin/ruff format snnc tests benchmarks tools examples

bench: $(STAMP)
	$(VPY) benchmarks/train_throughput.py
	$(VPY) benchmarks/sim_vs_lava.py
	$(VPY) benchmarks/compile_accuracy.py --dataset mnist --arch convnet --epochs 2 --train-limit 10000
	$(VPY) benchmarks/prune_compare.py --out build/prune_compare

clean:
	rm -rf build .pytest_cache
