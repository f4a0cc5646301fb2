#!/usr/bin/env bash
# Builds kubento's two images with the Dockerfiles users get and pushes them to
# a registry, both under one tag:
#
#   REGISTRY/kubento-operator:TAG   e2e/images/operator.Dockerfile
#   REGISTRY/bentoml-runtime:TAG    e2e/images/runtime.Dockerfile (the operator's default runtime image)
#
#   hack/release-images.sh REGISTRY [TAG]        (make release-images REGISTRY=... [TAG=...])
#
# TAG defaults to the version in pyproject.toml (the chart's appVersion). Then
# install with `--set image.registry=REGISTRY --set image.tag=TAG` (Helm), or
# render an install.yaml for them (make install-yaml REGISTRY=... TAG=...).
# With `docker buildx` (Docker Desktop, docker-ce's buildx plugin) it runs
# `docker buildx build --push`; without it (Debian's docker.io has no buildx),
# `docker build` with BuildKit, then `docker push`. Prints one line per image:
# REGISTRY/NAME:TAG@sha256:<digest of what the registry holds>.
#
# Settings (environment):
#   IMAGES      the images to build and push (default: "operator runtime")
#   PLATFORMS   e.g. linux/amd64,linux/arm64 (docker buildx only)
#   BASE_IMAGE  the Dockerfiles' FROM (default: theirs, python:3.11-slim-bookworm)
#   CA_BUNDLE   a CA bundle for pip inside the build, behind a TLS-intercepting
#               proxy: passed as a BuildKit secret, never kept in the images
#   DOCKER      the docker CLI (default: docker)
set -euo pipefail
cd "$(dirname "$0")/.."
registry="${1:?usage: hack/release-images.sh REGISTRY [TAG]}"
tag="${2:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)}"
docker="${DOCKER:-docker}"
read -r -a images <<<"${IMAGES:-operator runtime}"
say() { echo "release-images: $*" >&2; }

registry="${registry%/}"
args=()
[[ -n ${BASE_IMAGE:-} ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[[ -n ${CA_BUNDLE:-} ]] && args+=(--secret "id=ca,src=$CA_BUNDLE")
buildx=0
if "$docker" buildx version >/dev/null 2>&1; then
  buildx=1
  [[ -n ${PLATFORMS:-} ]] && args+=(--platform "$PLATFORMS")
elif [[ -n ${PLATFORMS:-} ]]; then
  say "PLATFORMS needs docker buildx ($docker has none)"; exit 2
fi

for image in "${images[@]}"; do
  case $image in
    operator) name=kubento-operator ;;
    runtime) name=bentoml-runtime ;;
    *) say "unknown image: $image (operator, runtime)"; exit 2 ;;
  esac
  ref="$registry/$name:$tag"
  start=$SECONDS
  if ((buildx)); then
    meta=$(mktemp)
    say "docker buildx build -f e2e/images/$image.Dockerfile -t $ref --push ."
    "$docker" buildx build -f "e2e/images/$image.Dockerfile" "${args[@]}" -t "$ref" --push \
      --metadata-file "$meta" . >&2
    digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$meta")
    rm -f "$meta"
  else
    say "docker build -f e2e/images/$image.Dockerfile -t $ref . (BuildKit; no docker buildx here), then docker push"
    DOCKER_BUILDKIT=1 "$docker" build -f "e2e/images/$image.Dockerfile" "${args[@]}" -t "$ref" . >&2
    "$docker" push "$ref" >&2
    digest=$("$docker" image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" |
      sed -n "s|^$registry/$name@||p" | head -1)
  fi
  [[ $digest == sha256:* ]] || { say "no digest for $ref after the push"; exit 1; }
  say "$ref pushed in $((SECONDS - start))s"
  echo "$ref@$digest"
done
