"""The ``kmsflow.cli`` package: lean imports, one exit-code table, and the report renderers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1

from kmsflow import cli, envelope
from kmsflow.audit import Action, AuditLog
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


HEAVY = ("grpc", "google.cloud.kms_v1", "fsspec", "tink", "pydantic")  # fsspec: URLs; tink: unlocking


def _loaded_by(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, watched: tuple[str, ...] = HEAVY
) -> tuple[int, list[str]]:
    """Run ``kmsflow *argv`` in a fresh interpreter; its exit code and which of ``watched`` it loaded."""
    code = (
        "import contextlib, io, json, sys\n"
        "from kmsflow.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        "    try:\n"
        f"        rc = main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        rc = exc.code\n"
        f"print(json.dumps([rc, [m for m in {watched!r} if m in sys.modules]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd, env=env
    )
    rc, loaded = json.loads(done.stdout.splitlines()[-1])
    return rc, loaded


def test_commands_without_kms_calls_load_neither_grpc_nor_the_kms_client(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    """``--help``, ``inspect`` (of a signed envelope too: it reads the signature record),
    ``audit``, ``clean`` and argument errors import only what they use (local paths: no fsspec
    either; no Tink before a key is unlocked; records without pydantic)."""
    from envelope.test_signature import make_signing_key

    (tmp_path / "plain.txt").write_bytes(b"hello\n")
    envelope.encrypt(kms, key, str(tmp_path / "plain.txt"), str(tmp_path / "plain.enc"))
    signer = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    envelope.encrypt(kms, key, str(tmp_path / "plain.txt"), str(tmp_path / "signed.enc"), sign_with=signer)
    AuditLog(str(tmp_path / "audit.log"), actor="test").append(
        Action.DISABLE, f"{key}/cryptoKeyVersions/1", reason="test"
    )
    (tmp_path / "roots").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KMS_EMULATOR_HOST"}
    cases = {
        ("--help",): exits.EXIT_OK,
        ("inspect", "plain.enc"): exits.EXIT_OK,
        ("inspect", "signed.enc"): exits.EXIT_OK,
        ("inspect", "missing.enc"): exits.EXIT_NOT_FOUND,
        ("audit", "audit.log"): exits.EXIT_OK,
        ("audit", "--json", "--resource", key, "audit.log"): exits.EXIT_OK,
        ("clean", "--dry-run", "roots"): exits.EXIT_OK,
        ("clean", "roots"): exits.EXIT_OK,
        ("decrypt", "plain.enc"): exits.EXIT_USAGE,  # argument error: DST missing
        ("inventory", "--workers", "x", "roots"): exits.EXIT_USAGE,
    }
    for argv, expected in cases.items():
        assert _loaded_by(list(argv), tmp_path, env) == (expected, []), argv


def test_audit_does_not_load_the_record_model(tmp_path: Path) -> None:
    """The audit log reads through ``envelope.storage``'s capped reads, whose cap lives apart from
    the record model (``envelope.record_caps``)."""
    AuditLog(str(tmp_path / "audit.log"), actor="test").append(
        Action.DISABLE, "k/cryptoKeyVersions/1", reason="t"
    )
    assert _loaded_by(["audit", "audit.log"], tmp_path, watched=("kmsflow.envelope.record",)) == (
        exits.EXIT_OK,
        [],
    )


def test_encrypt_decrypt_verify_take_the_lean_kms_path(emulator: Any, key: str, tmp_path: Path) -> None:
    """One KMS call needs neither ``google-cloud-kms`` nor ``google.api_core.retry`` (which imports
    ``requests``): the lean data path (``kmsflow.kms.dataplane``) makes it; records need no pydantic."""
    (tmp_path / "plain.txt").write_bytes(b"hello\n")
    env = {**os.environ, "KMS_EMULATOR_HOST": emulator.endpoint}
    watched = (
        "google.cloud.kms_v1",
        "google.api_core.retry",
        "requests",
        "pydantic",
        "kmsflow.kms.dataplane",
    )
    for argv in (
        ["encrypt", "--key", key, "plain.txt", "plain.enc"],
        ["verify", "plain.enc"],
        ["decrypt", "plain.enc", "out.txt"],
    ):
        assert _loaded_by(argv, tmp_path, env, watched) == (exits.EXIT_OK, ["kmsflow.kms.dataplane"]), argv
    assert (tmp_path / "out.txt").read_bytes() == b"hello\n"


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


def test_a_command_runs_with_the_start_up_gc_threshold_and_main_restores_it(tmp_path: Path) -> None:
    """The collector's first generation is collected every 10,000 allocations while a command runs
    (its start-up objects are walked ~15 times instead of ~170), and :func:`main` puts the caller's
    thresholds back however the command ends: returned, failed, or argparse's SystemExit."""
    code = (
        "import contextlib, gc, io, json, sys\n"
        "from kmsflow.cli import app\n"
        "seen = []\n"
        "real = app.build_parser\n"
        "def spy():\n"
        "    parser = real()\n"
        "    seen.append(gc.get_threshold())\n"
        "    return parser\n"
        "app.build_parser = spy\n"
        "gc.set_threshold(700, 7, 9)\n"
        "after = []\n"
        f"for argv in (['inspect', {str(tmp_path / 'none')!r}], ['--help'], ['audit', 'x']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()),"
        " contextlib.redirect_stderr(io.StringIO()):\n"
        "        app.main(argv)\n"
        "    after.append(gc.get_threshold())\n"
        "print(json.dumps([seen, after]))\n"
    )
    seen, after = json.loads(_python(code))
    assert seen == [[cli.app.GC_THRESHOLD, 7, 9]] * 3
    assert after == [[700, 7, 9]] * 3
