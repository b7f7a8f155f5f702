#!/usr/bin/env bash
# Build the operator image without a Docker engine and without pulling a base image:
# the base is Debian bookworm made by debootstrap (its Python 3.11 from Debian's
# packages), the operator goes into a virtualenv from requirements.lock exactly
# (pip --require-hashes, binary wheels only), and buildah (vfs storage, as root)
# commits the root filesystem as an OCI image with the Dockerfile's configuration:
# non-root uid 10001, `gpufinops run` as entrypoint, ports 8080 and 9100.
# The Dockerfile stays the recipe for machines with a registry to pull from.
#
# Output in $IMAGE_DIR (default build/image):
#   rootfs/                       the image's root filesystem (tests run it with chroot)
#   gpufinops-<version>.oci.tar   the image as an OCI archive (`skopeo copy` or
#                                 `buildah push` it to a registry)
#   sbom.cdx.json                 CycloneDX SBOM of its Python packages
# The debootstrapped base is cached in ~/.cache/gpufinops/image.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" != 0 ]]; then
  echo "build-image: needs root (debootstrap, chroot, buildah with vfs storage)" >&2
  exit 2
fi
PYTHON="${PYTHON:-.venv/bin/python}"
OUT="$(realpath -m "${IMAGE_DIR:-build/image}")"
CACHE="${GPUFINOPS_CACHE:-$HOME/.cache/gpufinops}/image"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,tzdata
VERSION="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
IMAGE="gpufinops:$VERSION"
log() { echo "[build-image] $*" >&2; }

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v buildah >/dev/null || missing+=(buildah)
if (( ${#missing[@]} )); then
  log "installing ${missing[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

# 1. The base: Debian minbase with Python, made once and kept as a tarball.
base="$CACHE/$SUITE-minbase-$(echo "$PACKAGES" | sha256sum | cut -c1-12).tar"
if [[ ! -f "$base" ]]; then
  log "debootstrap $SUITE ($PACKAGES)"
  mkdir -p "$CACHE"
  scratch="$(mktemp -d)"
  chmod 755 "$scratch"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$scratch" "$MIRROR" >&2
  rm -rf "$scratch"/var/cache/apt/archives/*.deb "$scratch"/var/lib/apt/lists/*
  tar -C "$scratch" -cf "$base.tmp" . && mv "$base.tmp" "$base"
  rm -rf "$scratch"
fi

# 2. The root filesystem: the base, the locked dependencies, the operator's wheel.
rm -rf "$OUT/rootfs" "$OUT/wheel"
mkdir -p "$OUT/rootfs" "$OUT/wheel"
tar -C "$OUT/rootfs" -xf "$base"
chmod 755 "$OUT/rootfs"  # the root of a filesystem: everyone may enter it
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT/wheel" . >&2
mkdir -p "$OUT/rootfs/tmp/build"
cp requirements.lock "$OUT"/wheel/*.whl "$OUT/rootfs/tmp/build/"
cp /etc/resolv.conf "$OUT/rootfs/etc/resolv.conf"
# The build machine's trust store (it may reach PyPI through a proxy of its own CA)
# is used for the downloads only, and removed with the rest of /tmp/build.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$OUT/rootfs/tmp/build/ca.crt"
log "installing requirements.lock and $(basename "$OUT"/wheel/*.whl) into /opt/gpufinops"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root \
  PIP_CERT=/tmp/build/ca.crt PIP_DEFAULT_TIMEOUT=180 \
  chroot "$OUT/rootfs" /bin/sh -eu >&2 <<'SH'
python3 -m venv /opt/gpufinops
/opt/gpufinops/bin/pip install --quiet --disable-pip-version-check --no-cache-dir \
  --require-hashes --only-binary=:all: --no-deps -r /tmp/build/requirements.lock
/opt/gpufinops/bin/pip install --quiet --disable-pip-version-check --no-cache-dir \
  --no-deps /tmp/build/gpufinops-*.whl
/opt/gpufinops/bin/pip uninstall --quiet --yes pip setuptools
/opt/gpufinops/bin/python -m compileall -q /opt/gpufinops
groupadd --system --gid 10001 gpufinops
useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
  --shell /usr/sbin/nologin gpufinops
rm -rf /tmp/build /var/cache/apt/* /var/lib/apt/lists/*
SH
: > "$OUT/rootfs/etc/resolv.conf"
chmod 1777 "$OUT/rootfs/tmp"

# 3. The image, configured as the Dockerfile's final stage.
log "committing $IMAGE with buildah (vfs storage)"
B=(buildah --storage-driver vfs)
ctr="$("${B[@]}" from scratch)"
trap '"${B[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
"${B[@]}" copy --quiet "$ctr" "$OUT/rootfs/" / >/dev/null
"${B[@]}" config \
  --entrypoint '["/opt/gpufinops/bin/gpufinops", "run"]' \
  --user 10001:10001 \
  --env PATH=/opt/gpufinops/bin:/usr/local/bin:/usr/bin:/bin \
  --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 --env HOME=/tmp \
  --port 8080/tcp --port 9100/tcp \
  --label org.opencontainers.image.title=gpufinops \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label org.opencontainers.image.description="Kubernetes operator that keeps AI workloads fast and their GPU bill small." \
  "$ctr"
"${B[@]}" commit --quiet --format oci "$ctr" "$IMAGE" >/dev/null
# The previous build of this tag is now untagged: drop it (about 650 MB each).
"${B[@]}" rmi --prune >/dev/null 2>&1 || true
rm -f "$OUT/gpufinops-$VERSION.oci.tar"
"${B[@]}" push --quiet "$IMAGE" "oci-archive:$OUT/gpufinops-$VERSION.oci.tar:$IMAGE" >&2
"$PYTHON" hack/sbom.py requirements.lock > "$OUT/sbom.cdx.json"
log "built $IMAGE: $OUT/gpufinops-$VERSION.oci.tar ($(du -h "$OUT/gpufinops-$VERSION.oci.tar" | cut -f1)), rootfs in $OUT/rootfs"
echo "$OUT"
