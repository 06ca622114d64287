# Lookahead reproduction suite. `make help` lists the targets.
# Every target runs inside the project's virtual environment ($(VENV)), created by `make install`.

VENV    ?= .venv
PYTHON  ?= $(VENV)/bin/python
JOBS    ?= 1          # parallel sweep members (joblib); each gets THREADS threads
THREADS ?= $(shell [ "$(JOBS)" -gt 1 ] && echo 1 || nproc)
DATA    ?= $(or $(LOOKAHEAD_DATA),data)
SCALE   ?= cpu
ARGS    ?=

.DEFAULT_GOAL := help
.PHONY: help install quickstart test test-all smoke collect plan figures bench bench-lookahead bench-loop bench-machine bench-eval bench-before-after nqm-theory nqm-ema clean gpu-check gpu-pack paper-cifar10 collect-gpu

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

$(VENV)/bin/python:
	python3 -m venv $(VENV)

install: $(VENV)/bin/python ## create .venv and install the library, the suite and the test tools
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e ".[all]"

quickstart: install ## install, then train the noisy quadratic model with Lookahead(SGD) (offline, seconds)
	$(PYTHON) run.py task=nqm optim=lookahead_sgd

test: ## fast offline tests (CPU, no data needed)
	$(PYTHON) -m pytest -q

test-all: ## all tests, including slow ones (real data under LOOKAHEAD_DATA when present)
	$(PYTHON) -m pytest -q -m ""

smoke: ## every task and optimizer for a few steps on fake data
	$(PYTHON) -m pytest -q tests/test_tasks.py

sweep-%: ## run a paper artifact's sweep, e.g. `make sweep-table1_cifar SCALE=cpu JOBS=2 DATA=...` (CONTINUE=1: skip its committed runs); for a study (conf/tune/), its final runs
	$(if $(wildcard conf/tune/$*.yaml),$(STUDY_FINAL),$(if $(filter 1,$(CONTINUE)),$(PYTHON) -m scripts.collect_lib.restore $* &&) \
	  $(PYTHON) run.py -m +experiment=$* scale=$(SCALE) trainer.threads=$(THREADS) trainer.progress=false \
	  $(if $(filter-out 1,$(strip $(JOBS))),hydra/launcher=joblib hydra.launcher.n_jobs=$(strip $(JOBS))) $(ARGS))

# Fair-comparison studies (conf/tune/<study>.yaml; README "Fair comparisons"). The study file
# names its scale; SCALE=... given on the command line or in the environment runs it at another.
STUDY_ARGS = $(if $(filter command line environment,$(origin SCALE)),--scale $(SCALE))
STUDY_FINAL = $(PYTHON) scripts/study.py final $* $(STUDY_ARGS) --jobs $(strip $(JOBS)) --threads $(THREADS) $(ARGS)

tune-%: ## run a study's tuning trials, the same budget per arm (relaunching runs only what is missing), e.g. `make tune-cifar10_sgd JOBS=2`
	$(PYTHON) scripts/study.py tune $* $(STUDY_ARGS) --jobs $(strip $(JOBS)) --threads $(THREADS) $(ARGS)

select-%: ## pick each arm's values from validation scores only -> results/<study>/selected.yaml
	$(PYTHON) scripts/study.py select $* $(STUDY_ARGS)

final-%: ## run each arm of a study at its selected values on the study's final (paired) seeds
	$(STUDY_FINAL)

analyze-%: ## a study's paired differences, expected best score vs trials and table.md -> results/<study>/
	$(PYTHON) scripts/study.py analyze $* $(STUDY_ARGS)

study-%: ## a whole study, each step skipping what is done: tune, select, final, analyze, e.g. `make study-ptb_sgd JOBS=2`
	$(MAKE) tune-$* && $(MAKE) select-$* && $(MAKE) final-$* && $(MAKE) analyze-$*

collect: ## turn run directories into tidy tables under results/<artifact>/, then refresh the plan
	$(PYTHON) scripts/collect.py
	$(PYTHON) scripts/plan.py

plan: ## what is left of the cpu-scale plan and its cost, from the committed results -> results/plan.md
	$(PYTHON) scripts/plan.py

figures: ## regenerate every figure, and the tables in results/README.md, from the committed results
	$(PYTHON) scripts/make_figures.py
	$(PYTHON) scripts/report.py

nqm-theory: ## recompute the analytic NQM / quadratic curves (results/fig2-4)
	$(PYTHON) scripts/nqm_theory.py

nqm-ema: ## the NQM's EMA of the weights vs Lookahead at an equal averaging horizon: exact values and trained replicas (results/nqm_ema)
	$(PYTHON) scripts/nqm_ema.py

bench: bench-machine bench-lookahead bench-loop bench-eval ## machine, optimizer-sync, training-loop and evaluation benchmarks -> results/bench/

bench-lookahead:
	$(PYTHON) scripts/bench/bench_lookahead.py

bench-loop:
	$(PYTHON) scripts/bench/bench_loop.py --data-root $(DATA)/cifar10

bench-machine: ## GEMM peak, per-task step throughput (fp32/bf16, eager/compile), parallel jobs -> results/bench/machine_cpu.md
	$(PYTHON) scripts/bench/bench_machine.py --data $(DATA) $(BENCH_ARGS)

bench-eval: ## evaluation cost vs training per task (eval batch, precision, slow-weight reuse) -> results/bench/eval_cpu.md
	$(PYTHON) scripts/bench/bench_eval.py --data $(DATA) $(BENCH_ARGS)

bench-before-after: ## training step per task with the code before the CPU-throughput changes vs now -> results/bench/before_after_cpu.md
	$(PYTHON) scripts/bench/bench_before_after.py --data $(DATA) $(BENCH_ARGS)

# GPU (README "On a GPU"). On the device machine there is no .venv: `make ... PYTHON=python3`,
# or the whole session in one command, `bash scripts/gpu_session.sh`.
SEEDS  ?= 0,1
ARMS   ?= sgd,lookahead_sgd
OUT    ?= runs/gpu
BUDGET ?= 540
PAPER_JOBS = $(if $(filter command line environment,$(origin JOBS)),$(strip $(JOBS)),4)

gpu-check: ## the prepared device check (<= 8 min on one H100/H200): cuda tests, throughput, sync and loop benchmarks -> results/bench/*_cuda.*; ARGS=--cpu-dry-run checks it on CPU
	$(PYTHON) scripts/gpu_check.py $(ARGS)

gpu-pack: ## what a GPU session carries (Hydra, OmegaConf, the CIFAR-10 JPEG copy) -> data/gpu_pack/
	$(PYTHON) scripts/gpu_pack.py

paper-cifar10: ## Table 1 CIFAR-10 at paper scale, JOBS runs at once on one GPU (default 4), stopped cleanly at BUDGET s, records only: `make paper-cifar10 SEEDS=0,1 ARMS=sgd,lookahead_sgd OUT=runs/gpu`
	timeout -s TERM $$(( $(BUDGET) + 120 )) $(PYTHON) scripts/paper_cifar10.py --arms $(ARMS) --seeds $(SEEDS) --out $(OUT) \
	  --jobs $(PAPER_JOBS) --budget-s $(BUDGET) --data-root $(DATA)/cifar10 $(ARGS)

collect-gpu: ## records of a GPU session (RECORDS=.../paper_cifar10_records.tar.gz) -> runs/gpu/, tabulated at scale paper -> results/gpu/
	mkdir -p runs/gpu
	tar xzf $(RECORDS) -C runs/gpu
	$(PYTHON) scripts/collect.py --runs runs/gpu --results results/gpu --scale paper

data-cifar10: ## download CIFAR-10 (official archive, md5-checked) into $(DATA)/cifar10; ARCHIVE=file uses one you have
	$(PYTHON) scripts/data/prepare_cifar.py --dataset cifar10 --dest $(DATA)/cifar10 $(if $(ARCHIVE),--archive $(ARCHIVE))

data-cifar100: ## download CIFAR-100 (official archive, md5-checked) into $(DATA)/cifar100; ARCHIVE=file uses one you have
	$(PYTHON) scripts/data/prepare_cifar.py --dataset cifar100 --dest $(DATA)/cifar100 $(if $(ARCHIVE),--archive $(ARCHIVE))

clean: ## remove caches (never results/ or runs/)
	find . -name __pycache__ -prune -exec rm -rf {} +
	rm -rf .pytest_cache *.egg-info
