# Front door. Every target installs what is missing first (idempotent; a re-run with
# nothing changed costs a second or two), then does its job.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# llama-cpp-python ships no wheel: it compiles once (~10 min on 2 cores) into a
# wheelhouse outside the repo, reused by every clone on this machine. Built without
# -march=native: a native build used instructions (AMX/AVX-512) that some of these
# VMs advertise but fault on (SIGILL), and a wheel must run on any x86-64 with AVX2.
WHEELHOUSE ?= $(HOME)/.cache/voicebot/wheels
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
LLAMA_WHEEL_STAMP := $(WHEELHOUSE)/.llama-cpp-python-$(LLAMA_VERSION)-portable
APT_PACKAGES := espeak-ng sox
PYTEST_ARGS ?=

.PHONY: help setup run triton test lint bench clean system-deps

help:
	@echo "make run    - install what is missing, start Triton (all models) and the orchestrator on 127.0.0.1"
	@echo "make triton - Triton alone"
	@echo "make test   - install what is missing, run the whole test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - benchmarks (see benchmarks/)"
	@echo "make clean  - remove the venv and runtime files (keeps the llama.cpp wheel cache)"

setup: $(STAMP) system-deps

$(PY):
	@echo "==> creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(LLAMA_WHEEL_STAMP): | $(PY)
	@mkdir -p $(WHEELHOUSE)
	@echo "==> building llama-cpp-python $(LLAMA_VERSION) (once per machine, ~10 min on 2 cores; cached in $(WHEELHOUSE))"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PIP) wheel --no-deps --no-cache-dir --no-binary llama-cpp-python --progress-bar on \
		-w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION)
	@touch $@

$(STAMP): pyproject.toml $(LLAMA_WHEEL_STAMP) | $(PY)
	@echo "==> installing Python dependencies into $(VENV) (first time: a few minutes)"
	$(PIP) install --progress-bar on --find-links $(WHEELHOUSE) "llama-cpp-python==$(LLAMA_VERSION)" -e '.[dev]'
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: setup
	$(VENV)/bin/voicebot-orchestrator --with-triton

triton: setup
	$(VENV)/bin/voicebot-triton

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check voicebot rag_index orchestrator model_repository tests triton
	$(VENV)/bin/ruff format --check voicebot rag_index orchestrator model_repository tests triton
	$(VENV)/bin/mypy

bench: setup
	@echo "benchmarks arrive with issue #5 (benchmarks/); nothing to run yet"

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache test-artifacts
