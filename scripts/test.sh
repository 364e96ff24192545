#!/usr/bin/env bash
# The whole test suite: set-up, lint and format check (ruff), types (mypy on the core and the DAGs), then pytest.
# Extra arguments go to pytest, e.g. ./scripts/test.sh tests/emulator -x
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/bootstrap.sh
bin="$root/.venv/bin"
echo "== ruff" >&2
"$bin/ruff" check provider dags tests bench scripts
"$bin/ruff" format --check provider dags tests bench scripts
echo "== mypy (core, DAGs)" >&2
"$bin/mypy" provider/src/kmsflow dags
echo "== pytest" >&2
"$bin/python" -m pytest "$@"
