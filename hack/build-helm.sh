#!/usr/bin/env bash
# Build the helm CLI from its Go module (helm.sh/helm/v3, cmd/helm) and cache the
# binary by version, next to the local control plane's binaries.
#
# Usage: hack/build-helm.sh            # build if missing
# Prints the path of the helm binary on its last line.
set -euo pipefail

HELM_VERSION="${GPUFINOPS_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${GPUFINOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpufinops}"
BIN_DIR="$CACHE_ROOT/helm/helm-${HELM_VERSION}"
HELM="$BIN_DIR/helm"
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=mod"

log() { printf '[build-helm] %s\n' "$*" >&2; }

if [[ -x "$HELM" ]]; then
  log "helm cached in $HELM"
  echo "$HELM"
  exit 0
fi

command -v go >/dev/null || { log "go is required (Go >= 1.26)"; exit 1; }
mkdir -p "$BIN_DIR"

# One build at a time per cache: a second caller waits, then finds the binary.
if command -v flock >/dev/null; then
  exec 9>"$BIN_DIR.lock"
  flock 9
  if [[ -x "$HELM" ]]; then
    log "helm cached in $HELM"
    echo "$HELM"
    exit 0
  fi
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

start=$(date +%s)
log "building helm ${HELM_VERSION}"
# helm's own Makefile stamps its version and the Kubernetes version it assumes
# when no cluster is reachable (helm template, helm lint): client-go v0.Y.Z
# means Kubernetes 1.Y.
mod_file="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$mod_file")"
k8s_minor="$(echo "${client_go#v0.}" | cut -d. -f1)"
pkg="helm.sh/helm/v3"
ldflags="-s -w -X ${pkg}/internal/version.version=${HELM_VERSION} -X ${pkg}/internal/version.gitTreeState=clean"
if [[ -n "$k8s_minor" ]]; then
  for var in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X ${pkg}/${var}.k8sVersionMajor=1 -X ${pkg}/${var}.k8sVersionMinor=${k8s_minor}"
  done
fi
GOBIN="$WORK/gobin" go install -trimpath -ldflags "$ldflags" "${pkg}/cmd/helm@${HELM_VERSION}"
mv "$WORK/gobin/helm" "$HELM.tmp"
mv "$HELM.tmp" "$HELM"
log "built in $(( $(date +%s) - start ))s into $HELM"
echo "$HELM"
