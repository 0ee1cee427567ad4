#!/usr/bin/env bash
# `make compose-test`: builds the offline images, brings the compose stack up, runs the
# scenario suite (tg-scenarios, the suite `make test` runs locally) against the published
# ports, the fleet scenarios included (two Envoy replicas sharing revocations through etcd),
# keeps both Envoys' logs and their audit lines in .run/compose/, and takes the stack down
# whatever the outcome.
#
# No Docker engine is an error, never a silent pass; TOKENGUARD_SKIP_COMPOSE=1 skips this.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${TOKENGUARD_SKIP_COMPOSE:-0}" != 0 ]; then
  echo "compose-test: SKIPPED (TOKENGUARD_SKIP_COMPOSE=$TOKENGUARD_SKIP_COMPOSE): the compose harness did not run"
  exit 0
fi
. envoy/compose/common.sh
require_docker
require_free_ports
[ -x target/release/tg-scenarios ] || die "compose-test: target/release/tg-scenarios is missing (run it through 'make compose-test')"

OUT=.run/compose
mkdir -p "$OUT"

collect() {
  local service id
  for service in envoy envoy-b; do
    id=$(compose ps -q "$service" 2>/dev/null || true)
    if [ -n "$id" ]; then
      docker logs "$id" >"$OUT/$service.log" 2>&1 || true
    fi
  done
  compose logs --no-color >"$OUT/compose.log" 2>&1 || true
  cat "$OUT/envoy.log" "$OUT/envoy-b.log" 2>/dev/null | grep -h 'audit {' >"$OUT/audit.log" || true
  echo "compose-test: both Envoys' audit lines ($(wc -l <"$OUT/audit.log")) are in $OUT/audit.log; by event:"
  grep -o 'audit {"event":"[a-z_]*"' "$OUT/audit.log" | sed 's/.*"event":"//; s/"$//' | sort | uniq -c | sed 's/^/  /' || true
}

teardown() {
  # Ignored here and so in the commands below: a second Ctrl-C must not leave the stack up.
  trap '' INT TERM
  trap - EXIT
  collect
  compose down -v --remove-orphans >/dev/null 2>&1 || echo "compose-test: 'compose down' failed; see 'docker ps'" >&2
}
trap teardown EXIT
trap 'exit 130' INT TERM

run_suite() {
  compose up -d || return
  wait_ready
  target/release/tg-scenarios --envoy "$ENVOY_URL" --admin "$ADMIN_URL" --issuer "$ISSUER_URL" \
    --upstream "$UPSTREAM_URL" --envoy-container "$(compose ps -q envoy)" \
    --envoy-b "$ENVOY_B_URL" --admin-b "$ADMIN_B_URL" --etcd "$ETCD_URL" \
    --envoy-b-container "$(compose ps -q envoy-b)"
}

echo "compose-test: Envoy image $ENVOY_IMAGE, harness image $HARNESS_IMAGE, etcd image $ETCD_IMAGE"
TIMEFORMAT='compose-test: image build took %R s'
time envoy/compose/build-images.sh

TIMEFORMAT='compose-test: stack up and scenario suite took %R s'
set +e
time run_suite
status=$?
set -e
if [ "$status" -eq 0 ]; then
  echo "compose-test: PASSED"
else
  echo "compose-test: FAILED (exit $status); Envoy's log is in $OUT/envoy.log" >&2
fi
exit "$status"
