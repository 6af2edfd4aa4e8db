# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-all lint docs bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tileunet demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# the documentation site (mkdocs.yml) in site/: any warning, broken link or docstring the
# API reference cannot read fails the build (the variables only quiet two packages' notices)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir site

# about 1.75 hours on a 2-core CPU; each script's docstring says what it measures
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_weights.py
	$(BIN)/python benchmarks/bench_augment.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_blockwise.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache site
