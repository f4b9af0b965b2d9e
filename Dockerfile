# dataplatform-probe: one container running sender, listener and metrics under supervisord.
# Two stages: the first resolves the locked dependencies with pipenv; the final image gets
# only the resulting virtualenv and the code (no pipenv, no pip, no build tools).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIPENV_VENV_IN_PROJECT=1 \
    PIPENV_VERBOSITY=-1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app

# Dependencies first, from the lock (default packages only, no dev ones), so code changes
# do not reinstall them.
COPY Pipfile Pipfile.lock ./
RUN pip install --no-cache-dir pipenv==2026.10.3 \
    && pipenv sync

COPY pyproject.toml supervisord.conf probe.yaml ./
COPY shared ./shared
COPY probe_sender ./probe_sender
COPY probe_listener ./probe_listener
COPY probe_stack ./probe_stack
COPY probe_deploy ./probe_deploy
COPY emulator ./emulator
# Editable, so that the code (and supervisord.conf beside it) stays in /app; then the
# installers leave the virtualenv, which the final stage copies as it is.
RUN .venv/bin/pip install --no-cache-dir --no-deps -e . \
    && .venv/bin/pip uninstall -y pip setuptools wheel \
    && find /app -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROBE_DB_PATH=/data/probe.sqlite3 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/probe-metrics \
    PROBE_RUN_DIR=/tmp/probe-run \
    ORIGO_ENVIRONMENT=dev \
    EVENT_INTERVAL_SECONDS=10 \
    PATH=/app/.venv/bin:$PATH

RUN useradd --system --uid 10001 --home-dir /data probe \
    && mkdir -p /data \
    && chown probe /data

WORKDIR /app
COPY --from=build /app /app

USER 10001
VOLUME ["/data"]
EXPOSE 8000
# Asks /healthz on the configured metrics port (METRICS_PORT or probe.yaml), not a fixed 8000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["probe", "health"]

# `probe run` validates the config, resets the metrics directory, runs supervisord
# as its child, forwards signals, reaps orphans, and exits non-zero when a program
# goes FATAL (supervisord alone always exits 0).
ENTRYPOINT ["probe", "run"]
