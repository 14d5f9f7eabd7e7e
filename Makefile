# hetpart: install / demo / test / bench. Each target installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    := out

.PHONY: install browser-deps demo test test-fast bench lint clean

install: $(STAMP)

# torch==2.13.0 first: on these machines it resolves to the local CPU wheel; letting pip pick
# torch while resolving the extras could pull the CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[zoo,openvino,dev]'
	touch $(STAMP)

HETPART := $(VENV)/bin/hetpart

# The main job end to end: build a zoo model, compile it for this machine, run and verify the
# plan against the whole model, print the report and write the HTML one.
# Headless Chromium for the HTML report's browser test (Debian's package); the test skips with
# a reason where it cannot be installed.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq chromium) \
	  || sudo -n apt-get install -y -qq chromium \
	  || echo "chromium not installable: browser tests will skip"; }

demo: install
	$(HETPART) zoo build inception -o $(OUT)/inception.onnx --force
	$(HETPART) inspect $(OUT)/inception.onnx
	$(HETPART) compile $(OUT)/inception.onnx --cluster local --time-limit 10 -o $(OUT)/plan --force
	$(HETPART) run $(OUT)/plan --check --repeat 20 --save
	$(HETPART) report $(OUT)/plan
	$(HETPART) report $(OUT)/plan -o $(OUT)/report.html
	@echo "HTML report: $(OUT)/report.html"

test: install browser-deps
	$(PY) -m pytest -q -x --durations=15 tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

bench: install
	$(PY) -m partitioner.benchmarks --out docs/benchmarks.md $(BENCH_ARGS)

lint: install
	$(PY) -m ruff check partitioner cost_models backends models tests
	$(PY) -m mypy partitioner cost_models backends models

clean:
	rm -rf $(OUT) .pytest_cache
