# The book's two commands:
#   make book   create .venv if missing, install the pinned dependencies, execute every
#               chapter with PROFILE (default cpu) into runs/PROFILE/<time>/, build the HTML
#   make test   unit tests, nbval re-execution of every committed chapter, browser check
# Developers: make unit (the unit tests and the browser check, no chapter re-execution, without
# the two-chapter mini run and the Colab install test that make test runs; about 3.5 minutes), make bench (python -m lib bench: the hot loops against the bare network).
# Also: make book PROFILE=gpu (on a GPU machine), make html RUN=runs/gpu/latest (build from an
# existing run), make site (the HTML of the committed notebooks, executing nothing: what
# .github/workflows/pages.yml publishes), make notebooks (developers: refresh the committed cpu
# outputs, their record book/run.json and the .md twins).
# The environment: pip install -e ".[test,pinned]", the exact versions of pyproject.toml's
# `pinned` and `test` extras (the package's own dependencies are ranges, for Colab).

PROFILE ?= cpu
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch and BLAS share the machine's cores; one job at a time, threads set deliberately
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: book test unit bench html site notebooks

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,pinned]"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m lib book --profile $(PROFILE)

html: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make html RUN=runs/<profile>/<run id>"; exit 2; }
	$(PY) -m lib book --run $(RUN)

site: $(STAMP)
	$(PY) -m lib book --committed

test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests book --nbval \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests -m "not whole_book and not colab_install"

bench: $(STAMP)
	$(PY) -m lib bench

notebooks: $(STAMP)
	$(PY) -m lib run --profile cpu --in-place
	$(VENV)/bin/jupytext --sync book/*.ipynb
