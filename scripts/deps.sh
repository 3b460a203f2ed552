#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
# The local cluster (e2e/scripts) makes its certificates with openssl and its pod mounts with unshare.
command -v openssl >/dev/null || missing+=(openssl)
command -v unshare >/dev/null || missing+=(util-linux)
# The gateway tests drive it with the npm socket.io-client.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A Debian install starts a system redis on 6379; the project starts its own servers on other ports.

for dir in gateway/tests/js e2e/js; do
  if [[ -f $dir/package.json && ! -d $dir/node_modules ]]; then
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# python-socketio's client drives the gateway in one integration test; versions are pinned.
venv="${SOCKETFLEET_VENV:-$HOME/.cache/socketfleet/venv}"
if ! "$venv/bin/python" -c 'import socketio, websocket, requests' 2>/dev/null; then
  echo "deps: python-socketio in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r gateway/tests/python/requirements.txt
fi
