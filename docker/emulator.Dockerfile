# The local Bedrock emulator image (bedrock-gateway/emulator): a stand-in for
# Bedrock Runtime in development stacks and tests, never for production. Build
# from the repository root:
#
#   docker build -f docker/emulator.Dockerfile -t bedrock-gateway/emulator .
#
# It is the same Python distribution as the extproc (bedrock_emulator is one of
# its packages), built the same way; see docker/extproc.Dockerfile about the
# base image pin and about Envoy not being installed.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# checkov:skip=CKV_DOCKER_7: the base is pinned by the PYTHON_IMAGE default above; checkov does not resolve ARGs

# --- build -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps . \
    && bedrock-emulator --help > /dev/null

# --- runtime ---------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bedrock-gateway/emulator" \
      org.opencontainers.image.description="Local Amazon Bedrock Runtime emulator for development and tests" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 emulator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin emulator
COPY --from=build /opt/gateway /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8090
# Any HTTP answer means it is serving; /_emulator/requests is its inspection endpoint.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/_emulator/requests', timeout=2)"]
# Credentials it accepts: its public development pair, or BEDROCK_EMULATOR_CREDENTIALS
# (a JSON list), or --credentials FILE. Region: --region (default us-east-1).
ENTRYPOINT ["bedrock-emulator", "--host", "0.0.0.0", "--port", "8090"]
