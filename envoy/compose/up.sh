#!/usr/bin/env bash
# `make compose-up`: the compose stack in the background, to try by hand, like `make run`.
# `make compose-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
. envoy/compose/common.sh
require_docker
require_free_ports

compose up -d
wait_ready

token=$(curl -fs "$ISSUER_URL/mint?alg=RS256&ttl=300&sub=alice")
expired=$(curl -fs "$ISSUER_URL/mint?alg=ES256&ttl=-60&sub=alice")
envoy=$(docker inspect --format '{{.Name}}' "$(compose ps -q envoy)")
envoy=${envoy#/}

cat <<MSG

tokenguard compose stack is up ($ENVOY_IMAGE): Envoy on 127.0.0.1:18000 (admin 127.0.0.1:18901),
a second replica on 127.0.0.1:18001 (admin 127.0.0.1:18902), etcd (their revocation store)
on 127.0.0.1:18379, issuer on 127.0.0.1:18101, upstream on 127.0.0.1:18102.

A valid token (RS256, 5 minutes):
  curl -i -H 'Authorization: Bearer $token' $ENVOY_URL/hello

An expired one (401 token_expired, and an audit line in Envoy's log):
  curl -i -H 'Authorization: Bearer $expired' $ENVOY_URL/hello

No token at all (401 with a bare Bearer challenge):
  curl -i $ENVOY_URL/hello

Revoke every token of alice issued so far (then the first curl line gets token_revoked, on
both replicas: the admin API writes the revocation through to etcd):
  curl -s -X POST -H 'x-admin-token: demo-admin-token-change-me' '$ENVOY_URL/tokenguard/revoke?sub=alice'
  curl -i -H 'Authorization: Bearer $token' $ENVOY_B_URL/hello
Or revoke with etcdctl, as any tool can (a lease, so etcd forgets it by itself):
  lease=\$(etcdctl --endpoints 127.0.0.1:18379 lease grant 90000 | awk '{print \$2}')
  etcdctl --endpoints 127.0.0.1:18379 put --lease \$lease /tokenguard/revoked/sub/bob "{\\"revoked_at\\": \$(date +%s)}"
Registry statistics:
  curl -s -H 'x-admin-token: demo-admin-token-change-me' $ENVOY_URL/tokenguard/stats

Mint more:     curl -s '$ISSUER_URL/mint?alg=EdDSA&ttl=30&sub=bob'
Upstream got:  curl -s $UPSTREAM_URL/__upstream/received
Audit lines:   docker logs $envoy 2>&1 | grep 'audit {'
Counters:      curl -s $ADMIN_URL/stats/prometheus | grep tokenguard

'make compose-down' stops it.
MSG
