# The example iris image for users with Docker (e.g. to load into kind): the
# runtime image + scikit-learn + the examples/iris bento, trained and built at
# image build time -- the same steps as `e2e/images/build iris`. Build from the
# repository root, after runtime.Dockerfile:
#
#   docker build -f e2e/images/iris.Dockerfile -t kubento.local/iris:v1 .
#
# (`cd examples/iris && python train.py && bentoml build && bentoml containerize iris`
# is BentoML's own way and gives an equivalent image.)
ARG RUNTIME_IMAGE=kubento.local/bentoml-runtime:0.1.0
FROM ${RUNTIME_IMAGE}

ARG SKLEARN_VERSION=1.6.1
ARG BENTO_VERSION=v1
USER root
COPY e2e/images/constraints.txt /tmp/constraints.txt
COPY examples/iris/service.py examples/iris/train.py examples/iris/bentofile.yaml /tmp/iris-src/
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt,required=false \
    set -eu; \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi; \
    pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt "scikit-learn==${SKLEARN_VERSION}"; \
    cd /tmp/iris-src; \
    BENTOML_HOME=/tmp/build-home python train.py; \
    BENTOML_HOME=/tmp/build-home bentoml build --version "${BENTO_VERSION}" .; \
    BENTOML_HOME=/tmp/build-home bentoml export "iris:${BENTO_VERSION}" /tmp/iris.bento; \
    bentoml import /tmp/iris.bento; \
    chown -R 1034:1034 /home/bentoml; \
    cd /; rm -rf /tmp/iris-src /tmp/build-home /tmp/iris.bento /tmp/constraints.txt; \
    find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +; \
    python3 -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib >/dev/null || true

USER 1034:1034
WORKDIR /home/bentoml
EXPOSE 3000
# the store holds this one bento
CMD ["bentoml", "serve", "iris:latest"]
