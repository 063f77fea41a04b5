# nextword: the front door. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
TORCH       := torch==2.13.0

CORPUS      ?= auto
MODEL_NAME  ?= nextword
MODEL       ?= $(MODEL_NAME):latest
PORT        ?= 3000
TRAIN_ARGS  ?=
LOAD_USERS  ?= 32
LOAD_TIME   ?= 30s
SOAK_MINUTES ?= 10
FUZZ_EXAMPLES ?= 300
REPORTS     ?= reports
CHAR_ARGS   := --level char --hidden-size 256 --num-layers 2 --dropout 0.1 --weight-drop 0 --no-tie-weights \
               --bptt 100 --batch-size 32 --optimizer adam --lr 2e-3 --no-average-weights --recency-window 0

export NEXTWORD_MODEL ?= $(MODEL)

.PHONY: help install train train-char model serve demo-screenshot bench-words bench-cost bench-replicas bench-people eval-harness test test-unit fuzz bench bench-peers bench-engine profile bench-workers soak loadtest build containerize base-image lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo "  variables: CORPUS=$(CORPUS) MODEL_NAME=$(MODEL_NAME) PORT=$(PORT) TRAIN_ARGS='$(TRAIN_ARGS)'"

install: $(STAMP) ## Create .venv with torch (CPU wheel, pinned, first) and the pinned requirements

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

train: install ## Train the default model on CORPUS and save it to the BentoML store
	$(BIN)/python -m training.train --corpus $(CORPUS) --model-name $(MODEL_NAME) $(TRAIN_ARGS)

train-char: install ## Train the character-level model (MODEL_NAME-char) on CORPUS; serve it with MODEL=MODEL_NAME-char:latest
	$(BIN)/python -m training.train --corpus $(CORPUS) --model-name $(MODEL_NAME)-char $(CHAR_ARGS) $(TRAIN_ARGS)

model: install ## Train the default model only if the store has no MODEL_NAME yet
	@$(BIN)/bentoml models get $(MODEL) >/dev/null 2>&1 \
		&& echo "using $(MODEL) from the BentoML store" \
		|| $(MAKE) --no-print-directory train

serve: model ## Serve MODEL on PORT (training a default model first if the store has none)
	$(BIN)/python -m service.serve --port $(PORT)

test: install ## Run the whole test suite: unit, the real server over HTTP, the browser (trains a tiny model into a temporary store)
	$(BIN)/python -m pytest

test-unit: install ## Run the fast unit tests only (tests/unit, not marked slow): under a minute
	$(BIN)/python -m pytest tests/unit -m "not slow" -q

fuzz: install ## Explore new schema-fuzzing cases (a fresh seed, printed; FUZZ_EXAMPLES per route)
	@seed=$${NEXTWORD_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; echo "fuzzing with NEXTWORD_FUZZ_SEED=$$seed"; \
	NEXTWORD_FUZZ_SEED=$$seed NEXTWORD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/server/test_fuzz.py -q

bench: model $(PEERS_STAMP) ## Benchmark in process and over HTTP, the generation engine, the peers; prints tables, writes JSON
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package) for the benchmark"; apt-get install -y -q wrk; }
	$(BIN)/python -m bench.run --model $(MODEL)
	$(BIN)/python -m bench.engine --model $(MODEL)
	$(BIN)/python -m bench.reliability noisy --model $(MODEL)
	$(BIN)/python -m bench.peers_run --model $(MODEL) --peers-python $(PEERS_VENV)/bin/python

# Ray Serve and Triton (PyTriton) in an environment of their own, off the test one (about 700 MB), on
# Debian's Python: PyTriton's Triton stub fails under a pyenv Python.
PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_PYTHON_BASE ?= /usr/bin/python3.11
PEERS       := ray[serve]==2.60.0 nvidia-pytriton==0.7.0

$(PEERS_STAMP): requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PEERS_PYTHON_BASE) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH)
	$(PEERS_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt $(PEERS)
	touch $@

bench-peers: model $(PEERS_STAMP) ## The service against plain FastAPI, LitServe, Ray Serve and Triton on the same model, interleaved
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package) for the benchmark"; apt-get install -y -q wrk; }
	$(BIN)/python -m bench.peers_run --model $(MODEL) --peers-python $(PEERS_VENV)/bin/python

bench-words: install ## Word-level top-1/top-5 of /predict_next, the word model against the character model
	$(BIN)/python -m bench.next_word_accuracy $(MODEL) $(MODEL_NAME)-char:latest

EVAL_VENV   := .venv-eval
EVAL_STAMP  := $(EVAL_VENV)/.installed
LM_EVAL     := lm-eval[api]==0.4.13

$(EVAL_STAMP):
	test -x $(EVAL_VENV)/bin/python || $(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_VENV)/bin/pip install --quiet --disable-pip-version-check '$(LM_EVAL)'
	touch $@

eval-harness: model $(EVAL_STAMP) ## lm-evaluation-harness scores the test split through /v1/completions; checks it against our own figure
	$(BIN)/python -m bench.eval_harness --model $(MODEL) --lm-eval $(EVAL_VENV)/bin/lm-eval

bench-cost: install ## Serving cost per query of MODEL against BASELINE=<tag>, in process, interleaved (batch 1 and 128)
	$(BIN)/python -m bench.model_cost $(BASELINE) $(MODEL)

profile: model ## Where the worker's time goes at 64 clients (py-spy, by thread and library); PROFILE_ENV='NAME=VALUE ...'
	$(BIN)/python -m bench.profile --model $(MODEL) $(foreach e,$(PROFILE_ENV),--env $(e))

bench-workers: model ## One worker against two, wrk pinned to core 0 (taskset), alternating rounds
	$(BIN)/python -m bench.workers --model $(MODEL)

bench-people: model $(PEERS_STAMP) ## Typists held at keystroke p99 <= 20 ms, open loop: the load generator alone, nextword and the peers
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "installing nginx-light (Debian package) for the benchmark"; apt-get install -y -q nginx-light; }
	$(BIN)/python -m bench.people --model $(MODEL)

bench-replicas: model ## Three replicas behind nginx: session affinity against round robin and one replica; a failover
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "installing nginx-light (Debian package) for the benchmark"; apt-get install -y -q nginx-light; }
	$(BIN)/python -m bench.replicas --model $(MODEL)

bench-engine: model ## Benchmark the generation engine only: batching policies, state cache, streaming, overload
	$(BIN)/python -m bench.engine --model $(MODEL)

soak: model ## Soak both endpoints at 70% of saturation for SOAK_MINUTES; errors, p99 and memory per minute
	$(BIN)/python -m bench.reliability soak --model $(MODEL) --minutes $(SOAK_MINUTES)

loadtest: model ## Run Locust headless against a local server for LOAD_TIME; CSV and HTML in REPORTS
	$(BIN)/python -m bench.loadtest --users $(LOAD_USERS) --run-time $(LOAD_TIME) --reports $(REPORTS)

demo-screenshot: model ## Retake docs/demo.png and docs/demo-hello.png: the typing page in headless Chromium
	$(BIN)/python -m bench.demo_screenshot --model $(MODEL)
	$(BIN)/python -m bench.demo_screenshot --model $(MODEL) --text "Hello, how are " --out docs/demo-hello.png

build: model ## Build a Bento holding the service code and the pinned model (its default when NEXTWORD_MODEL is unset)
	$(BIN)/bentoml build --arg model=$$($(BIN)/python -c 'import bentoml; print(bentoml.models.get("$(MODEL)").tag)')

IMAGE       ?= nextword
IMAGE_TORCH ?= cpu
IMAGE_BASE  ?= auto

containerize: model ## Build the OCI image IMAGE:<version> of MODEL (Docker); IMAGE_TORCH=cpu|cuda, IMAGE_BASE=auto|bentoml|debian
	BENTOML=$(BIN)/bentoml PYTHON=$(BIN)/python PIP=$(BIN)/pip IMAGE=$(IMAGE) IMAGE_TORCH=$(IMAGE_TORCH) \
		IMAGE_BASE=$(IMAGE_BASE) deploy/container/containerize.sh $(MODEL)

base-image: install ## Build (or find, by its inputs) the base image made from Debian's packages, for a Docker without Docker Hub
	PIP=$(BIN)/pip deploy/container/base-image.sh $(IMAGE_TORCH)

lint: install ## Check style with ruff, and the layers (pyproject.toml's contracts) with import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

clean: ## Remove caches and reports (keeps .venv and the BentoML store)
	rm -rf .pytest_cache .ruff_cache $(REPORTS) bench/results
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
