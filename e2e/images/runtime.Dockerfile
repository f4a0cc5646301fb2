# The BentoML runtime image, for users with Docker: the same contents as
# `e2e/images/build runtime` (which builds it without Docker, from a debootstrap
# rootfs). kubento runs imported .bento archives (bento.archive) and project
# builds (bento.build) in it, with its in-pod helper `python -m kubento.runtime`
# (only kubento/__init__.py and kubento/runtime/). It is tagged like the
# operator (the helper is part of the release). Build and push it with the
# operator: `make release-images REGISTRY=... TAG=...`, or by hand from the
# repository root (runtime.Dockerfile.dockerignore keeps the context small):
#
#   docker buildx build -f e2e/images/runtime.Dockerfile -t $REGISTRY/bentoml-runtime:$TAG --push .
#
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (it is
# not kept in the image):  --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG BENTOML_VERSION=1.4.39
ARG MINIO_VERSION=7.2.20
ARG DULWICH_VERSION=1.2.21
ARG ORAS_VERSION=0.2.43
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BENTOML_DO_NOT_TRACK=True \
    HOME=/home/bentoml \
    BENTOML_HOME=/home/bentoml/bentoml

COPY e2e/images/constraints.txt /tmp/constraints.txt
COPY operator/kubento/__init__.py /tmp/kubento/
COPY operator/kubento/runtime/*.py /tmp/kubento/runtime/
# uv too: `bentoml build` always runs it, and pip-installs it when missing.
# minio: the helper's S3 client (no botocore). dulwich: its git client, for a
# bento.build from git (Debian's git would add ~100 MB with perl and curl).
# oras: its OCI registry client (ORAS' Python SDK), for oci:// bentos.
# Test suites are dropped; byte-code is compiled ahead of time (the container's
# uid cannot write it, and serving starts ~3x faster with it).
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt,required=false \
    set -eu; \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt \
        "pip==25.1.1"; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt \
        "bentoml==${BENTOML_VERSION}" uv "minio==${MINIO_VERSION}" "dulwich==${DULWICH_VERSION}" \
        "oras==${ORAS_VERSION}"; \
    site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    install -d "$site/kubento/runtime"; \
    install -m 0644 /tmp/kubento/__init__.py "$site/kubento/"; \
    install -m 0644 /tmp/kubento/runtime/*.py "$site/kubento/runtime/"; \
    /opt/venv/bin/python -m kubento.runtime --help >/dev/null; \
    find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +; \
    python3 -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib >/dev/null || true; \
    groupadd -g 1034 bentoml; \
    useradd -u 1034 -g 1034 -d /home/bentoml -m -s /bin/sh bentoml; \
    install -d -o 1034 -g 1034 /home/bentoml/bentoml; \
    rm -rf /tmp/constraints.txt /tmp/kubento

USER 1034:1034
WORKDIR /home/bentoml
EXPOSE 3000
CMD ["bentoml", "--help"]
