# Sourced by the compose scripts (run from the repository root): how Docker and Compose are
# reached, the images, and the ports the stack publishes on 127.0.0.1.

COMPOSE_PROJECT=tokenguard
COMPOSE_FILE_PATH=envoy/docker-compose.yml
: "${ENVOY_VERSION:=1.40.0}"
: "${LOCAL_ENVOY_IMAGE:=tokenguard/envoy:$ENVOY_VERSION-local}"
: "${ENVOY_IMAGE:=$LOCAL_ENVOY_IMAGE}"
: "${HARNESS_IMAGE:=tokenguard/harness:local}"
: "${ETCD_IMAGE:=tokenguard/etcd:local}"
export ENVOY_IMAGE HARNESS_IMAGE ETCD_IMAGE

ENVOY_URL=http://127.0.0.1:18000
ADMIN_URL=http://127.0.0.1:18901
# The second Envoy replica (envoy-b): same configuration, its own process and shared data.
ENVOY_B_URL=http://127.0.0.1:18001
ADMIN_B_URL=http://127.0.0.1:18902
ISSUER_URL=http://127.0.0.1:18101
UPSTREAM_URL=http://127.0.0.1:18102
# etcd's client port (gRPC, and its JSON gateway under /v3/).
ETCD_URL=http://127.0.0.1:18379

die() { echo "$*" >&2; exit 1; }

# Fails loudly: a missing engine must never look like a passing run.
require_docker() {
  command -v docker >/dev/null ||
    die "compose: the docker CLI is not installed. Install Docker, or set TOKENGUARD_SKIP_COMPOSE=1 to skip the compose harness."
  local out
  if ! out=$(docker info --format '{{.ServerVersion}}' 2>&1); then
    out=$(echo $out) # on one line
    die "compose: no Docker engine answers ('docker info' said: $out). Start the Docker engine, or set TOKENGUARD_SKIP_COMPOSE=1 to skip the compose harness."
  fi
}

# Compose v2 (`docker compose`) when present, else the v1 `docker-compose` binary.
compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE_PATH" "$@"
  elif command -v docker-compose >/dev/null; then
    docker-compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE_PATH" "$@"
  else
    die "compose: neither 'docker compose' nor 'docker-compose' is installed"
  fi
}

require_free_ports() {
  local port
  for port in 18000 18901 18001 18902 18101 18102 18379; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "compose: port $port is already in use (a running 'make compose-up'? then 'make compose-down')"
    fi
  done
}

# Waits until both Envoys are ready and etcd, the issuer and the upstream answer through
# their published ports.
wait_ready() {
  local i
  for i in $(seq 1 300); do
    if curl -fs "$ADMIN_URL/ready" >/dev/null 2>&1 &&
      curl -fs "$ADMIN_B_URL/ready" >/dev/null 2>&1 &&
      curl -fs "$ETCD_URL/health" >/dev/null 2>&1 &&
      curl -fs "$ISSUER_URL/.well-known/jwks.json" >/dev/null 2>&1 &&
      curl -fs "$UPSTREAM_URL/__upstream/received" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  compose ps >&2 || true
  compose logs --no-color --tail 40 >&2 || true
  die "compose: the stack was not ready within 60 s (logs above)"
}
