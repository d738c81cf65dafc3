# One entry point for everything: each target builds what it needs first.
# Quick start: `make demo` (the whole pipeline on the built-in example) and `make test`.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Lava (lava-nc 0.10.0) needs Python 3.10 and numpy<2: it lives in its own interpreter.
LAVA_VENV  := .venv-lava
LAVA_STAMP := $(LAVA_VENV)/.installed

# norse, sinabs, rockpool, spyx and snnTorch for the NIR interop tests: their pins conflict with
# the main environment's, so they have their own interpreter too.
INTEROP_VENV  := .venv-interop
INTEROP_STAMP := $(INTEROP_VENV)/.installed

.PHONY: all install demo test test-fast lava-env interop-env lint golden bench-quality bench-quality-full bench-structured bench-speed bench-scale bench-scale-quick bench-scale-lava clean

all: install

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly: an open range would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

$(LAVA_STAMP): scripts/lava-env.sh
	bash scripts/lava-env.sh $(LAVA_VENV)
	touch $(LAVA_STAMP)

lava-env: $(LAVA_STAMP)

$(INTEROP_STAMP): scripts/interop-env.sh requirements-interop.lock
	bash scripts/interop-env.sh $(INTEROP_VENV)
	touch $(INTEROP_STAMP)

interop-env: $(INTEROP_STAMP)

demo: install lava-env
	$(VENV)/bin/slamp-deploy --target loihi2

test: install lava-env interop-env
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not lava"

# ruff (style, complexity) and import-linter (the layering contracts in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	bash scripts/lint-imports.sh

bench-quality: install
	$(PY) -m benchmarks.quality --mode quick

bench-quality-full: install
	$(PY) -m benchmarks.quality --mode full

# structured pruning (neurons and channels): SLAMP-group, LAMP-group, uniform L1; 3 seeds
bench-structured: install
	$(PY) -m benchmarks.structured

bench-speed: install
	$(PY) -m benchmarks.speed

bench-scale: install
	$(PY) -m benchmarks.scale --write-docs

bench-scale-quick: install
	$(PY) -m benchmarks.scale --quick --write-docs

# the same models' exports in Lava's CPU simulator (whole network or layer by layer)
bench-scale-lava: install lava-env
	$(PY) -m benchmarks.scale_lava --write-docs

golden: install
	$(PY) -m tests.golden.regenerate

clean:
	rm -rf $(VENV) $(LAVA_VENV) $(INTEROP_VENV) slamp-out
