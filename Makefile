# The original service's targets init, format, format-diff, lint, run-app, run-script,
# run-dp and upgrade-deps keep their meaning; its local-env targets (stand-ins run in docker
# compose) are replaced by `make run` (the emulator). Plus run, test, bench and deploy.
# `make test` and `make run` install what is missing themselves. `make help` lists them all.
SHELL := /bin/bash
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
VENV := .venv
STAMP := $(VENV)/.init-done
RUN := $(VENV)/bin
PIPENV := $(shell command -v pipenv 2>/dev/null || echo "python3 -m pipenv")
ENV_FILE ?= probe.env

.PHONY: help init format format-diff lint test test-deps run run-app run-dp run-script upgrade-deps bench soak deploy docs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(STAMP): Pipfile.lock pyproject.toml
	@command -v pipenv >/dev/null 2>&1 || python3 -m pip install --quiet pipenv
	$(PIPENV) sync --dev
	$(RUN)/pip install --quiet --no-deps --no-build-isolation -e . || $(RUN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

init: $(STAMP) ## install pipenv if missing, then the locked dependencies into .venv/

format: init ## format and fix lint (ruff)
	$(RUN)/ruff format .
	$(RUN)/ruff check --fix .

format-diff: init ## show what format would change
	$(RUN)/ruff format --diff .

lint: init ## ruff, and hadolint on the Dockerfile
	$(RUN)/ruff check .
	$(RUN)/ruff format --check .
	$(RUN)/hadolint Dockerfile

# The tests mostly wait on processes they start, so TEST_WORKERS pytest-xdist workers share
# the cores; each test file runs whole on one worker (module fixtures, such as the image,
# are built once), and every test picks its own ports and directories.
TEST_WORKERS ?= 3
test: init test-deps ## the whole test suite (installs what it needs first)
	$(RUN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=10

# Prometheus, promtool, Alertmanager and amtool from Debian's packages, for the rule unit
# tests and the end-to-end tests; podman, runc and mmdebstrap, to build and run the image in
# the container tests, with what podman leaves to Recommends/Suggests: iptables, which
# netavark programs for podman's default network, and slirp4netns, the network of rootless
# podman; Chromium, for the status page test. Installed when missing and we may (root with apt-get).
# tests/test_test_tools.py checks that every program the suite runs is listed here.
TEST_TOOLS := git prometheus promtool prometheus-alertmanager amtool podman runc mmdebstrap iptables chromium
TEST_PACKAGES := git prometheus prometheus-alertmanager podman runc netavark iptables slirp4netns uidmap mmdebstrap chromium
test-deps: ## install Prometheus, Alertmanager, podman (and iptables), mmdebstrap and Chromium (Debian packages) when missing
	@missing=$$(for t in $(TEST_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || echo $$t; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(TEST_PACKAGES) (missing: $$(echo $$missing))"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $(TEST_PACKAGES) >/dev/null; \
	  else \
	    echo "make test needs $$(echo $$missing): run 'sudo apt-get install $(TEST_PACKAGES)' (Debian/Ubuntu)" >&2; \
	    exit 2; \
	  fi; \
	fi

run: init ## the demo: the emulator plus the supervised stack against it (profile deploy/demo.yaml)
	@PROBE_CONFIG=deploy/demo.yaml $(RUN)/probe run --with-emulator

DEMO_PROFILE := $(realpath deploy/demo.yaml)
run-app: init ## the supervised stack against the configured real platform
	@if [ -n "$(PROBE_CONFIG)" ] && [ "$(realpath $(PROBE_CONFIG))" = "$(DEMO_PROFILE)" ]; then \
	  echo "make run-app: PROBE_CONFIG=$(PROBE_CONFIG) is the demo's profile, not the real platform's: unset PROBE_CONFIG (or run the demo with make run)" >&2; exit 2; fi
	@$(RUN)/probe run

run-dp: run-app ## the original's name of run-app: the stack against the dataplatform

upgrade-deps: ## update the locked dependencies (Pipfile.lock) to their newest allowed versions
	@command -v pipenv >/dev/null 2>&1 || python3 -m pip install --quiet pipenv
	$(PIPENV) update --dev

run-script: init ## the supervised stack against the real platform, with settings from probe.env (copy probe.env.example)
	@test -f "$(ENV_FILE)" || { echo "$(ENV_FILE) is missing: cp probe.env.example $(ENV_FILE) and fill it in" >&2; exit 2; }
	@set -a && source "$(ENV_FILE)" && set +a && $(RUN)/probe run

bench: init ## benchmarks against the emulator (about 13 minutes; results in bench/results/)
	$(RUN)/python -m bench

soak: init ## a month of the probe's life in about an hour: prints each figure's trend and a verdict
	$(RUN)/python -m bench.soak

# The generated deploy files: the alert rules from their parameters, and the dashboard.
deploy: init ## regenerate deploy/prometheus/probe-rules.yml, its PrometheusRule and the Grafana dashboard
	$(RUN)/probe rules --params deploy/prometheus/alert-params.yaml > deploy/prometheus/probe-rules.yml
	$(RUN)/probe rules --params deploy/prometheus/alert-params.yaml --prometheus-rule > deploy/kubernetes/probe-rules.yaml
	$(RUN)/probe dashboard > deploy/grafana/dashboards/dataplatform-probe.json

# The generated parts of docs/: the performance page, the layout table, the settings table.
docs: init ## regenerate docs/performance.md and the generated tables of docs/ (tests check them)
	$(RUN)/python -m probe_docs

clean: ## remove the virtualenv and var/
	rm -rf $(VENV) var
