# hetpart: install / demo / test / bench. Each target installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    := out

LOCK   := requirements/lock.txt
EXTRAS := zoo,openvino,ray,genai,dev

.PHONY: install lock test-latest browser-deps demo test test-fast bench lint clean

install: $(STAMP)

# Everything comes from the lock (every dependency and extra, pinned); the project itself is
# installed without resolving again. The lock pins torch's CPU build (2.13.0+cpu): an unpinned
# torch would pull the CUDA build. PyPI does not carry +cpu builds: this project's machines have
# the wheel on disk (pip's find-links); elsewhere pass TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_TORCH) -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock to the newest versions pyproject allows; commit it on its own after
# `make test` passes against it.
lock: install
	$(VENV)/bin/pip-compile --quiet --upgrade --strip-extras --allow-unsafe --extra $(EXTRAS) \
	  --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml

# The suite against the newest versions pyproject allows, ignoring the lock, in its own venv:
# how an upgrade is tried before `make lock`.
LATEST := .venv-latest
test-latest: browser-deps
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet $(PIP_TORCH) $$(grep '^torch==' $(LOCK))
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(onnx|onnxruntime|openvino|ortools|numpy|torch|transformers)=='
	$(LATEST)/bin/python -m pytest -q --durations=15 tests

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

# The architecture contracts ([tool.importlinter] in pyproject.toml) first: a stage importing
# one above it, or the core importing a plug-in, fails before the suite runs
# (tests/test_architecture.py checks the same inside the suite).
# A run that dies of a signal (CP-SAT 9.15's intermittent C++ abort, docs/pitfalls.md) is run
# once more, saying so; a failing test fails at once.
test: install browser-deps
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --durations=15 tests || { rc=$$?; [ $$rc -gt 128 ] || exit $$rc; \
	  echo "pytest died of signal $$((rc - 128)) (see docs/pitfalls.md): running the suite again"; \
	  $(PY) -m pytest -q --durations=15 tests; }

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

bench: install
	$(PY) -m partitioner.benchmarks --out docs/benchmarks.md $(BENCH_ARGS)

lint: install
	$(PY) -m ruff check partitioner cost_models backends models tests
	$(PY) -m mypy partitioner cost_models backends models
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(OUT) .pytest_cache
