#!/usr/bin/env bash
# Writes go.mod for kubento-kube: require k8s.io/kubernetes at the pinned
# version and replace each staging module (k8s.io/kubernetes' go.mod points
# them at ./staging) with its published v0.Y.Z twin.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION="$(cat VERSION)"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
{
  echo "module kubento.dev/kubebin"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes ${K8S_VERSION}"
  echo
  echo "replace ("
  grep -E '^\s+k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
printf 'package main\n\nconst kubernetesVersion = "%s"\n' "$K8S_VERSION" > version.go
go mod tidy
