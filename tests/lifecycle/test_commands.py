"""The CLI-ready functions: exit codes, JSON on stdout, one-line reasons."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from expired_credentials import REAUTH, refresh_failing_client
from google.cloud import kms_v1
from inventory.builders import make_file

from kmsflow.cli.lifecycle import (
    EXIT_INCOMPLETE,
    EXIT_KMS_CREDENTIALS,
    EXIT_PARTIAL,
    CommandResult,
    inventory_command,
    reencrypt_command,
    rewrap_command,
)
from kmsflow.kms import resources


def test_inventory_command(kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path) -> None:
    made = make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / "a.enc"))
    code, out, err = inventory_command([str(tmp_path / "root")])
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["complete"] and doc["versions"][made.record.key.crypto_key_version]["envelopes"] == 1

    code, out, err = inventory_command([str(tmp_path / "root"), str(tmp_path / "missing")])
    assert code == EXIT_INCOMPLETE and json.loads(out)["complete"] is False
    assert "unreachable_root" in err and "\n" not in err
    assert inventory_command([])[0] == 2


def test_rewrap_command(kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path) -> None:
    made = make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / "a.enc"))
    v2 = resources.rotate(kms, key).name

    code, out, err = rewrap_command([made.dst], dry_run=True, client=kms)
    assert (code, err) == (0, "") and json.loads(out)["would_rewrap"] == 1

    code, out, err = rewrap_command([str(tmp_path / "root")], client=kms)
    doc = json.loads(out)
    assert code == 0 and doc["rewrapped"] == 1 and doc["versions_after"] == {v2: 1}
    assert made.record.key.wrapped_keyset not in out

    (tmp_path / "plain").write_text("x")
    code, out, err = rewrap_command([made.dst, str(tmp_path / "plain")], client=kms)
    assert code == EXIT_PARTIAL and "RecordNotFoundError" in err and json.loads(out)["already_current"] == 1


@pytest.mark.parametrize("command", [rewrap_command, reencrypt_command])
def test_unrefreshable_credentials_are_one_reason_not_one_failure_per_envelope(
    command: Callable[..., CommandResult], kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    for i in range(3):
        make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / f"a{i}.enc"), seed=i)
    resources.rotate(kms, key)
    with refresh_failing_client() as expired:
        code, out, err = command([str(tmp_path / "root")], client=expired)
    assert code == EXIT_KMS_CREDENTIALS and "\n" not in err
    assert err.startswith("3 failure(s), first: no usable Google credentials") and REAUTH.rstrip(".") in err
    assert "gcloud auth application-default login" in err and "KMS_EMULATOR_HOST" in err
    assert len(json.loads(out)["failures"]) == 3  # the report still says which envelopes were left
