# syntax=docker/dockerfile:1
# One image for every remitnet service: `remitnet serve --only <service> ...`.
#
#   docker build -t ghcr.io/remitnet/remitnet:0.1.0 .
#
# Stage 1 builds the project's wheel and the wheels of all its dependencies;
# stage 2 installs them into a clean slim image without compilers or pip's
# cache, and runs as an unprivileged user (uid 10001) on a read-only root
# filesystem (Kubernetes mounts an emptyDir on /tmp).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only here, for any dependency without a binary wheel. The distro's
# current build-essential is what we want; pinning its version breaks rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY services ./services
COPY clients ./clients
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="remitnet" \
      org.opencontainers.image.description="gRPC remittance clearing hub" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 remitnet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin remitnet
# The wheels are bind-mounted from the builder, so they never become a layer.
# Versions are fixed by the wheels built above (--no-index).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels remitnet \
    && python -c "import remitnet.services, grpc, sqlalchemy, psycopg"
WORKDIR /tmp
USER 10001:10001
# gRPC (mTLS), Prometheus /metrics, plaintext grpc.health.v1 only (probes).
EXPOSE 50051 9464 8081
ENTRYPOINT ["remitnet"]
# Every service in one process, with mTLS: mount client-ca.crt (the client
# CA, which verifies client certificates), tls.crt and tls.key (signed by the
# separate server CA), readable by uid 10001, at
# /etc/remitnet/tls (the Secret made by scripts/gen_hub_certs.sh; the
# Deployments mount it there too) and pass the database as REMITNET_DB_URL
# (default: SQLite in /tmp), e.g.
#   docker run -v "$PWD/hub-tls:/etc/remitnet/tls:ro" -e REMITNET_DB_URL=... IMAGE
# The Deployments replace these arguments (one service each, --no-migrate).
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9464", \
     "--health-port", "8081", \
     "--tls-cert", "/etc/remitnet/tls/tls.crt", \
     "--tls-key", "/etc/remitnet/tls/tls.key", \
     "--tls-client-ca", "/etc/remitnet/tls/client-ca.crt"]
