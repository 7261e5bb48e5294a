#!/usr/bin/env bash
# Runs the server end-to-end tests (tests/e2e/test_server.py, test_server_survival.py) against a quanta binary.
#
#   tests/e2e/run_server_tests.sh [QUANTA_BINARY] [pytest args...]
#
# The binary is the first argument, else $QUANTA_BINARY, else build/quanta. The Python packages of
# tests/e2e/requirements.txt go into a venv ($QUANTA_E2E_VENV, default build/e2e-venv), created on
# the first run and brought up to date when requirements.txt changes (idempotent, quiet).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

binary="${QUANTA_BINARY:-$repo/build/quanta}"
if [[ $# -gt 0 && "$1" != -* ]]; then
  binary="$1"
  shift
fi
if [[ ! -x "$binary" ]]; then
  echo "run_server_tests.sh: no quanta binary at '$binary' (give it as the first argument or in QUANTA_BINARY)" >&2
  exit 2
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"

venv="${QUANTA_E2E_VENV:-$repo/build/e2e-venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

export QUANTA_BINARY="$binary"
cd "$repo"
# $QUANTA_E2E_TESTS: the test files to run (default: the three suites on the tiny fixture).
files=()
for f in ${QUANTA_E2E_TESTS:-test_server.py test_server_survival.py test_server_fuzz.py}; do files+=("$here/$f"); done
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "${files[@]}" "$@"
