"""The ``kmsflow.cli`` package: lean imports, one exit-code table, and the report renderers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kmsflow import cli
from kmsflow.cli import exits
from kmsflow.envelope.errors import IntegrityError, RecordInvalidError
from kmsflow.kms.errors import KmsCredentialsError


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_building_the_parser_does_not_load_the_kms_client() -> None:
    code = (
        "import sys; from kmsflow.cli import build_parser; build_parser(); "
        "print('google.cloud.kms_v1' in sys.modules)"
    )
    assert _python(code).strip() == "False"


def test_help_and_argument_errors_do_not_load_the_kms_client() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from kmsflow.cli import main\n"
        "for argv in (['--help'], ['clean'], ['inventory', '--workers', 'x', 'r']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()),"
        " contextlib.redirect_stderr(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('grpc', 'google.cloud.kms_v1') if m in sys.modules))"
    )
    assert _python(code).strip() == "[]"


def test_every_exit_code_is_in_the_help_table_once() -> None:
    rows = exits.exit_code_table()[1:]
    codes = [int(row.split()[0]) for row in rows]
    assert codes == sorted(set(codes))
    assert {8, 9, 15, 16, 129, 130, 143} <= set(codes)
    assert (exits.EXIT_SIGHUP, exits.EXIT_INTERRUPTED, exits.EXIT_SIGTERM) == (129, 130, 143)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (IntegrityError("x"), cli.EXIT_TAMPERED),
        (RecordInvalidError("x"), cli.EXIT_RECORD_INVALID),
        (KmsCredentialsError("x"), cli.EXIT_KMS_CREDENTIALS),
        (ValueError("x"), cli.EXIT_INTERNAL),
    ],
)
def test_exit_code_for(exc: BaseException, code: int) -> None:
    assert cli.exit_code_for(exc) == code
    assert (
        any(isinstance(exc, cls) and c == code for cls, c, _ in cli.EXIT_CODES) or code == cli.EXIT_INTERNAL
    )
