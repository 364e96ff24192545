#!/usr/bin/env bash
# The whole test suite: set-up, lint and format check (ruff), types (mypy on the core, the DAGs and the
# emulator), then pytest.
# Extra arguments go to pytest, e.g. ./scripts/test.sh tests/emulator -x
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/bootstrap.sh
bin="$root/.venv/bin"
echo "== ruff" >&2
"$bin/ruff" check provider emulator dags tests bench scripts
"$bin/ruff" format --check provider emulator dags tests bench scripts
echo "== mypy (core, DAGs, emulator)" >&2
"$bin/mypy" provider/src/kmsflow dags emulator/src/kmsflow_emulator
echo "== pytest" >&2
"$bin/python" -m pytest "$@"
