#!/usr/bin/env bash
# Runs every test of the workspace, as CI does. It needs a Rust toolchain
# (rust-version in Cargo.toml) and python3; on a bare Debian it first installs,
# saying what and why, whatever else the tests call:
# - from Debian: python3-venv (to create ./.venv), procps (`kill`, `ps`),
#   openssl and curl (the TLS tests make a certificate and use curl as a
#   client), tmux (the replay test drives `tracevault replay` in a real
#   terminal), and Go with golang.org/x/mod (whose sumdb/note and sumdb/tlog
#   check bundle proofs independently of this project's code);
# - from PyPI, into ./.venv (about a minute): the packages of
#   tests/requirements.txt (moto's S3 server, pyarrow, DuckDB, cryptography,
#   the OpenTelemetry SDK, PyJWT, requests).
# Then it runs `cargo test --workspace --locked` with any arguments given
# and, without arguments, the SQL tests a second time on a Ballista cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: each one only when what it provides is missing.
PKGS=""
want() { # package, reason
  PKGS="$PKGS $1"
  echo "   - $1: $2"
}
echo "== checking the tools the tests call"
python3 -c 'import ensurepip, venv' 2>/dev/null || want python3-venv "python3 -m venv (./.venv for the Python test tools)"
type -P kill >/dev/null && type -P ps >/dev/null || want procps "kill and ps (tests stop servers with SIGTERM)"
type -P openssl >/dev/null || want openssl "self-signed certificates for the TLS tests"
type -P curl >/dev/null || want curl "a standard HTTPS client for the TLS tests"
type -P tmux >/dev/null || want tmux "a real terminal for the replay test"
if ! type -P go >/dev/null || [ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ]; then
  want golang-go "builds the independent proof checker (tests/independent/tlogcheck)"
  want golang-golang-x-mod-dev "golang.org/x/mod sumdb/note and sumdb/tlog for that checker"
fi
if [ -n "$PKGS" ]; then
  echo "== installing Debian packages:$PKGS"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    type -P sudo >/dev/null || { echo "error: not root and no sudo: install$PKGS yourself" >&2; exit 1; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet: update once if the install fails.
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q $PKGS >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $PKGS >/dev/null; }
else
  echo "   all present"
fi

if ! .venv/bin/python3 -c 'import pyarrow, duckdb, cryptography, moto, jwt, requests, opentelemetry.sdk' 2>/dev/null || [ ! -x .venv/bin/moto_server ]; then
  echo "== installing the Python test tools of tests/requirements.txt into .venv:"
  grep -v '^\s*#' tests/requirements.txt | sed '/^\s*$/d; s/^/   - /'
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
export TRACEVAULT_TEST_PYTHON="$PWD/.venv/bin/python3"
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

echo "== cargo test"
cargo test --workspace --locked "$@"

# The query, masking and adversarial SQL tests again, each server's queries
# run on a Ballista scheduler and two executors of its own
# (tests/common/ballista.rs): every query must answer as it does embedded.
# (The worker-process memory test is left out: it is about the embedded
# engine's isolation, and an executor has no process memory limit of its own.)
if [ "$#" -eq 0 ]; then
  echo "== the SQL tests again, on a Ballista cluster"
  TRACEVAULT_TEST_ENGINE=ballista cargo test --workspace --locked --test query --test masking --test sql_fuzz
  TRACEVAULT_TEST_ENGINE=ballista cargo test --workspace --locked --test adversary -- attacks_fail_closed_and_the_server_stays_up
fi
