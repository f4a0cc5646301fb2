#!/usr/bin/env bash
# Builds CoreDNS from its Go module (github.com/coredns/coredns at the version
# in VERSION; no image, no binary download), caches it outside the repo in
# ${KUBENTO_CACHE:-~/.cache/kubento}/coredns/<version>-<hash>/, and prints its
# path. A cached build is reused. Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KUBENTO_CACHE:-$HOME/.cache/kubento}/coredns"
version="$(cat "$here/VERSION")"
key="$version-$(cat "$here/VERSION" "$here/build.sh" | sha256sum | cut -c1-12)"
bin="$cache/$key/coredns"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "coredns/build.sh: Go is needed to build CoreDNS" >&2; exit 1; }
  echo "building CoreDNS $version into $bin (first time: about 4 minutes on 2 cores)..." >&2
  start=$SECONDS
  tmp="$cache/$key/tmp.$$"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$version" >&2
  mv "$tmp/coredns" "$bin"
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
