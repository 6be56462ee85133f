# Quick start: `make demo`, `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build; a looser pin pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/p2pfl demo --nodes 4 --rounds 10 --dataset breast_cancer --topology ring

test: $(STAMP)
	$(VENV)/bin/ruff check p2pfl tests benchmarks
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_simulator.py
	$(PY) benchmarks/bench_codec.py
	$(PY) benchmarks/bench_transfer.py
	$(PY) benchmarks/bench_round.py
	$(PY) benchmarks/bench_async.py

lint: $(STAMP)
	$(VENV)/bin/ruff check p2pfl tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
