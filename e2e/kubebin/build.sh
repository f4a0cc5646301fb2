#!/usr/bin/env bash
# Builds kubento-kube (etcd + Kubernetes server components + kubectl, one
# binary) from the pinned k8s.io/kubernetes module, caches it outside the repo
# keyed by the sources' hash, and prints its path. A cached build is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KUBENTO_CACHE:-$HOME/.cache/kubento}/kube"
version="$(cat "$here/VERSION")"
key="$version-$(cat "$here"/go.mod "$here"/go.sum "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-12)"
bin="$cache/$key/kubento-kube"
if [[ ! -x "$bin" ]]; then
  mkdir -p "$cache/$key"
  # Two checkouts (or a CI clone beside a worktree) share the cache: one builds, the other waits for it.
  exec 8>"$cache/$key.lock"
  flock -n 8 || { echo "build.sh: waiting for another build of $bin" >&2; flock 8; }
fi
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "build.sh: Go is needed to build the Kubernetes binaries" >&2; exit 1; }
  echo "building Kubernetes $(cat "$here/VERSION") components into $bin (first time: ~10-20 min on 2 cores)..." >&2
  start=$SECONDS
  minor="${version#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  # Stamp the version the components report (Helm's kubeVersion checks read it).
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin.tmp.$$" .)
  mv "$bin.tmp.$$" "$bin"
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
