# The kubento operator image, for users with Docker: the same contents as
# `e2e/images/build operator` (which builds it without Docker). Build and push
# it with the runtime image: `make release-images REGISTRY=... TAG=...`
# (hack/release-images.sh), or by hand from the repository root (BuildKit:
# `docker buildx build`, or `docker build` with Docker >= 23, or
# DOCKER_BUILDKIT=1 before that):
#
#   docker buildx build -f e2e/images/operator.Dockerfile -t $REGISTRY/kubento-operator:$TAG --push .
#
# No `# syntax=` line: BuildKit's built-in Dockerfile frontend is enough
# (RUN --mount=type=secret), and one would be pulled from Docker Hub.
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (it is
# not kept in the image):  --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/nonroot

COPY e2e/images/constraints.txt /tmp/constraints.txt
COPY pyproject.toml README.md /tmp/src/
COPY operator /tmp/src/operator
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt,required=false \
    set -eu; \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt \
        "pip==25.1.1"; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt /tmp/src; \
    find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +; \
    python3 -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib >/dev/null || true; \
    groupadd -g 65532 nonroot; \
    useradd -u 65532 -g 65532 -d /home/nonroot -m -s /bin/sh nonroot; \
    rm -rf /tmp/src /tmp/constraints.txt

USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["kubento"]
CMD ["run", "--all-namespaces"]
