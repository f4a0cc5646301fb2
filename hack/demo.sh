#!/usr/bin/env bash
# `make demo`: a served prediction from a ModelDeployment on a local cluster.
#
#   make demo                       bring up e2e/cluster (a real single-node cluster, root)
#   make demo CLUSTER=current       use the current kubeconfig instead (e.g. kind; images are
#                                   loaded with KUBENTO_LOAD, default "kind load image-archive")
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${CLUSTER:-local}"
steps=8 step=0 current=""
logs="(see the output above)"

begin() { step=$((step + 1)); current="$1"; printf '\n\033[1m[%d/%d] %s\033[0m\n' "$step" "$steps" "$1"; }
fail() {
  local rc=$?
  printf '\n\033[31mdemo failed at step %d/%d: %s\033[0m\nlogs: %s\n' "$step" "$steps" "$current" "$logs" >&2
  exit "$rc"
}
trap fail ERR

begin "tools: Kubernetes components and Helm (built from Go modules, cached in ~/.cache/kubento)"
kube="$(e2e/kubebin/build.sh)"
helm="$(hack/helm.sh)"

if [[ "$mode" == local ]]; then
  begin "local cluster: etcd, apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy"
  e2e/cluster up >/dev/null
  export KUBECONFIG="$(e2e/cluster kubeconfig)"
  logs="$(e2e/cluster logs)"
else
  begin "cluster: current kubeconfig (${KUBECONFIG:-~/.kube/config})"
  "$kube" kubectl get nodes
fi
kubectl() { "$kube" kubectl "$@"; }

begin "images: operator and the iris example, built without Docker (first time: several minutes)"
mapfile -t archives < <(e2e/images/build operator iris)
for archive in "${archives[@]}"; do
  echo "loading $archive"
  if [[ "$mode" == local ]]; then e2e/cluster import "$archive"; else ${KUBENTO_LOAD:-kind load image-archive} "$archive"; fi
done
ref() { tar -xOf "$1" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])'; }
operator_ref="$(ref "${archives[0]}")"
iris_ref="$(ref "${archives[1]}")"

begin "helm install kubento ($operator_ref)"
"$helm" upgrade --install kubento charts/kubento --namespace kubento-system --create-namespace \
  --set image.repository="${operator_ref%:*}" --set image.tag="${operator_ref##*:}" --wait --timeout 5m
kubectl -n kubento-system get pods -o wide

begin "kubectl apply -f examples/iris/modeldeployment.yaml"
sed "s|image: kubento.local/iris:.*|image: $iris_ref|" examples/iris/modeldeployment.yaml | kubectl apply -f -

begin "waiting for the model to be Ready"
if ! kubectl wait --for=condition=Ready md/iris --timeout=300s; then
  kubectl describe md iris; false
fi

begin "a prediction through the Service"
ip="$(kubectl get service iris -o jsonpath='{.spec.clusterIP}')"
body='{"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
echo "POST http://$ip/classify $body"
answer=""
for _ in $(seq 30); do
  answer="$(curl -sf --max-time 10 -X POST "http://$ip/classify" -H 'content-type: application/json' -d "$body")" && break
  sleep 2
done
echo "=> $answer"
python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != ["setosa", "virginica"])' "$answer" ||
  { echo "unexpected prediction (expected setosa, virginica)" >&2; false; }

begin "kubectl get md"
kubectl get md -o wide
printf '\n\033[32mdone.\033[0m try: KUBECONFIG=%s kubectl describe md iris\n' "${KUBECONFIG:-~/.kube/config}"
