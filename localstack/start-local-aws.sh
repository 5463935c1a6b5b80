#!/usr/bin/env bash
# Local AWS without Docker: LocalStack (SQS) on 127.0.0.1:4566 and moto (DynamoDB) on
# 127.0.0.1:5000, each as a plain Python process in a cached virtualenv. LocalStack's own
# DynamoDB needs a download this machine cannot make, hence moto for DynamoDB.
#
#   localstack/start-local-aws.sh          install if needed, start both, wait until ready
#   localstack/start-local-aws.sh stop     stop both
#
# Then point the code at them (it knows nothing else about emulators):
#   export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
#   export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:4566 AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:5000
set -euo pipefail

CACHE="${WEBHOOK_RELAY_CACHE:-$HOME/.cache/webhook-relay}"
VENVS="$CACHE/venvs"
STATE="$CACHE/local-aws"
LOCALSTACK_VERSION=2026.3.0
MOTO_VERSION=5.2.5
mkdir -p "$VENVS" "$STATE/tmp" "$STATE/fs"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'local-aws: %s\n' "$*"; }

python313() {
  local candidate
  if command -v pyenv >/dev/null 2>&1; then
    candidate=$(ls -d "$(pyenv root)"/versions/3.1[3-9]*/bin/python3 2>/dev/null | head -1 || true)
    [ -n "$candidate" ] && { echo "$candidate"; return; }
  fi
  for candidate in python3.13 python3.12 python3.14 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  echo "LocalStack needs Python 3.12 or newer" >&2
  return 1
}

install() {
  if [ ! -x "$VENVS/tools/bin/uv" ]; then
    log "installing uv"
    python3 -m venv "$VENVS/tools"
    "$VENVS/tools/bin/pip" install -q uv
  fi
  local uv="$VENVS/tools/bin/uv"
  if [ ! -f "$VENVS/localstack/.installed-$LOCALSTACK_VERSION" ]; then
    log "installing localstack-core $LOCALSTACK_VERSION"
    rm -rf "$VENVS/localstack"
    "$uv" venv -q --python "$(python313)" "$VENVS/localstack"
    # Its dependencies are unpinned: resolve them as of its release, or it fails to import.
    "$uv" pip install -q --python "$VENVS/localstack/bin/python" \
      --exclude-newer 2026-04-01 "localstack-core[runtime]==$LOCALSTACK_VERSION"
    touch "$VENVS/localstack/.installed-$LOCALSTACK_VERSION"
  fi
  if [ ! -f "$VENVS/moto/.installed-$MOTO_VERSION" ]; then
    log "installing moto $MOTO_VERSION"
    rm -rf "$VENVS/moto"
    "$uv" venv -q "$VENVS/moto"
    "$uv" pip install -q --python "$VENVS/moto/bin/python" "moto[server]==$MOTO_VERSION"
    touch "$VENVS/moto/.installed-$MOTO_VERSION"
  fi
}

localstack_ready() { curl -sf http://127.0.0.1:4566/_localstack/health 2>/dev/null | grep -q '"sqs": *"\(available\|running\)"'; }
moto_ready() { curl -sf http://127.0.0.1:5000/moto-api/ >/dev/null 2>&1; }

wait_until() {
  local what=$1 check=$2 i
  for ((i = 0; i < 120; i++)); do
    "$check" && return 0
    sleep 0.5
  done
  log "$what did not become ready; its log:"
  tail -n 40 "$STATE/$what.log" >&2 || true
  return 1
}

# Waits up to 30 s for a service to stop answering.
wait_gone() {
  local check=$1 i
  for ((i = 0; i < 60; i++)); do
    "$check" || return 0
    sleep 0.5
  done
  return 1
}

start() {
  install
  if localstack_ready; then
    log "LocalStack already running on 127.0.0.1:4566"
  else
    log "starting LocalStack (SQS) on 127.0.0.1:4566"
    (
      export TMPDIR="$STATE/tmp" FILESYSTEM_ROOT="$STATE/fs"
      export OVERRIDE_IN_DOCKER=0 # this machine has /.dockerenv; keep LocalStack's files in $STATE
      export GATEWAY_LISTEN=127.0.0.1:4566 LOCALSTACK_HOST=127.0.0.1:4566 SQS_ENDPOINT_STRATEGY=path
      export SERVICES=sqs DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1
      export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
      # Any download attempt stays on loopback.
      export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
      nohup "$VENVS/localstack/bin/python" -m localstack.runtime.main >"$STATE/localstack.log" 2>&1 &
      echo $! >"$STATE/localstack.pid"
    )
  fi
  # A moto started before moto_server.py existed lets concurrent conditional writes through:
  # replace it.
  if moto_ready && [ ! -f "$STATE/moto.atomic" ] && [ -f "$STATE/moto.pid" ]; then
    log "restarting moto with atomic DynamoDB operations"
    kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true
    rm -f "$STATE/moto.pid"
    wait_gone moto_ready
  fi
  if moto_ready; then
    log "moto already running on 127.0.0.1:5000"
  else
    log "starting moto (DynamoDB) on 127.0.0.1:5000"
    nohup "$VENVS/moto/bin/python" "$HERE/moto_server.py" -H 127.0.0.1 -p 5000 >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/moto.pid"
    touch "$STATE/moto.atomic"
  fi
  wait_until localstack localstack_ready
  wait_until moto moto_ready
  log "ready"
}

stop() {
  local name
  for name in localstack moto; do
    if [ -f "$STATE/$name.pid" ]; then
      kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid"
      rm -f "$STATE/$name.atomic"
    fi
  done
  log "stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  *) echo "usage: $0 [start|stop|install]" >&2; exit 2 ;;
esac
