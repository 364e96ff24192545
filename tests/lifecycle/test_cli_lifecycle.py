"""``kmsflow inventory``, ``kmsflow rewrap`` and ``kmsflow audit`` as subprocesses, as operators run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.cloud import kms_v1
from inventory.builders import make_file
from terminal import run_on_terminal

from kmsflow.audit import AuditLog
from kmsflow.kms import resources

KMSFLOW = str(Path(sys.executable).with_name("kmsflow"))


def run(endpoint: str, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KMSFLOW_PRINCIPAL", "KMSFLOW_AUDIT_LOG")}
    env.update(KMS_EMULATOR_HOST=endpoint, **env_extra)
    return subprocess.run([KMSFLOW, *args], capture_output=True, text=True, env=env, timeout=120)


def envelopes(kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, n: int) -> Path:
    """``n`` file envelopes ``a<i>.enc`` of 100 + i bytes under ``tmp_path/root``."""
    root = tmp_path / "root"
    for i in range(n):
        make_file(kms, key, tmp_path / "src", str(root / f"a{i}.enc"), 100 + i, seed=i)
    return root


def test_inventory_then_rewrap_then_inventory(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = envelopes(kms, key, tmp_path, 3)
    v1, v2 = f"{key}/cryptoKeyVersions/1", f"{key}/cryptoKeyVersions/2"

    before = run(emulator.endpoint, "inventory", str(root), "--json")
    assert before.returncode == 0, before.stderr
    report = json.loads(before.stdout)
    assert report["complete"] and report["versions"][v1]["envelopes"] == 3

    human = run(emulator.endpoint, "inventory", str(root))
    assert human.returncode == 0 and "complete" in human.stdout and f"{v1}: 3 envelope(s)" in human.stdout

    resources.rotate(kms, key)
    dry = run(emulator.endpoint, "rewrap", "--dry-run", str(root))
    assert dry.returncode == 0, dry.stderr
    assert (
        json.loads(run(emulator.endpoint, "inventory", str(root), "--json").stdout)["versions"][v1][
            "envelopes"
        ]
        == 3
    )

    done = run(emulator.endpoint, "rewrap", str(root))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rewrapped"] == 3
    after = json.loads(run(emulator.endpoint, "inventory", str(root), "--json").stdout)
    assert list(after["versions"]) == [v2] and after["versions"][v2]["envelopes"] == 3


def test_incomplete_inventory_exits_8_with_one_line(emulator: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "broken.enc.kmsflow.json").write_text("{not json")
    result = run(emulator.endpoint, "inventory", str(root), "--json")
    assert result.returncode == 8
    assert result.stderr.count("\n") == 1 and "scan incomplete" in result.stderr
    assert json.loads(result.stdout)["complete"] is False  # the report is printed anyway


def test_audit_view(emulator: Any, tmp_path: Path) -> None:
    location = str(tmp_path / "audit.jsonl")
    log = AuditLog(location, actor="user:ops@example.com", run="test")
    log.append(
        "disable",
        "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        reason="retired",
        evidence={"scan_id": "abc", "references": 0},
    )
    log.append("rotate", "projects/p/locations/l/keyRings/r/cryptoKeys/other", reason="manual")

    shown = run(
        emulator.endpoint,
        "audit",
        "--resource",
        "projects/p/locations/l/keyRings/r/cryptoKeys/k",
        KMSFLOW_AUDIT_LOG=location,
    )
    assert shown.returncode == 0, shown.stderr
    assert "disable" in shown.stdout and "scan_id=abc" in shown.stdout and "other" not in shown.stdout
    as_json = json.loads(run(emulator.endpoint, "audit", location, "--json").stdout)
    assert [e["action"] for e in as_json] == ["disable", "rotate"]

    missing = run(emulator.endpoint, "audit")
    assert missing.returncode == 2 and "KMSFLOW_AUDIT_LOG" in missing.stderr


def test_reencrypt_gives_a_new_data_key_and_keeps_the_plaintext(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / "a.enc"), 5000)
    record = tmp_path / "root" / "a.enc.kmsflow.json"
    before_id = json.loads(record.read_text())["envelope_id"]
    done = run(emulator.endpoint, "reencrypt", str(tmp_path / "root"))
    assert done.returncode == 0, done.stderr
    assert json.loads(record.read_text())["envelope_id"] != before_id
    out = tmp_path / "out"
    assert run(emulator.endpoint, "decrypt", str(tmp_path / "root" / "a.enc"), str(out)).returncode == 0
    assert out.read_bytes() == made.src.read_bytes()


def test_rewrap_shows_a_progress_bar_of_envelopes_on_a_terminal(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    for i in range(3):
        make_file(kms, key, tmp_path / "src", str(root / f"a{i}.enc"), seed=i)
    resources.rotate(kms, key)
    env = {k: v for k, v in os.environ.items() if k not in ("KMSFLOW_PRINCIPAL", "KMSFLOW_AUDIT_LOG")}
    env.update(KMS_EMULATOR_HOST=emulator.endpoint, COLUMNS="120")

    code, text = run_on_terminal([KMSFLOW, "rewrap", str(root)], env)

    assert code == 0
    assert "rewrap" in text and "3/3 envelopes" in text  # rich's bar: description, done/total, unit
    assert '"rewrapped": 3' in text  # the report, as when piped


def test_reencrypt_shows_a_progress_bar_of_bytes_on_a_terminal(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    for i in range(2):
        make_file(kms, key, tmp_path / "src", str(root / f"a{i}.enc"), 300_000, seed=i)
    env = {k: v for k, v in os.environ.items() if k not in ("KMSFLOW_PRINCIPAL", "KMSFLOW_AUDIT_LOG")}
    env.update(KMS_EMULATOR_HOST=emulator.endpoint, COLUMNS="120")

    code, text = run_on_terminal([KMSFLOW, "reencrypt", str(root)], env)

    assert code == 0
    assert "reencrypt + verify" in text and "1.2/1.2 MB" in text  # every byte read twice: 2 x 600 kB
    assert '"reencrypted": 2' in text  # the report, as when piped


HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202e"  # retitles the terminal, clears it, reverses the text
SHOWN = "evil\\x1b]0;pwned\\x07\\x1b[2J\\u202e"


def test_hostile_names_reach_the_terminal_escaped(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    made = make_file(kms, key, tmp_path / "src", str(root / f"{HOSTILE}.enc"))
    Path(made.dst).unlink()  # its record, without data: a finding that names it, and exit 8
    inventory = run(emulator.endpoint, "inventory", str(root))
    assert inventory.returncode == 8, inventory.stderr
    assert f"{SHOWN}.enc" in inventory.stdout and f"{SHOWN}.enc" in inventory.stderr
    assert "\x1b" not in inventory.stdout + inventory.stderr and "\u202e" not in inventory.stdout

    (root / f".{HOSTILE}.kmsflow-0123456789ab.part").write_bytes(b"x")
    clean = run(emulator.endpoint, "clean", str(root), "--older-than", "0")
    assert clean.returncode == 0, clean.stderr
    assert f"removed: {root}/.{SHOWN}.kmsflow-0123456789ab.part" in clean.stdout
    assert "\x1b" not in clean.stdout + clean.stderr

    as_json = run(emulator.endpoint, "inventory", str(root), "--json")
    assert "\x1b" not in as_json.stdout  # JSON escapes it, and keeps the name as it is:
    assert [f["url"] for f in json.loads(as_json.stdout)["findings"]] == [f"{root}/{HOSTILE}.enc"]


def test_rewrap_and_reencrypt_print_json_by_default_and_a_summary_on_request(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = envelopes(kms, key, tmp_path, 2)
    resources.rotate(kms, key)
    timing = ("started_at", "finished_at", "elapsed_s")

    for command in ("rewrap", "reencrypt"):
        default = json.loads(run(emulator.endpoint, command, "--dry-run", str(root)).stdout)
        explicit = json.loads(run(emulator.endpoint, command, "--dry-run", "--json", str(root)).stdout)
        assert {k: v for k, v in default.items() if k not in timing} == {
            k: v for k, v in explicit.items() if k not in timing
        }
        assert run(emulator.endpoint, command, "--json", "--human", str(root)).returncode == 2

    human = run(emulator.endpoint, "reencrypt", "--dry-run", "--human", str(root))
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("reencrypt: 2 envelope(s): would reencrypt 2 (2 file(s), 201 bytes)")
    human = run(emulator.endpoint, "rewrap", "--human", str(root))
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("rewrap: 2 envelope(s): rewrapped 2, already current 0, 0 conflict(s)")
    assert f"now under {key}/cryptoKeyVersions/2: 2" in human.stdout
