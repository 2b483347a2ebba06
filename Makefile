# bplambda: two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick
# Worker processes: one per usable core, each single-threaded (torch's intra-op threads buy
# little at these sizes, a second process doubles the throughput).
JOBS ?= $(shell nproc)
SHARED_MNIST := ../shared/data/MNIST

.PHONY: setup test test-fast reproduce lab bench lint format data clean browser test-browser \
	slurm-up slurm-down test-slurm

setup: $(STAMP)

# The venv is created once and reinstalled only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Link the shared MNIST files into data/ where a checkout has them beside it (never copied
# into git: data/ is ignored); an empty data/MNIST left by a failed download is replaced.
# Elsewhere torchvision downloads them on first use.
data: setup
	@if [ -d $(SHARED_MNIST)/raw ]; then \
		$(BIN)/python -m bplambda.tasks.mnist data $(SHARED_MNIST); fi

# One pytest-xdist worker per core, each single-threaded (the notebook kernels papermill
# starts inherit OMP_NUM_THREADS=1); a test file stays on one worker, so that a module's
# fixture (the smoke run of every notebook) runs once.
test: setup data
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadfile

# The tests that run no notebook, kernel or fresh process: a developer's check in about a minute.
test-fast: setup data
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
		-m "not slow and not browser and not slurm"

# NOTEBOOKS="01 03" runs a subset (names or numbers), JOBS=n the workers per notebook (default:
# one per core; above 1, two notebooks run at once sharing JOBS core slots). Notebooks 03-05 keep every condition's
# state in results/.../state/: an interrupted run resumes, a finished one is reused unless the
# code or a parameter changed; FORCE=1 recomputes.
reproduce: setup data
	$(BIN)/python -m bplambda.reproduce --profile $(PROFILE) --jobs $(JOBS) $(if $(NOTEBOOKS),--only $(NOTEBOOKS)) $(if $(FORCE),--force)

# As root (containers, CI) jupyter refuses to start without --allow-root.
# Notebooks run from JupyterLab write under results/lab/ (git-ignored), never into the
# committed results; a notebook's output_dir parameter still chooses any folder.
lab: setup data
	BPLAMBDA_RESULTS_ROOT=results/lab $(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# Real-browser test of `make lab`: Debian's chromium (apt, as root), checked on every call, and
# Playwright for Python driving /usr/bin/chromium (Playwright's own browser download is never
# used). Playwright has its own stamp, redone after every `make setup` reinstall.
BROWSER_STAMP := $(VENV)/.browser-installed

browser: $(BROWSER_STAMP)
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,browser]'
	touch $(BROWSER_STAMP)

test-browser: browser
	$(BIN)/python -m pytest -m browser -s tests/browser

# A one-node SLURM cluster with accounting (as root; Debian's packages installed on first use),
# its state and logs in SLURM_DIR, and the sweep tested against it (`make test-slurm`: shards
# submitted, cancelled, killed, timed out, resumed and merged). SLURM_PARTITION names its
# partition. `make slurm-down` stops its daemons by their PID files.
SLURM_DIR ?= $(CURDIR)/build/slurm

slurm-up:
	SLURM_DIR=$(SLURM_DIR) .ci/slurm/up.sh

slurm-down:
	SLURM_DIR=$(SLURM_DIR) .ci/slurm/down.sh

# One test at a time (jobs single-threaded, at most two at once on the node's two CPUs); each
# test's time (--durations) and how soon each ended shard was reported (-rA: what they print).
test-slurm: setup data
	SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(BIN)/python -m pytest -p no:xdist -m slurm --durations=0 -rA tests/slurm

bench: setup
	$(BIN)/python -m bplambda.bench
	$(BIN)/python -m bplambda.bench_workers

lint: setup
	$(BIN)/ruff check bplambda tests
	$(BIN)/ruff format --check bplambda tests

format: setup
	$(BIN)/ruff format bplambda tests
	$(BIN)/ruff check --fix bplambda tests

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
