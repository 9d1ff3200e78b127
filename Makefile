# The two commands of a fresh machine (each creates the virtualenv $(VENV) on first use, then reuses it):
#   make figures     regenerate every notebook, figure and the results page (PROFILE=laptop by default)
#   make test        run the tests (what CI runs)
# Options: make figures PROFILE=smoke NOTEBOOKS="02 05"; make test PYTEST_ARGS="-k cache"; VENV=path.
VENV ?= .venv
PROFILE ?= laptop
NOTEBOOKS ?=
PYTEST_ARGS ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: figures test setup
figures: setup
	./run_all.sh --profile $(PROFILE) $(NOTEBOOKS)

test: setup
	python -m pytest -q $(PYTEST_ARGS)

setup:
	@bash scripts/setup.sh $(VENV)
