# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU build (a loose pin would pull a multi-GB CUDA build)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,deepspeed]"
	touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/soraplan demo

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

bench: $(INSTALLED)
	$(BIN)/python bench/vae.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
