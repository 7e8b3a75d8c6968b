#!/usr/bin/env bash
# Runs every test of the workspace, as CI does. On a fresh machine it first
# installs the Python tools the end-to-end tests use into ./.venv (about a
# minute): moto's S3 server, pyarrow, DuckDB and cryptography.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python3 -c 'import pyarrow, duckdb, cryptography, moto, jwt, opentelemetry.sdk' 2>/dev/null || [ ! -x .venv/bin/moto_server ]; then
  echo "== installing test tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
export TRACEVAULT_TEST_PYTHON="$PWD/.venv/bin/python3"
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

echo "== cargo test"
cargo test --workspace --locked "$@"
