#!/usr/bin/env bash
# Set up the environment (idempotent) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh"
venv="${STYLECODEC_VENV:-$repo/.venv}"
cd "$repo"
set +e
"$venv/bin/python" -m pytest -q -rs --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": fine when the caller filtered (-k/-m/a path), an error otherwise.
  if [ "$#" -gt 0 ]; then echo "[test] no test matched the given selection" >&2; exit 0; fi
  echo "[test] no tests were collected: the test suite is missing" >&2; exit 1
fi
exit "$rc"
