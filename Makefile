# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test test-slow test-dist test-ui bench bench-lora-memory bench-training-memory clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU build (a loose pin would pull a multi-GB CUDA build)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,deepspeed,ui]"
	touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/soraplan demo

test: $(INSTALLED)
	$(BIN)/python -m pytest -q -m "not browser and not slow and not dist" --durations=15

# the few tests that take minutes each (the demo recipe end to end); CI runs them too
test-slow: $(INSTALLED)
	$(BIN)/python -m pytest -q -m "slow"

# two "nodes" on this machine (torchrun launches meeting at 127.0.0.1): equality, a lost node, resume
test-dist: $(INSTALLED)
	$(BIN)/python -m pytest -q -m "dist"

# the browser test of `soraplan serve`: headless Chromium (Debian's package, installed when missing)
test-ui: $(INSTALLED)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pytest -q -m browser tests/ui

# REFERENCE=path/to/Open-Sora-Plan (a v1.3.1 checkout) adds the reference to the transformer bench
REFERENCE ?=
bench: $(INSTALLED)
	$(BIN)/python bench/transformer.py $(if $(REFERENCE),--reference $(REFERENCE)) --backward
	$(BIN)/python bench/sample.py
	$(BIN)/python bench/vae.py

# the 2B model's LoRA training memory at 93x352x640, counted and measured on CPU (about 4 minutes)
bench-lora-memory: $(INSTALLED)
	$(BIN)/python bench/lora_memory.py

# memory per GPU and throughput of full 2B training on 8 / 16 / 128 GPUs, ZeRO-2/3, offload (about 5 minutes)
bench-training-memory: $(INSTALLED)
	$(BIN)/python bench/training_memory.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
