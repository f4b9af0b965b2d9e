# dataplatform-probe: one container running sender, listener and metrics under supervisord.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIPENV_VENV_IN_PROJECT=1 \
    PROBE_DB_PATH=/data/probe.sqlite3 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/probe-metrics \
    PROBE_RUN_DIR=/tmp/probe-run \
    ORIGO_ENVIRONMENT=dev \
    EVENT_INTERVAL_SECONDS=10

WORKDIR /app

# Dependencies first, from the lock, so code changes do not reinstall them.
COPY Pipfile Pipfile.lock ./
RUN pip install --no-cache-dir pipenv==2026.10.3 \
    && pipenv sync \
    && pip uninstall -y pipenv

COPY pyproject.toml supervisord.conf probe.yaml ./
COPY shared ./shared
COPY probe_sender ./probe_sender
COPY probe_listener ./probe_listener
COPY probe_stack ./probe_stack
COPY emulator ./emulator
# Editable, so that the code (and supervisord.conf beside it) stays in /app.
RUN .venv/bin/pip install --no-cache-dir --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /data probe \
    && mkdir -p /data \
    && chown probe /data

ENV PATH=/app/.venv/bin:$PATH
USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

# `probe run` validates the config, resets the metrics directory, runs supervisord
# as its child, forwards signals, reaps orphans, and exits non-zero when a program
# goes FATAL (supervisord alone always exits 0).
ENTRYPOINT ["probe", "run"]
