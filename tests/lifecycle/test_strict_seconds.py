"""Ages in seconds (``--stale-after``, ``--older-than``) must be finite and not negative.

Regression: ``kmsflow reencrypt --stale-after nan`` was accepted, and since ``age < nan`` is never
true it took over a live run's GCS staging at once. Refused now by the CLI (usage error, exit 2)
and by every library entry point (``ValueError``), not only by the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec
import pytest

from kmsflow import cli
from kmsflow.cli.lifecycle import clean_command, reencrypt_command
from kmsflow.envelope.storage import Location
from kmsflow.lifecycle.clean import clean_stale_temps
from kmsflow.lifecycle.reencryption import gcs as reencrypt_gcs
from kmsflow.lifecycle.reencryption import reencrypt
from kmsflow.lifecycle.seconds import check_seconds

BAD = [float("nan"), float("inf"), float("-inf"), -1.0, -1e-9]
BAD_TEXT = ["nan", "NaN", "inf", "-inf", "infinity", "1e400", "-1", "-0.5", "soon", ""]


class NoKms:
    """A KMS client that fails the test if it is used at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"KMS used ({name}) although the arguments were invalid")


@pytest.mark.parametrize("text", BAD_TEXT)
@pytest.mark.parametrize(("command", "flag"), [("reencrypt", "--stale-after"), ("clean", "--older-than")])
def test_the_cli_refuses_non_finite_or_negative_seconds(
    command: str, flag: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, f"{flag}={text}", str(tmp_path)])

    assert info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"argument {flag}: want a finite, non-negative number of seconds" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("value", BAD)
def test_check_seconds_refuses(value: float) -> None:
    with pytest.raises(ValueError, match="stale_after must be a finite, non-negative number of seconds"):
        check_seconds(value, "stale_after")


@pytest.mark.parametrize("value", [0, 0.0, 30.5, 1800, 1e12])
def test_check_seconds_accepts_finite_non_negative_numbers(value: float) -> None:
    assert check_seconds(value, "x") == value


@pytest.mark.parametrize("value", BAD)
def test_reencrypt_refuses_before_doing_anything(value: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stale_after"):
        reencrypt(NoKms(), [str(tmp_path)], stale_after=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD)
def test_gcs_take_over_refuses(value: float) -> None:
    fs = fsspec.filesystem("memory")
    root = Location("/bucket/env", fs, "memory")
    stale = reencrypt_gcs.StagingPrefix(root.sibling(".env.kmsflow-00.tmp"), {reencrypt_gcs.LEASE: {}})

    with pytest.raises(ValueError, match="stale_after"):
        reencrypt_gcs.take_over_refusal(stale, value)
    with pytest.raises(ValueError, match="stale_after"):
        reencrypt_gcs.recover(root, value)
    with pytest.raises(ValueError, match="stale_after"):
        reencrypt_gcs.GcsStore(root, "file", value)


@pytest.mark.parametrize("value", BAD)
def test_clean_refuses(value: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="older_than"):
        clean_stale_temps([str(tmp_path)], older_than=value)


@pytest.mark.parametrize("value", BAD)
def test_the_commands_answer_a_usage_error(value: float, tmp_path: Path) -> None:
    result = reencrypt_command([str(tmp_path)], stale_after=value, client=NoKms())  # type: ignore[arg-type]
    assert (result.exit_code, result.error) == (
        cli.EXIT_USAGE,
        "reencrypt: --stale-after must be a finite, non-negative number",
    )
    result = clean_command([str(tmp_path)], older_than=value)
    assert (result.exit_code, result.error) == (
        cli.EXIT_USAGE,
        "clean: --older-than must be a finite, non-negative number",
    )
