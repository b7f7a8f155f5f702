# syntax=docker/dockerfile:1
# The gpufinops operator image: `docker build -t gpufinops .`
#
# Two stages: `build` resolves nothing (every dependency is pinned in
# requirements.lock, made by hack/lock-requirements.sh from pyproject.toml)
# and installs wheels into a virtualenv; the final stage copies only that
# virtualenv onto a fresh slim Python and runs as an unprivileged user.
# The base, pinned by digest (the multi-platform index of python:3.11.10-slim-bookworm):
# a tag moves, a digest does not. Refresh it with
#   docker buildx imagetools inspect python:3.11-slim-bookworm
# Where no base image can be pulled, `make image` builds the same image from
# Debian's packages instead (hack/build-image.sh).
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/gpufinops
# Dependencies first, so code changes reuse this layer. Binary wheels only:
# nothing is compiled, so the image needs no compiler at any stage.
COPY requirements.lock ./
RUN /opt/gpufinops/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock
# The operator itself, built with a pinned build backend.
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
RUN /opt/gpufinops/bin/pip install --only-binary=:all: setuptools==84.2.1 wheel==0.48.0 packaging==26.4 \
 && /opt/gpufinops/bin/pip install --no-deps --no-build-isolation . \
 && /opt/gpufinops/bin/pip uninstall --yes setuptools wheel packaging pip \
 && /opt/gpufinops/bin/python -m compileall -q /opt/gpufinops

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gpufinops" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Kubernetes operator that keeps AI workloads fast and their GPU bill small." \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own packaging tools are not needed at run time.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 gpufinops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin gpufinops
COPY --from=build /opt/gpufinops /opt/gpufinops
ENV PATH=/opt/gpufinops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
# Kopf liveness endpoint and the operator's /metrics.
EXPOSE 8080 9100
ENTRYPOINT ["/opt/gpufinops/bin/gpufinops", "run"]
