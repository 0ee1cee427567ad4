#!/usr/bin/env bash
# `make run`: the demo issuer, the upstream and Envoy with tokenguard, on loopback, using
# exactly envoy/envoy.yaml. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/../.."

ENVOY=${ENVOY_BIN:-.venv/bin/envoy}
mkdir -p .run
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for port in 9101 9102 10000 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: stop whatever runs there (an earlier 'make run'?)" >&2
    exit 1
  fi
done

target/release/tg-issuer serve --listen 127.0.0.1:9101 --keys envoy/demo/issuer-keys.json 2>.run/issuer.log &
pids+=($!)
target/release/tg-upstream --listen 127.0.0.1:9102 2>.run/upstream.log &
pids+=($!)
"$ENVOY" -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart 2>.run/envoy.log &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  if ! kill -0 "${pids[2]}" 2>/dev/null; then echo "Envoy exited; see .run/envoy.log" >&2; tail -20 .run/envoy.log >&2; exit 1; fi
  sleep 0.1
done

token=$(curl -fs 'http://127.0.0.1:9101/mint?alg=RS256&ttl=300&sub=alice')
login=$(curl -fs -X POST -d '{"sub":"bob","alg":"ES256","ttl":30}' http://127.0.0.1:9101/oauth/login)
short=$(printf '%s' "$login" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
refresh=$(printf '%s' "$login" | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p')
expired=$(curl -fs 'http://127.0.0.1:9101/mint?alg=ES256&ttl=-60&sub=alice')

cat <<MSG

tokenguard demo is running: Envoy on 127.0.0.1:10000 (admin 127.0.0.1:9901),
issuer on 127.0.0.1:9101, upstream on 127.0.0.1:9102. Logs in .run/.

A valid token (RS256, 5 minutes):
  curl -i -H 'Authorization: Bearer $token' http://127.0.0.1:10000/hello

An expired one (401 token_expired, and an audit line in .run/envoy.log):
  curl -i -H 'Authorization: Bearer $expired' http://127.0.0.1:10000/hello

No token at all (401 with a bare Bearer challenge):
  curl -i http://127.0.0.1:10000/hello

A 30 s token with its refresh token. From second 24 on (the last 20% of its life) the next
request is refreshed: the upstream gets a new token, and so do you (x-new-access-token,
x-new-refresh-token):
  curl -i -H 'Authorization: Bearer $short' -H 'x-refresh-token: $refresh' http://127.0.0.1:10000/hello

Revoke every token of alice issued so far (then the first curl line gets token_revoked):
  curl -s -X POST -H 'x-admin-token: demo-admin-token-change-me' 'http://127.0.0.1:10000/tokenguard/revoke?sub=alice'
Registry statistics:
  curl -s -H 'x-admin-token: demo-admin-token-change-me' http://127.0.0.1:10000/tokenguard/stats

Keys come from the issuer by OpenID discovery. Rotate its signing key (a new P-256 key under a
new kid; ES256 tokens are signed with it from then on), then send a token signed with it: it
is accepted at first sight (one refetch; see the keys_rotated audit line):
  curl -s -X POST -d '{"rotate_key":true}' http://127.0.0.1:9101/control; echo
  curl -i -H "Authorization: Bearer \$(curl -s 'http://127.0.0.1:9101/mint?alg=ES256&ttl=300&sub=alice')" http://127.0.0.1:10000/hello

Mint more:   curl -s 'http://127.0.0.1:9101/mint?alg=EdDSA&ttl=30&sub=bob'
Audit lines: grep 'audit {' .run/envoy.log
Counters:    curl -s http://127.0.0.1:9901/stats/prometheus | grep tokenguard

Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
