#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install stylecodec into it.
# Idempotent: a stamp of the requirement files makes a second run take about a second.
# Env: PYTHON (default python3, >= 3.10), STYLECODEC_VENV (default <repo>/.venv).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STYLECODEC_VENV:-$repo/.venv}"
py="${PYTHON:-python3}"
stamp="$venv/.stylecodec-setup"
want="$(cat "$repo/requirements.txt" "$repo/requirements-nodeps.txt" "$repo/setup.cfg" "$repo/pyproject.toml" | sha256sum | cut -c1-32)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/stylecodec" ]; then
  exit 0
fi
echo "[setup] creating/updating $venv (first run installs torch: several minutes)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=23.2"
"${pip[@]}" install -r "$repo/requirements.txt"
"${pip[@]}" install --no-deps -r "$repo/requirements-nodeps.txt"
"${pip[@]}" install --no-deps --no-build-isolation -e "$repo"
"$venv/bin/python" -c "import stylecodec, torch, compressai, cv2, lpips, timm, facenet_pytorch" \
  || { echo "[setup] the environment does not import; see the messages above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[setup] ready: $venv" >&2
