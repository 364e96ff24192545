#!/usr/bin/env bash
# Regenerate the pinned lock files from provider/pyproject.toml and emulator/pyproject.toml (needs
# the registry).
#   requirements/lock.txt       everything: core + airflow + test extras, plus the dev/test
#                               emulator's dependencies and its gcs extra (dev, CI, demo)
#   requirements/core-lock.txt  the core alone: what an E2EE consumer installs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
uv="$root/.venv/bin/uv"
cd "$root"
"$uv" pip compile provider/pyproject.toml emulator/pyproject.toml --python-version 3.11 \
  --extra airflow --extra examples --extra test --extra gcs --upgrade -o requirements/lock.txt --no-header --quiet "$@"
"$uv" pip compile provider/pyproject.toml --python-version 3.11 \
  --upgrade -o requirements/core-lock.txt --no-header --quiet "$@"
