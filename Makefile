# kubento — `make test` runs every tier on a fresh machine; `make help` lists targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
CLUSTER ?= local

.PHONY: demo docs docs-build reference help test chaos test-kind test-kind-smoke bench bench-scale unit chart integration e2e cluster-up cluster-down images release-images deps venv kube helm prometheus gateway install-yaml crds crds-check controlplane-up controlplane-down clean

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# CLUSTER=current: your cluster and registry, nothing built but the bento (no Go, no Kubernetes, no images).
DEMO_DEPS = $(if $(filter current,$(CLUSTER)),venv,deps kube helm venv)
demo: $(DEMO_DEPS)  ## a served prediction on a local cluster (CLUSTER=current REGISTRY=...: your cluster and registry); leaves .venv/bin/kubento
	CLUSTER=$(CLUSTER) REGISTRY=$(REGISTRY) TAG=$(TAG) hack/demo.sh

docs: venv  ## serve the documentation site on http://localhost:8000 (mkdocs, docs/)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-build: venv reference  ## build the documentation site into site/ (mkdocs build --strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

reference: venv  ## regenerate docs/reference/ from the CRD and the CLI's --help
	$(PY) hack/gen-reference.py

test: deps venv kube helm prometheus  ## every tier: unit, chart, integration (real kube-apiserver), e2e (real node; root), a short chaos run, then a kind smoke
	$(PYTEST) tests e2e --ignore=e2e/chaos
	$(MAKE) chaos-short
	$(MAKE) test-kind-smoke

# kind: the node image is built here (no registry needed); KIND_ARGS= uses the
# public kindest/node image of e2e/kind/cluster.yaml instead (when it can be pulled).
KIND_ARGS ?= --build-node-image
# The kind smoke in `make test`: install by Helm, a prediction through the
# Service, a rollback under traffic with no failed request, HPA autoscaling
# (metrics-server on kind), a canary's weights through Traefik running in the
# cluster (Gateway API; its image built here), a two-service bento as two
# Deployments rolled out under traffic (kind's own CoreDNS).
KIND_SMOKE ?= e2e/test_e2e.py::test_example_serves_correct_predictions_through_the_service \
	e2e/test_rollout.py::test_a_revision_crashing_at_start_is_rolled_back_without_a_failed_request \
	e2e/test_autoscaling.py::test_hpa_on_cpu_scales_up_under_cpu_load \
	e2e/test_gateway_routes.py::test_traefik_canary_shares_held_steps \
	e2e/test_graph.py::test_two_services_run_apart_the_dependency_answers_only_its_model_and_a_new_revision_moves_both

test-kind: deps venv kube helm  ## the whole e2e suite on a kind cluster (Docker + kind started/built here; root)
	e2e/kind/run $(KIND_ARGS)

test-kind-smoke: deps venv kube helm  ## the kind smoke of `make test` (cluster made and deleted)
	e2e/kind/run $(KIND_ARGS) $(KIND_SMOKE)

e2e: deps venv kube helm prometheus  ## e2e only: local cluster, images, helm install, real BentoML pods
	$(PYTEST) e2e --ignore=e2e/chaos

# The chaos tier's shortest honest form, in `make test`: two replicas, the
# leader SIGKILLed once and SIGTERMed once while 20 models churn (~70 s).
chaos-short: deps venv kube helm  ## two replicas, leader killed and stopped under a churn of 20 models (part of make test)
	KUBENTO_CHAOS_MODELS=20 KUBENTO_CHAOS_TAKEOVERS=2 $(PYTEST) e2e/chaos/test_takeover.py -s -p no:logging

chaos: deps venv kube helm  ## chaos tier: operators SIGKILLed/SIGTERMed, API server restarted and cut off under a churn of 100 models (figures)
	$(PYTEST) e2e/chaos -s -p no:logging

bench: deps venv kube helm  ## benchmarks on the local cluster (print figures: apply -> Ready per bento source, rollback time, autoscaling, what a Gateway costs; PNG in bench/out)
	$(PY) -m pip install -q -e '.[test,bench]' -c e2e/images/constraints.txt
	$(PYTEST) bench -s -p no:logging

SCALE_N ?= 100 1000 3000
bench-scale: deps venv kube helm  ## scale bench: 100, 1,000 and 3,000 ModelDeployments on a real control plane (figures, ~25 min; SCALE_N="10000" for ten thousand, ~30 min more)
	$(PY) -m bench.scale --n $(SCALE_N)

unit: deps venv  ## unit tests only (no cluster, seconds; promtool checks the alert rules)
	$(PYTEST) tests/unit

chart: venv helm  ## helm lint/template tests and dist/install.yaml sync
	$(PYTEST) tests/chart

integration: deps venv kube helm  ## integration tier against a real kube-apiserver + etcd + controller-manager
	$(PYTEST) tests/integration

deps:  ## Debian packages and toolchain checks
	@hack/install-deps.sh

venv: $(VENV)/.installed  ## Python virtualenv with kubento and test dependencies

$(VENV)/.installed: pyproject.toml e2e/images/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -c e2e/images/constraints.txt
	@touch $@

kube:  ## build (or reuse from ~/.cache/kubento) the Kubernetes components and metrics-server
	@e2e/kubebin/build.sh >/dev/null
	@e2e/metrics-server/build.sh >/dev/null

helm:  ## build (or reuse from ~/.cache/kubento) Helm from its Go module
	@hack/helm.sh >/dev/null

crds: venv  ## regenerate crds/ and charts/kubento/crds from operator/kubento/api
	$(VENV)/bin/kubento crds --dir crds --dir charts/kubento/crds

gateway:  ## build (or reuse from ~/.cache/kubento) the e2e tier's Gateway API data planes: Envoy Gateway, Envoy, Traefik, CRDs
	@for part in envoy-gateway envoy traefik crds; do e2e/gateway/build.sh $$part >/dev/null || exit 1; done

prometheus:  ## build (or reuse from ~/.cache/kubento) Prometheus with Kubernetes discovery for the e2e tier
	@hack/prometheus.sh >/dev/null

install-yaml: helm  ## regenerate dist/install.yaml and dist/kubento-rules.yaml from the chart (REGISTRY=, TAG=: your images)
	hack/render-install.sh

crds-check: venv  ## fail if crds/ is out of date
	$(VENV)/bin/kubento crds --check --dir crds --dir charts/kubento/crds

cluster-up: deps kube  ## start the local single-node cluster (e2e/cluster; root)
	e2e/cluster up

cluster-down:  ## stop it and remove everything it made
	e2e/cluster down

images:  ## build the operator, runtime, iris and crashing images for the tests (no Docker; cached)
	e2e/images/build all

release-images:  ## build and push the operator and runtime images with Docker: REGISTRY=registry.example.com/ml [TAG=<version>]
	@test -n "$(REGISTRY)" || { echo "make release-images: set REGISTRY, e.g. make release-images REGISTRY=registry.example.com/ml TAG=0.1.0" >&2; exit 2; }
	hack/release-images.sh "$(REGISTRY)" $(TAG)

controlplane-up: kube  ## start etcd + kube-apiserver + controller-manager (e2e/controlplane)
	e2e/controlplane up

controlplane-down:  ## stop them
	e2e/controlplane down

clean:  ## remove the virtualenv (the Go build cache in ~/.cache/kubento stays)
	rm -rf $(VENV) .pytest_cache .hypothesis
