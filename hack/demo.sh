#!/usr/bin/env bash
# `make demo`: a served prediction from a ModelDeployment on a local cluster.
#
#   make demo                       bring up e2e/cluster (a real single-node cluster, root)
#   make demo CLUSTER=current REGISTRY=...   your cluster (current kubeconfig) and registry: nothing
#                                   built but the example's bento (hack/demo-current.sh says what it needs)
#   make demo CLUSTER=kind          a kind cluster (e.g. e2e/kind/run's): images built here and loaded
#                                   with KUBENTO_LOAD, default "kind load image-archive --name
#                                   $KIND_CLUSTER_NAME" (KIND_CLUSTER_NAME defaults to kubento)
#
# The prediction goes through `kubectl port-forward` to the Service, so it works wherever
# kubectl does (kind does not route ClusterIPs to the host).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${CLUSTER:-local}"
if [[ "$mode" == current ]]; then exec hack/demo-current.sh; fi
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
# The quick start's `kubectl` (README.md): the cluster's own, beside the kubento CLI in .venv/bin
# (the Kubernetes binary is kubectl when called by that name).
ln -sf "$kube" .venv/bin/kubectl

if [[ "$mode" == local ]]; then
  begin "local cluster: etcd, apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy"
  e2e/cluster up >/dev/null
  export KUBECONFIG="$(e2e/cluster kubeconfig)"
  logs="$(e2e/cluster logs)"
else
  begin "cluster: kind, current kubeconfig (${KUBECONFIG:-~/.kube/config})"
  "$kube" kubectl get nodes
fi
kubectl() { "$kube" kubectl "$@"; }

begin "images: operator and the iris example, built without Docker (first time: several minutes)"
mapfile -t archives < <(e2e/images/build operator iris)
for archive in "${archives[@]}"; do
  echo "loading $archive"
  if [[ "$mode" == local ]]; then e2e/cluster import "$archive"
  else ${KUBENTO_LOAD:-kind load image-archive --name ${KIND_CLUSTER_NAME:-kubento}} "$archive"; fi
done
ref() { tar -xOf "$1" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])'; }
operator_ref="$(ref "${archives[0]}")"
iris_ref="$(ref "${archives[1]}")"

begin "helm install kubento ($operator_ref)"
"$helm" upgrade --install kubento charts/kubento --namespace kubento-system --create-namespace \
  --set image.registry="${operator_ref%/*}" --set image.tag="${operator_ref##*:}" --wait --timeout 5m
kubectl -n kubento-system get pods -o wide

begin "kubectl apply -f examples/iris/modeldeployment.yaml"
sed "s|image: kubento.local/iris:.*|image: $iris_ref|" examples/iris/modeldeployment.yaml | kubectl apply -f -

begin "waiting for the model to be Ready"
if ! kubectl wait --for=condition=Ready md/iris --timeout=300s; then
  kubectl describe md iris; false
fi

begin "a prediction through the Service (kubectl port-forward svc/iris)"
pf_log="$(mktemp)"
"$kube" kubectl port-forward svc/iris :80 >"$pf_log" 2>&1 &  # not the function: $! must be kubectl itself
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
body='{"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
echo "POST http://127.0.0.1:$port/classify $body"
answer=""
for _ in $(seq 30); do
  answer="$(curl -sf --max-time 10 -X POST "http://127.0.0.1:$port/classify" -H 'content-type: application/json' -d "$body")" && break
  sleep 2
done
echo "=> $answer"
python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != ["setosa", "virginica"])' "$answer" ||
  { echo "unexpected prediction (expected setosa, virginica)" >&2; false; }
stop_forward
trap - EXIT

begin "kubectl get md"
kubectl get md
kubeconfig="${KUBECONFIG:-$HOME/.kube/config}"
cat <<EOF

$(printf '\033[32mdone.\033[0m') Next (the quick start in README.md goes on from here):
  export KUBECONFIG=$kubeconfig PATH=\$PWD/.venv/bin:\$PATH
  kubectl describe md iris
  kubectl port-forward svc/iris 3000:80     # then http://localhost:3000 (BentoML's UI) or:
  curl -X POST localhost:3000/classify -H 'content-type: application/json' -d '$body'
  kubento history iris                      # the kubento CLI (also: kubectl kubento history iris)
EOF
if [[ "$mode" == local ]]; then echo "  make cluster-down                         # remove the cluster and everything it made"; fi
