# Two commands set everything up on a fresh machine:
#   make demo   # create .venv, install, run the demo (Split-MNIST class-IL: naive vs EWC vs replay)
#   make test   # create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real MNIST for this workplace lives in ../shared/data; elsewhere ./data (downloaded on demand).
FORGETBENCH_DATA ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)
export FORGETBENCH_DATA

.PHONY: install demo test bench clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

demo: install
	$(BIN)/forgetbench -m experiment=demo data.download=true

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/forgetbench-speed

clean:
	rm -rf $(VENV) results/runs
