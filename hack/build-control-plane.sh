#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from Go modules and cache the binaries by version.
#
# Why a wrapper module: k8s.io/kubernetes replaces its staging modules with
# relative paths, so `go install pkg@version` refuses it. A tiny module that
# requires k8s.io/kubernetes and replaces each staging module with its
# published v0.Y.Z builds the same commands from the module proxy.
#
# Usage: hack/build-control-plane.sh            # build what is missing
# Prints the directory holding the binaries on its last line.
set -euo pipefail

K8S_VERSION="${GPUFINOPS_K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${GPUFINOPS_ETCD_VERSION:-v3.7.3}"
KWOK_VERSION="${GPUFINOPS_KWOK_VERSION:-v0.8.0}"
CACHE_ROOT="${GPUFINOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpufinops}"
BIN_DIR="$CACHE_ROOT/controlplane/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=mod"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }

need() {
  local missing=0
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    [[ -x "$BIN_DIR/$b" ]] || missing=1
  done
  [[ -s "$BIN_DIR/kwok-stages-v3.yaml" ]] || missing=1
  return $((1 - missing))
}

if ! need; then
  log "binaries cached in $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { log "go is required (Go >= 1.26)"; exit 1; }
mkdir -p "$BIN_DIR"

# One build at a time per cache: a second caller waits, then finds the binaries.
if command -v flock >/dev/null; then
  exec 9>"$BIN_DIR.lock"
  flock 9
  if ! need; then
    log "binaries cached in $BIN_DIR"
    echo "$BIN_DIR"
    exit 0
  fi
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${K8S_VERSION#v1.}"

build_kubernetes() {
  local mod_file
  mod_file="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
  {
    echo "module gpufinops.dev/localcluster/kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    grep -E '^\s+k8s\.io/[^ ]+ => \./staging/' "$mod_file" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > go.mod
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    if [[ -x "$BIN_DIR/$cmd" ]]; then continue; fi
    log "building $cmd ${K8S_VERSION}"
    go get "k8s.io/kubernetes/cmd/${cmd}@${K8S_VERSION}" >/dev/null 2>&1 || go get "k8s.io/kubernetes/cmd/${cmd}@${K8S_VERSION}"
    go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/${cmd}"
    mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
  done
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && return
  log "building etcd ${ETCD_VERSION}"
  mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
  printf 'module gpufinops.dev/localcluster/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

build_kwok() {
  [[ -x "$BIN_DIR/kwok" ]] && return
  log "building kwok ${KWOK_VERSION}"
  GOBIN="$WORK/gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv "$WORK/gobin/kwok" "$BIN_DIR/kwok"
}

# A standalone kwok controller has no built-in stages; kwok's module ships them.
# Take them from the module as released, next to the binary: the "fast" set
# (nodes become Ready, pods Running), except that Job pods complete through the
# "general" stage, which honours the pod annotation
# pod-complete.stage.kwok.x-k8s.io/delay, so a test can keep a training pod
# running. Deleted pods are handled by our own stages (localcluster/
# kwok-stages.yaml): kwok picks one of several matching stages at random, so the
# fast pod-delete (which ignores finalizers) must not compete with them. (The
# file name carries a version so cached older sets are replaced.)
kwok_stages() {
  [[ -s "$BIN_DIR/kwok-stages-v3.yaml" ]] && return
  local dir
  dir="$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  local out="$BIN_DIR/kwok-stages-v3.yaml.tmp"
  : > "$out"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/general/pod-complete.yaml; do
    printf -- '---\n' >> "$out"
    cat "$dir/kustomize/stage/$f" >> "$out"
  done
  mv "$out" "$BIN_DIR/kwok-stages-v3.yaml"
}

start=$(date +%s)
build_etcd
build_kwok
kwok_stages
build_kubernetes
log "built in $(( $(date +%s) - start ))s into $BIN_DIR"
echo "$BIN_DIR"
