# sarlab: `make demo` and `make test` set everything up on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sarlab-installed
JUPYTER_ROOT_FLAG := $(shell [ "$$(id -u)" = "0" ] && echo --allow-root)

.PHONY: setup demo test test-all lab bench lint clean-reports

setup: $(STAMP)

# torch first from the CPU wheel, then the package under constraints.txt, which pins
# torch so no dependency can swap in a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[notebook,dev]"
	$(PY) -m ipykernel install --sys-prefix --name sarlab --display-name "Python (sarlab)"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/sarlab run pipelines/demo.yaml

# pytest exits 5 when it collects nothing; that is not a failure of the code.
test: setup
	$(VENV)/bin/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-all: setup
	$(VENV)/bin/pytest -m "slow or not slow"

lab: setup
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser $(JUPYTER_ROOT_FLAG) notebooks/

bench: setup
	$(VENV)/bin/sarlab bench all

lint: setup
	$(VENV)/bin/ruff check sarlab tests
