#!/usr/bin/env bash
# `make dist`: the versioned release artifact and the example configurations that load it.
#
#   envoy/dist.sh WASM OUT_DIR
#
# writes, for the version in Cargo.toml:
#   OUT_DIR/tokenguard-<version>.wasm          a copy of WASM (the release build)
#   OUT_DIR/tokenguard-<version>.wasm.sha256   its checksum, in `sha256sum -c` form
#   OUT_DIR/envoy-remote.yaml                  envoy/envoy-remote.yaml with that checksum
#   OUT_DIR/istio-wasmplugin.yaml              envoy/istio-wasmplugin.yaml (the OCI image)
#   OUT_DIR/envoy-gateway.yaml                 envoy/envoy-gateway.yaml (the OCI image)
# Run from anywhere; the tests run it into a scratch directory.
set -euo pipefail
die() { echo "dist: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: envoy/dist.sh WASM OUT_DIR"
wasm=$1 out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$wasm" ] || die "$wasm is missing (run 'make wasm')"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml"
name=tokenguard-$version.wasm
# The examples name the version; a version bump without them would ship stale URLs.
for f in envoy-remote.yaml istio-wasmplugin.yaml envoy-gateway.yaml; do
  grep -q -- "$version" "$root/envoy/$f" || die "envoy/$f does not name version $version"
done

mkdir -p "$out"
cp "$wasm" "$out/$name.tmp" && chmod 644 "$out/$name.tmp" && mv "$out/$name.tmp" "$out/$name"
sum=$(cd "$out" && sha256sum "$name")
echo "$sum" >"$out/$name.sha256"
sha=${sum%% *}

placeholder='"<sha256 of the .wasm: make dist fills it in>"'
grep -qF -- "$placeholder" "$root/envoy/envoy-remote.yaml" || die "envoy/envoy-remote.yaml has no sha256 placeholder"
sed "s|$placeholder|\"$sha\"|" "$root/envoy/envoy-remote.yaml" >"$out/envoy-remote.yaml"
cp "$root/envoy/istio-wasmplugin.yaml" "$root/envoy/envoy-gateway.yaml" "$out/"

echo "dist: $out/$name ($(stat -c %s "$out/$name") bytes, sha256 $sha)"
