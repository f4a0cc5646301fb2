#!/usr/bin/env bash
# Builds Helm from its Go module (no binary downloads here), caches it in
# ~/.cache/kubento/helm/<version>/helm, and prints the path.
set -euo pipefail
version="${HELM_VERSION:-v3.19.5}"
bin="${KUBENTO_CACHE:-$HOME/.cache/kubento}/helm/$version/helm"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "helm.sh: Go is needed to build Helm" >&2; exit 1; }
  echo "building Helm $version into $bin (first time: a few minutes)..." >&2
  start=$SECONDS
  GOBIN="$(dirname "$bin")" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version" >&2
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
