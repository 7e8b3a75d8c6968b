#!/usr/bin/env bash
# Runs every test of the workspace, as CI does. On a fresh machine it first
# installs the Python tools the end-to-end tests use into ./.venv (about a
# minute): moto's S3 server, pyarrow, DuckDB and cryptography; and, from
# Debian, Go with golang.org/x/mod (whose sumdb/note and sumdb/tlog check
# bundle proofs independently of this project's code) and tmux (the replay
# test drives `tracevault replay` in a real terminal).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python3 -c 'import pyarrow, duckdb, cryptography, moto, jwt, opentelemetry.sdk' 2>/dev/null || [ ! -x .venv/bin/moto_server ]; then
  echo "== installing test tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
PKGS=""
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ]; then
  PKGS="$PKGS golang-go golang-golang-x-mod-dev"
fi
command -v tmux >/dev/null || PKGS="$PKGS tmux"
if [ -n "$PKGS" ]; then
  echo "== installing Debian packages:$PKGS"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q $PKGS >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $PKGS >/dev/null; }
fi
export TRACEVAULT_TEST_PYTHON="$PWD/.venv/bin/python3"
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

echo "== cargo test"
cargo test --workspace --locked "$@"
