#!/usr/bin/env bash
# `make compose-down`: stops and removes the compose stack (containers and network).
set -euo pipefail
cd "$(dirname "$0")/../.."
. envoy/compose/common.sh
require_docker
compose down -v --remove-orphans
