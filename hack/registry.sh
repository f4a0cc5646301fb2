#!/usr/bin/env bash
# Builds the CNCF Distribution registry (the `registry` image's binary) from its
# Go module (no binary downloads here), caches it in
# ~/.cache/kubento/registry/<version>/registry, and prints the path. The e2e
# release test pushes kubento's images to it and the local cluster pulls them.
set -euo pipefail
version="${REGISTRY_VERSION:-v3.1.2}"
bin="${KUBENTO_CACHE:-$HOME/.cache/kubento}/registry/$version/registry"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "registry.sh: Go is needed to build the registry" >&2; exit 1; }
  echo "building the registry $version into $bin (first time: about a minute)..." >&2
  start=$SECONDS
  tmp="$(dirname "$bin").tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" \
    "github.com/distribution/distribution/v3/cmd/registry@$version" >&2
  rm -rf "$(dirname "$bin")"; mv "$tmp" "$(dirname "$bin")"
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
