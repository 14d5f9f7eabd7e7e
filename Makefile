# hetpart: install / demo / test / bench. Each target installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    := out

.PHONY: install demo test test-fast bench lint clean

install: $(STAMP)

# torch==2.13.0 first: on these machines it resolves to the local CPU wheel; letting pip pick
# torch while resolving the extras could pull the CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[zoo,openvino,dev]'
	touch $(STAMP)

demo: install
	@bash scripts/demo.sh $(PY) $(OUT)

test: install
	$(PY) -m pytest -q -x --durations=15 tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

bench: install
	$(PY) -m benchmarks.run --out docs/benchmarks.md

lint: install
	$(PY) -m ruff check partitioner cost_models backends models tests benchmarks
	$(PY) -m mypy partitioner cost_models backends models

clean:
	rm -rf $(OUT) .pytest_cache
