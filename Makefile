# Two commands do everything on a fresh machine (see README):
#   make tutorial   execute every notebook on the embedded defaults, write figures/ and runs/tiny-deqa/
#   make test       package tests + every notebook executed in smoke mode
# Both create .venv and install what is missing first.

VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU or CUDA build of torch, installed before the rest so that pip does not pick one for you.
# On a machine with a GPU, `make setup TORCH_SPEC="torch"` takes the default CUDA build.
TORCH_SPEC ?= torch==2.13.0
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: setup tutorial test test-fast notebooks figures clean-generated help

help:
	@echo "make tutorial  - run every notebook (embedded defaults), write figures/ and runs/"
	@echo "make test      - package tests + notebooks in smoke mode (what CI runs)"
	@echo "make test-fast - package tests without the notebooks and the slow tests (contributors' loop)"
	@echo "make notebooks - (maintainers) re-execute and commit-clean the notebooks in place"

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing into $(VENV) (first run only) ..."
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	@$(PIP) install -r requirements.txt
	@$(PIP) install --no-deps -e .
	@touch $@

setup: $(VENV)/.installed

tutorial: setup
	$(PY) -m deqa.nbrun --out build/notebooks

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not notebook"

notebooks: setup
	$(PY) -m deqa.nbrun --inplace

clean-generated:
	rm -rf build data/generated runs
