# Two commands set everything up on a fresh machine:
#   make demo   # create .venv, install, run the demo (Split-MNIST class-IL: naive vs EWC vs replay)
#   make test   # create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Data: forgetbench reads $FORGETBENCH_DATA, else ./data (the CLI's default, so every command works
# from the clone after set-up). Where a data folder already sits beside the clone (../shared/data, as
# on this project's machines), `data` links to it; elsewhere the demo lets torchvision download MNIST.
SHARED_DATA := $(wildcard ../shared/data/MNIST/raw)

.PHONY: install demo test bench clean
install: $(VENV)/.installed data

data:
	$(if $(SHARED_DATA),ln -s ../shared/data data,mkdir -p data)

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
