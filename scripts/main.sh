#!/usr/bin/env bash
# Set up the environment (idempotent) and run the main job on the embedded default model.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh"
venv="${STYLECODEC_VENV:-$repo/.venv}"
cd "$repo"
"$venv/bin/stylecodec" assets fetch
"$venv/bin/stylecodec" env
