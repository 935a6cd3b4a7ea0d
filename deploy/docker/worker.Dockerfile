# syntax=docker/dockerfile:1
# moodwire worker: text-events -> Triton -> scored-events -> ClickHouse, alerts, web API and /metrics.
# No torch, no training extras, no embedded engines: the worker classifies through Triton
# (MOODWIRE_RUNNER=triton; the local runner is not available in this image) and stores in a
# ClickHouse server (MOODWIRE_CLICKHOUSE_DSN=http(s)://...; chdb:// is not available either).
#
#   docker build -f deploy/docker/worker.Dockerfile -t moodwire-worker:0.1.0 .
#
# Liveness: HEALTHCHECK on /health (the event loop answers).  Readiness: GET /ready (broker,
# Triton and ClickHouse each answer within 3 s; 503 otherwise) - used by Kubernetes'
# readinessProbe and compose's depends_on, never as the container health (a Triton outage
# must pause the stream, not restart every worker).  See docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/moodwire
COPY pyproject.toml deploy/docker/worker_requirements.py ./
# The dependencies and the triton extra with pyproject's pins, minus the embedded-only ones
# (embedded broker, chDB + pandas + pyarrow, ONNX Runtime): a 241 MB venv instead of about 1.1 GB.
RUN python worker_requirements.py pyproject.toml > requirements.txt \
    && /opt/moodwire/bin/pip install --no-cache-dir --no-compile -r requirements.txt
COPY inference/ inference/
COPY streams/ streams/
# model.*.onnx is for Triton (int8, CPU) and the TensorRT build (fp32): the worker never loads one.
RUN rm -f inference/artifacts/*/model.*.onnx \
    && /opt/moodwire/bin/pip install --no-cache-dir --no-compile --no-deps .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 moodwire \
    && useradd --system --uid 10001 --gid moodwire --home-dir /var/lib/moodwire --create-home moodwire
COPY --from=build /opt/moodwire /opt/moodwire
ENV PATH=/opt/moodwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MOODWIRE_DATA_DIR=/var/lib/moodwire \
    MOODWIRE_RUNNER=triton \
    MOODWIRE_WEB_HOST=0.0.0.0 \
    MOODWIRE_WEB_PORT=6066
WORKDIR /var/lib/moodwire
USER 10001:10001
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MOODWIRE_WEB_PORT', '6066'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["moodwire"]
CMD ["worker"]
