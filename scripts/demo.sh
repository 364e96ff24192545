#!/usr/bin/env bash
# The main job: the end-to-end key lifecycle demo on the embedded KMS emulator.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/bootstrap.sh
exec "$root/.venv/bin/python" "$root/scripts/demo.py" "$@"
