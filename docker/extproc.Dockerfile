# The extproc image (bedrock-gateway/extproc): the ext_proc gRPC service that
# Envoy calls for every request. Build from the repository root:
#
#   docker build -f docker/extproc.Dockerfile -t bedrock-gateway/extproc .
#
# Base: pinned by tag (CPython 3.11.14, Debian 12 "bookworm", slim). For a
# byte-for-byte reproducible base, add the digest the registry reports for it
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm`) as
# PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...; it is not written here
# because it could not be looked up where this file was written (no registry).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is pinned by the PYTHON_IMAGE default above; checkov does not resolve ARGs

# --- build: a virtualenv with the project and its dependencies ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH
WORKDIR /src
# Dependencies first, so their layer is reused while only the code changes.
# Envoy (the package's `envoy` extra) is not installed: it is its own container,
# and without it this image also builds for arm64.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# The project itself, built from the source tree as any pip install does (build
# isolation, the package's own build steps); .dockerignore keeps local files out.
COPY . .
RUN pip install --no-deps . \
    && extproc --help > /dev/null

# --- runtime ---------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bedrock-gateway/extproc" \
      org.opencontainers.image.description="Bedrock gateway ext_proc service (Envoy external processor)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EXTPROC_LISTEN=0.0.0.0:50051 \
    EXTPROC_METRICS_LISTEN=0.0.0.0:9464
USER 10001:10001
# 50051 ext_proc + grpc.health.v1 (Envoy), 9464 /metrics and /healthz,
# 9465 the admin gRPC API (config admin.listen; 127.0.0.1 unless configured).
EXPOSE 50051 9464 9465
# /healthz is 200 while serving and 503 while draining; python, as the slim
# image has no curl. The port follows EXTPROC_METRICS_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('EXTPROC_METRICS_LISTEN', ':9464').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
# SIGTERM drains (EXTPROC_DRAIN_DELAY_SECONDS, then up to EXTPROC_GRACE_SECONDS):
# give the container at least their sum to stop (compose: stop_grace_period).
ENTRYPOINT ["extproc", "serve"]
