# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint services install llama

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $@

install: $(BIN)/.installed

# llama.cpp's OpenAI-compatible server (tests/e2e/test_llama_server.py): built once from
# PyPI's source distribution (minutes) into a wheel cache outside the repo, portable
# (no -march=native), then installed from that wheel with the server extra's deps.
LLAMA_WHEELS ?= $(HOME)/.cache/tether/wheels
LLAMA_SPEC := llama-cpp-python>=0.3,<0.4
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

$(BIN)/.llama: $(BIN)/.installed
	@mkdir -p $(LLAMA_WHEELS)
	@ls $(LLAMA_WHEELS)/llama_cpp_python-0.3.*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 nice -n 10 \
	  $(BIN)/python -m pip wheel -q --no-deps -w $(LLAMA_WHEELS) '$(LLAMA_SPEC)'
	$(BIN)/python -m pip install -q "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-0.3.*.whl | sort -V | tail -1)[server]"
	touch $@

llama: $(BIN)/.llama

demo: $(BIN)/.installed
	$(BIN)/tether demo

# Services the tests need: this machine kind starts PostgreSQL and Redis, but the
# test command must still start PostgreSQL when it is not answering; Debian's
# prometheus package (promtool, and a real server for query tests) and Chromium with
# its driver (console tests in a real browser) come from Debian, never downloaded.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; pg_isready -h 127.0.0.1 -p 5432
	@{ command -v promtool && command -v prometheus && command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium chromium-driver >/dev/null; }

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(BIN)/.installed llama services lint
	$(BIN)/pytest -q -p no:cacheprovider
