"""The ``kmsflow`` console script, run as a subprocess the way users and pipelines run it:
exit codes per error class, exactly one line on stderr on failure, JSON from ``inspect``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1
from terminal import run_on_terminal

from .conftest import make_key, write_random

KMSFLOW = str(Path(sys.executable).with_name("kmsflow"))
OWNER = "user:owner@example.com"


def run(endpoint: str, *args: str, principal: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KMSFLOW_PRINCIPAL", "STORAGE_EMULATOR_HOST")}
    env["KMS_EMULATOR_HOST"] = endpoint
    if principal:
        env["KMSFLOW_PRINCIPAL"] = principal
    return subprocess.run([KMSFLOW, *args], capture_output=True, text=True, env=env, timeout=120)


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert a failure with ``code`` and a single ``kmsflow: error:`` line; return that line."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.startswith("kmsflow") and ": error: " in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr.strip()


def test_encrypt_inspect_verify_decrypt(emulator: Any, key: str, tmp_path: Path) -> None:
    data = write_random(tmp_path / "ds" / "part" / "shard-0", 5000)
    write_random(tmp_path / "ds" / "shard-1", 10, seed=1)
    ok = run(emulator.endpoint, "encrypt", "--key", key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")  # quiet when not on a terminal

    shown = run(emulator.endpoint, "inspect", str(tmp_path / "enc"))
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["crypto_key_version"] == f"{key}/cryptoKeyVersions/1"
    assert summary["kind"] == "dataset" and summary["file_count"] == 2
    assert [f["path"] for f in summary["files"]] == ["part/shard-0", "shard-1"]

    assert run(emulator.endpoint, "verify", str(tmp_path / "enc")).returncode == 0
    assert run(emulator.endpoint, "decrypt", str(tmp_path / "enc"), str(tmp_path / "out")).returncode == 0
    assert (tmp_path / "out" / "part" / "shard-0").read_bytes() == data


def test_failures_in_a_subprocess_are_one_line_with_their_exit_code(
    emulator: Any, key: str, tmp_path: Path
) -> None:
    ep = emulator.endpoint
    write_random(tmp_path / "in", 3000)
    assert run(ep, "encrypt", "--key", key, str(tmp_path / "in"), str(tmp_path / "enc")).returncode == 0
    blob = bytearray((tmp_path / "enc").read_bytes())
    blob[100] ^= 0x10
    (tmp_path / "enc").write_bytes(bytes(blob))
    assert "failed authentication" in failed(
        run(ep, "decrypt", str(tmp_path / "enc"), str(tmp_path / "out")), 5
    )
    assert not (tmp_path / "out").exists()
    assert "no such envelope" in failed(run(ep, "verify", str(tmp_path / "nope")), 3)
    failed(run(ep, "encrypt", str(tmp_path / "in")), 2)  # usage errors are one line too


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``kmsflow.cli.main`` in this process (the same code the console script runs, minus start-up)."""
    from kmsflow.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_codes_per_error_class(
    emulator: Any,
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMS_EMULATOR_HOST", emulator.endpoint)
    monkeypatch.delenv("KMSFLOW_PRINCIPAL", raising=False)

    def fails(code: int, *args: str) -> str:
        got, out, err = in_process(capsys, *args)
        assert (got, out) == (code, ""), err
        assert err.startswith("kmsflow") and ": error: " in err and err.count("\n") == 1
        return err

    write_random(tmp_path / "in", 3000)
    assert in_process(capsys, "encrypt", "--key", key, str(tmp_path / "in"), str(tmp_path / "enc"))[0] == 0
    assert "no such envelope" in fails(3, "decrypt", str(tmp_path / "nope"), str(tmp_path / "o"))
    assert "no such file" in fails(3, "encrypt", "--key", key, str(tmp_path / "nope"), str(tmp_path / "x"))
    assert "already exists" in fails(4, "decrypt", str(tmp_path / "enc"), str(tmp_path / "in"))
    fails(4, "encrypt", "--key", key, str(tmp_path / "in"), str(tmp_path / "enc"))
    fails(2, "encrypt", str(tmp_path / "in"))
    fails(2, "frobnicate")
    unknown = key.rsplit("/", 1)[0] + "/missing"
    assert "not found" in fails(12, "encrypt", "--key", unknown, str(tmp_path / "in"), str(tmp_path / "y"))

    blob = bytearray((tmp_path / "enc").read_bytes())
    blob[100] ^= 0x10
    (tmp_path / "enc").write_bytes(bytes(blob))
    assert "failed authentication" in fails(5, "decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    fails(5, "verify", str(tmp_path / "enc"))
    assert not (tmp_path / "out").exists()
    blob[100] ^= 0x10
    (tmp_path / "enc").write_bytes(bytes(blob))

    record = tmp_path / "enc.kmsflow.json"
    good = record.read_text()
    record.write_text(good.replace('"kind": "file"', '"kind": "blob"'))
    assert "invalid envelope record field 'kind'" in fails(6, "inspect", str(tmp_path / "enc"))
    record.write_text(good)

    version = json.loads(good)["key"]["crypto_key_version"]
    state = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
    mask = {"paths": ["state"]}
    disabled = {"name": version, "state": state.DISABLED}
    kms.update_crypto_key_version(request={"crypto_key_version": disabled, "update_mask": mask})
    fails(11, "decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    enabled = {"name": version, "state": state.ENABLED}
    kms.update_crypto_key_version(request={"crypto_key_version": enabled, "update_mask": mask})
    assert in_process(capsys, "verify", str(tmp_path / "enc"))[0] == 0

    # KMS unavailable past the retry deadline: 13 (the deadline is shortened to keep this quick)
    import kmsflow.kms.crypto as crypto

    real_retry = crypto.default_retry
    monkeypatch.setattr(crypto, "default_retry", lambda deadline=60.0: real_retry(0.5))
    monkeypatch.setenv("KMS_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens on the discard port
    assert "gave up retrying" in fails(13, "verify", str(tmp_path / "enc"))


def test_permission_denied_is_exit_10(iam_emulator: Any, tmp_path: Path) -> None:
    owner = iam_emulator.client(OWNER)
    key = make_key(owner, f"ring-{uuid.uuid4().hex[:8]}")
    producer = f"serviceAccount:p-{uuid.uuid4().hex[:6]}@proj.iam.gserviceaccount.com"
    policy = owner.get_iam_policy(request={"resource": key})
    policy.bindings.add(role="roles/cloudkms.cryptoKeyEncrypter", members=[producer])
    owner.set_iam_policy(request={"resource": key, "policy": policy})
    write_random(tmp_path / "in", 100)
    ep = iam_emulator.endpoint
    assert (
        run(
            ep, "encrypt", "--key", key, str(tmp_path / "in"), str(tmp_path / "enc"), principal=producer
        ).returncode
        == 0
    )
    line = failed(run(ep, "decrypt", str(tmp_path / "enc"), str(tmp_path / "out"), principal=producer), 10)
    assert "decrypt with" in line and key in line
    assert not (tmp_path / "out").exists()


def test_help_documents_exit_codes() -> None:
    result = subprocess.run([KMSFLOW, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for code in ("0", "2", "3", "4", "5", "6", "7", "10", "11", "12", "13", "14", "15"):
        assert f"\n  {code:>3}  " in result.stdout


@pytest.mark.parametrize("command", ["encrypt", "decrypt", "verify", "inspect"])
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = in_process(capsys, command, "--help")
    assert code == 0 and "SRC" in out


def test_inspect_without_file_list(
    capsys: pytest.CaptureFixture[str], kms: Any, key: str, tmp_path: Path
) -> None:
    from kmsflow import envelope

    write_random(tmp_path / "ds" / "a", 10)
    envelope.encrypt(kms, key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    code, out, _ = in_process(capsys, "inspect", "--no-files", str(tmp_path / "enc"))
    summary = json.loads(out)
    assert code == 0 and "files" not in summary and summary["file_count"] == 1


def test_progress_bar_only_on_a_terminal(emulator: Any, key: str, tmp_path: Path) -> None:
    """On a TTY: a progress bar and a summary on stderr; piped (every other test): silence."""
    write_random(tmp_path / "in", 3 << 20)
    env = {k: v for k, v in os.environ.items() if k != "KMSFLOW_PRINCIPAL"}
    env.update(KMS_EMULATOR_HOST=emulator.endpoint, COLUMNS="120")
    argv = [KMSFLOW, "encrypt", "--key", key, str(tmp_path / "in"), str(tmp_path / "enc")]
    code, text = run_on_terminal(argv, env)
    assert code == 0
    assert "encrypt in" in text and "MB" in text  # rich's bar: description, sizes, speed
    assert "encrypted 1 file(s)" in text and f"{key}/cryptoKeyVersions/1" in text


def without_credentials(home: Path) -> dict[str, str]:
    """An environment with no emulator and no ADC: an empty HOME (no gcloud login), no key file, and
    the metadata server (a GCE instance's identity) at a closed port, and not even probed."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    if "PYTHONPATH" in os.environ:  # the code under test, when it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9", NO_GCE_CHECK="true")
    return env


@pytest.mark.parametrize(
    "command",
    [
        ["encrypt", "--key", "projects/p/locations/l/keyRings/r/cryptoKeys/k", "{d}/plain", "{d}/enc"],
        ["decrypt", "{d}/enc", "{d}/out"],
        ["verify", "{d}/enc"],
        ["rewrap", "{d}"],
        ["reencrypt", "{d}"],
    ],
)
def test_no_credentials_is_exit_15_with_its_fix(command: list[str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "plain").write_bytes(b"x")
    argv = [KMSFLOW, *(a.format(d=tmp_path) for a in command)]
    result = subprocess.run(argv, capture_output=True, text=True, env=without_credentials(home), timeout=60)
    line = failed(result, 15)
    assert line.startswith("kmsflow: error: no usable Google credentials for Cloud KMS")
    assert "gcloud auth application-default login" in line and "GOOGLE_APPLICATION_CREDENTIALS=" in line
    assert "KMS_EMULATOR_HOST=host:port" in line


HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202e"  # retitles the terminal, clears it, reverses the text
SHOWN = "evil\\x1b]0;pwned\\x07\\x1b[2J\\u202e"


def test_a_hostile_name_in_an_error_is_escaped_on_one_line(emulator: Any, tmp_path: Path) -> None:
    missing = tmp_path / f"{HOSTILE}\n\t.enc"
    line = failed(run(emulator.endpoint, "verify", str(missing)), 3)
    assert f"{SHOWN}\\x0a\\x09.enc" in line and "\x1b" not in line and "\u202e" not in line


def test_a_hostile_name_in_a_terminal_summary_is_escaped(emulator: Any, key: str, tmp_path: Path) -> None:
    write_random(tmp_path / HOSTILE, 100)
    env = {k: v for k, v in os.environ.items() if k != "KMSFLOW_PRINCIPAL"}
    env.update(KMS_EMULATOR_HOST=emulator.endpoint, COLUMNS="200")
    dst = tmp_path / f"{HOSTILE}.enc"
    code, text = run_on_terminal([KMSFLOW, "encrypt", "--key", key, str(tmp_path / HOSTILE), str(dst)], env)
    assert code == 0, text
    assert f"into {tmp_path}/{SHOWN}.enc under" in text  # the summary (_note)
    assert "\x1b]" not in text and "\x07" not in text and "\u202e" not in text  # nor in the bar
