# bplambda: two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick
SHARED_MNIST := ../shared/data/MNIST

.PHONY: setup test reproduce lab bench lint format data clean

setup: $(STAMP)

# The venv is created once and reinstalled only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Link the shared MNIST files into data/ where a checkout has them beside it (never copied
# into git: data/ is ignored). Elsewhere torchvision downloads them on first use.
data:
	@if [ -d $(SHARED_MNIST)/raw ] && [ ! -e data/MNIST ]; then \
		mkdir -p data && ln -s "$$(cd $(SHARED_MNIST) && pwd)" data/MNIST && \
		echo "linked $(SHARED_MNIST) -> data/MNIST"; fi

test: setup data
	$(BIN)/python -m pytest

reproduce: setup data
	$(BIN)/python -m bplambda.reproduce --profile $(PROFILE)

lab: setup data
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python -m bplambda.bench

lint: setup
	$(BIN)/ruff check bplambda tests
	$(BIN)/ruff format --check bplambda tests

format: setup
	$(BIN)/ruff format bplambda tests
	$(BIN)/ruff check --fix bplambda tests

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
