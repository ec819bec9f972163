# OpenAnomaly's container image.
#
#   docker build -t openanomaly .                                       # extras: s3, ui
#   docker build -t openanomaly:cluster --build-arg EXTRAS=celery,postgres,s3 .
#   docker build -t openanomaly:minimal --build-arg EXTRAS= .           # no extras
#
#   docker run IMAGE                      # `openanomaly run` (the daemon)
#   docker run IMAGE worker               # `openanomaly worker` (cluster mode)
#   docker run IMAGE ui --address 0.0.0.0 --api-url http://DAEMON:8495   # the web UI, port 8501
#   docker run IMAGE validate             # any other subcommand
#
# EXTRAS is a comma-separated list of the project's extras (pyproject.toml). The `neural` extra
# (neuralforecast) is left out of every default: from PyPI it pulls torch with ~3 GB of CUDA
# libraries. An image with it needs a CPU build of torch the way .ci/install-neural installs it
# (PyTorch's CPU index), which this Dockerfile does not do.
#
# Inside the container these settings come from the environment, set below, and environment
# variables take precedence over the settings file: change them with `-e`, not in the file.
#   OA_STORAGE__DATA_DIR=/var/lib/openanomaly   (a volume: registry, models, outbox)
#   OA_HTTP__LISTEN=0.0.0.0:8495                 (/healthz, /readyz, /metrics, the API)
#   OA_PIPELINES_DIR=/etc/openanomaly/pipelines.d  (the examples of pipelines.d/; mount yours)
# The settings file is found through OA_CONFIG or `--config` (deploy/openanomaly.yaml is one).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: resolve from uv.lock into a virtual environment at /opt/venv -----------------------
FROM ${PYTHON_IMAGE} AS builder

ARG EXTRAS=s3,ui
# The uv this repository is developed with (uv.lock needs one at least as new as its writer);
# from PyPI, which is all CI reaches (not the curl installer).
ARG UV_VERSION=0.13.9

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install "uv==${UV_VERSION}"

WORKDIR /src

# The dependencies first, in a layer of their own: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN set -eu; \
    extra_args=""; \
    for extra in $(echo "${EXTRAS}" | tr ',' ' '); do extra_args="${extra_args} --extra ${extra}"; done; \
    echo "extras:${extra_args:- none}"; \
    uv sync --locked --no-dev --no-install-project ${extra_args}

# Then the project itself, as a wheel (not editable), so the runtime needs no source tree. The
# libraries' own test suites (scipy, statsmodels, sklearn, pandas, numpy, pyarrow: ~140 MB of
# ~750 MB) are deleted; nothing imports them at run time, and the smoke test below runs after.
COPY README.md ./
COPY openanomaly ./openanomaly
RUN set -eu; \
    extra_args=""; \
    for extra in $(echo "${EXTRAS}" | tr ',' ' '); do extra_args="${extra_args} --extra ${extra}"; done; \
    uv sync --locked --no-dev --no-editable ${extra_args}; \
    find /opt/venv/lib -type d -name tests -prune -exec rm -rf {} +; \
    /opt/venv/bin/openanomaly version

# --- runtime: the interpreter of the same base image and the venv; no uv, no compilers ----------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="openanomaly" \
      org.opencontainers.image.description="Forecast-based anomaly detection for Prometheus-compatible TSDBs" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, numeric uid/gid (10001), so Kubernetes' runAsNonRoot can check it and volumes can be
# prepared for it. The data directory and the models directory (the cluster compose mounts a
# shared volume there) are created here, owned by that user: Docker copies this ownership into a
# new named volume, so the non-root process can write to it.
RUN groupadd --system --gid 10001 openanomaly \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/openanomaly --shell /usr/sbin/nologin openanomaly \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/openanomaly /var/lib/openanomaly/models \
    && install -d -m 0755 /etc/openanomaly /etc/openanomaly/pipelines.d

COPY --from=builder /opt/venv /opt/venv
COPY pipelines.d/ /etc/openanomaly/pipelines.d/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OA_STORAGE__DATA_DIR=/var/lib/openanomaly \
    OA_HTTP__LISTEN=0.0.0.0:8495 \
    OA_PIPELINES_DIR=/etc/openanomaly/pipelines.d

USER 10001:10001
WORKDIR /var/lib/openanomaly
VOLUME /var/lib/openanomaly
EXPOSE 8495 8501

# The slim image has no curl: Python's urllib asks /healthz on the port of OA_HTTP__LISTEN. A
# container running `worker` serves no HTTP, so the check passes there as long as it runs (PID 1's
# arguments tell which command runs, also behind `docker run --init`); one running `ui` answers
# Streamlit's /_stcore/health on 8501.
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; args = open('/proc/1/cmdline', 'rb').read().split(b'\\0'); port = os.environ.get('OA_HTTP__LISTEN', ':8495').rpartition(':')[2]; sys.exit(0) if b'worker' in args else urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health' if b'ui' in args else f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["openanomaly"]
CMD ["run"]
