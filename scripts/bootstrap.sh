#!/usr/bin/env bash
# Create .venv/ at the repo root and install the pinned set from requirements/lock.txt.
# Idempotent: re-installs only when the lock file, provider/pyproject.toml or emulator/pyproject.toml
# changed. The provider and the dev/test emulator (kmsflow-emulator) are installed editable, --no-deps:
# their dependencies come from the lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
lock="$root/requirements/lock.txt"
uv_version="0.13.8"

python="${KMSFLOW_PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      python="$candidate"; break
    fi
  done
fi
[ -n "$python" ] || { echo "bootstrap: Python 3.11+ is required" >&2; exit 1; }

stamp="$venv/.kmsflow-installed"
want="$(cat "$lock" "$root/provider/pyproject.toml" "$root/emulator/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv with $python" >&2
  "$python" -m venv "$venv"
fi
# uv resolves nothing here: it installs exactly the pinned lock, much faster than pip.
"$venv/bin/python" -m pip install --quiet "uv==$uv_version"
echo "bootstrap: installing pinned dependencies (requirements/lock.txt)" >&2
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -r "$lock"
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --no-deps -e "$root/provider"
# setuptools' editable build leaves its egg-info in provider/src, which the editable install puts on
# sys.path: importlib.metadata would see the provider twice, and Airflow register its plugin twice.
rm -rf "$root/provider/src/"*.egg-info
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --no-deps -e "$root/emulator"
echo "$want" > "$stamp"
