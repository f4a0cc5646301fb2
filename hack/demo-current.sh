#!/usr/bin/env bash
# `make demo CLUSTER=current REGISTRY=registry.example.com/ml [TAG=0.1.0]`: the demo on your own
# cluster (the current kubeconfig context). Nothing is built here but the example's bento: no
# Kubernetes, no images, no Go. It needs:
#   - kubectl working against the cluster; Helm if you have it (otherwise kubectl apply --server-side -k,
#     over dist/kustomization.yaml);
#   - kubento's two images in REGISTRY, tagged TAG (default: kubento's version): `make release-images
#     REGISTRY=... TAG=...` builds and pushes them (Docker), and the nodes must be able to pull them;
#   - a registry for the example's bento that the cluster reaches: BENTO_REGISTRY, default
#     oci://$REGISTRY; your `docker login` credentials for it on this machine and, if it is private, a
#     docker-registry Secret in the current namespace named by PULL_SECRET (the pods fetch with it);
#   - this checkout's .venv (make venv): the kubento CLI and BentoML.
# It serves examples/sentiment (the project of docs/models/deploy.md) with `kubento deploy` and sends a
# prediction through `kubectl port-forward`.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REGISTRY:?make demo CLUSTER=current needs REGISTRY=... (the registry that make release-images pushed the kubento images to)}"
tag="${TAG:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)}"
bento_registry="${BENTO_REGISTRY:-oci://$REGISTRY}"
steps=5 step=0 current=""
begin() { step=$((step + 1)); current="$1"; printf '\n\033[1m[%d/%d] %s\033[0m\n' "$step" "$steps" "$1"; }
fail() {
  local rc=$?
  printf '\n\033[31mdemo failed at step %d/%d: %s\033[0m\n' "$step" "$steps" "$current" >&2
  exit "$rc"
}
trap fail ERR
command -v kubectl >/dev/null || { echo "make demo CLUSTER=current: kubectl is needed on PATH" >&2; exit 1; }

begin "your cluster: current kubeconfig context $(kubectl config current-context)"
kubectl get nodes

begin "install kubento ($REGISTRY/kubento-operator:$tag)"
if command -v helm >/dev/null; then
  helm upgrade --install kubento charts/kubento --namespace kubento-system --create-namespace \
    --set image.registry="$REGISTRY" --set image.tag="$tag" --wait --timeout 5m
else
  overlay=.demo-install  # kustomize reads bases by relative path only (git-ignored)
  mkdir -p "$overlay"
  cat >"$overlay/kustomization.yaml" <<YAML
resources:
- ../dist
images:
- name: kubento.local/kubento-operator
  newName: $REGISTRY/kubento-operator
  newTag: "$tag"
patches:
- patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: kubento, namespace: kubento-system}
    spec:
      template:
        spec:
          containers:
          - name: operator
            env:
            - {name: KUBENTO_RUNTIME_IMAGE, value: "$REGISTRY/bentoml-runtime:$tag"}
YAML
  kubectl apply --server-side -k "$overlay"
  kubectl -n kubento-system rollout status deployment/kubento --timeout 5m
fi

begin "kubento deploy examples/sentiment --registry $bento_registry"
.venv/bin/kubento deploy examples/sentiment --registry "$bento_registry" ${PULL_SECRET:+--pull-secret "$PULL_SECRET"}

begin "a prediction through the Service (kubectl port-forward svc/sentiment)"
pf_log="$(mktemp)"
kubectl port-forward svc/sentiment :80 >"$pf_log" 2>&1 &
pf=$!
stop_forward() { kill "$pf" 2>/dev/null || true; wait "$pf" 2>/dev/null || true; rm -f "$pf_log"; }
trap stop_forward EXIT
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$pf_log" | head -1)"
  [[ -n "$port" ]] && break
  kill -0 "$pf" 2>/dev/null || { cat "$pf_log" >&2; false; }
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$pf_log" >&2; false; }
body='{"texts": ["I love it", "what an awful day"]}'
echo "POST http://127.0.0.1:$port/classify $body"
answer=""
for _ in $(seq 30); do
  answer="$(curl -sf --max-time 10 -X POST "http://127.0.0.1:$port/classify" -H 'content-type: application/json' -d "$body")" && break
  sleep 2
done
echo "=> $answer"
[[ "$answer" == '["positive", "negative"]' ]] || { echo "unexpected prediction (expected positive, negative)" >&2; false; }
stop_forward
trap - EXIT

begin "kubectl get md"
kubectl get md
cat <<EOF2

$(printf '\033[32mdone.\033[0m') Next: docs/models/deploy.md goes on from here (an edit, a canary, kubento promote):
  kubento status sentiment
  kubento deploy examples/sentiment --strategy Canary   # after an edit
  kubectl delete md sentiment                           # remove the model
EOF2
