# The original service's targets (init, format, format-diff, lint, run-app, run-script)
# plus run, test and bench. `make test` and `make run` install what is missing themselves.
SHELL := /bin/bash
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
VENV := .venv
STAMP := $(VENV)/.init-done
RUN := $(VENV)/bin
PIPENV := $(shell command -v pipenv 2>/dev/null || echo "python3 -m pipenv")
ENV_FILE ?= probe.env

.PHONY: init format format-diff lint test run run-app run-script bench clean

$(STAMP): Pipfile.lock pyproject.toml
	@command -v pipenv >/dev/null 2>&1 || python3 -m pip install --quiet pipenv
	$(PIPENV) sync --dev
	$(RUN)/pip install --quiet --no-deps --no-build-isolation -e . || $(RUN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

init: $(STAMP)

format: init
	$(RUN)/ruff format .
	$(RUN)/ruff check --fix .

format-diff: init
	$(RUN)/ruff format --diff .

lint: init
	$(RUN)/ruff check .
	$(RUN)/ruff format --check .
	$(RUN)/hadolint Dockerfile

test: init
	$(RUN)/pytest

# The local demo: the emulator plus the supervised stack against it.
run: init
	$(RUN)/probe run --with-emulator

# The supervised stack against the configured real platform (ORIGO_ENVIRONMENT, secrets, ...).
run-app: init
	$(RUN)/probe run

# The same, with settings from an env file you fill in (copy probe.env.example to probe.env).
run-script: init
	@test -f "$(ENV_FILE)" || { echo "$(ENV_FILE) is missing: cp probe.env.example $(ENV_FILE) and fill it in" >&2; exit 2; }
	set -a && source "$(ENV_FILE)" && set +a && $(RUN)/probe run

bench: init
	$(RUN)/python -m bench

clean:
	rm -rf $(VENV) var
