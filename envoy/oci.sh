#!/usr/bin/env bash
# `make oci`: the image tokenguard-wasm:<version> from dist/tokenguard-<version>.wasm, built
# offline by the local Docker engine (FROM scratch: nothing is pulled), and its digest.
# No Docker engine is an error, never a silent pass.
set -euo pipefail
cd "$(dirname "$0")/.."
. envoy/compose/common.sh
require_docker

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
wasm=dist/tokenguard-$version.wasm
[ -f "$wasm" ] || die "oci: $wasm is missing (run 'make dist')"
image=tokenguard-wasm:$version

ctx=target/oci
rm -rf "$ctx" && mkdir -p "$ctx"
cp "$wasm" "$ctx/plugin.wasm"
docker build --quiet -t "$image" -f envoy/oci.Dockerfile "$ctx" >/dev/null
id=$(docker image inspect --format '{{.Id}}' "$image")
layers=$(docker image inspect --format '{{len .RootFS.Layers}}' "$image")
[ "$layers" = 1 ] || die "oci: $image has $layers layers, expected 1"
echo "oci: $image: one layer holding plugin.wasm ($(stat -c %s "$wasm") bytes)"
# The image ID is its config's digest, the same wherever the image goes; a registry reports
# its own manifest digest on push, which is what to pin in a WasmPlugin or EnvoyExtensionPolicy.
echo "oci: digest $id"
echo "oci: push it with: docker tag $image REGISTRY/$image && docker push REGISTRY/$image"
