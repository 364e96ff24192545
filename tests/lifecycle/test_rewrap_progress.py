"""How a rewrap run reports its progress: to a ``Progress`` (the CLI's bar), and to the log --
progress and a summary at INFO, one line per envelope only at DEBUG (an Airflow batch of 100,000
envelopes must not write 100,000 task-log lines)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from google.cloud import kms_v1
from inventory.builders import make_file

from kmsflow.kms import resources
from kmsflow.lifecycle import rewrap

LOGGER = "kmsflow.lifecycle.rewrap"
rewrap_module = sys.modules[LOGGER]  # the package exports the function under the module's name


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_each_envelope_is_a_debug_line_and_the_run_one_info_summary(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = [make_file(kms, key, tmp_path / "src", str(tmp_path / f"root/{i}.enc"), seed=i) for i in range(3)]
    v1 = made[0].record.key.crypto_key_version
    v2 = resources.rotate(kms, key).name
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    report = rewrap(kms, [m.dst for m in made], max_workers=2)

    assert report.rewrapped == 3
    assert sorted(messages(caplog, logging.DEBUG)) == sorted(f"rewrapped {m.dst}: {v1} -> {v2}" for m in made)
    (summary,) = messages(caplog, logging.INFO)  # a short run: no progress line, just the summary
    assert summary.startswith(
        "rewrap: 3 of 3 envelope(s) done (3 rewrapped, 0 would be, 0 current, 0 conflict(s), 0 failure(s)), "
    )
    assert summary.endswith("/s")


def test_a_long_run_logs_its_progress_between_chunks(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = [make_file(kms, key, tmp_path / "src", str(tmp_path / f"root/{i}.enc"), seed=i) for i in range(4)]
    resources.rotate(kms, key)
    monkeypatch.setattr(rewrap_module, "PROGRESS_EVERY_S", 0.0)  # every chunk is "a while" later
    caplog.set_level(logging.INFO, logger=LOGGER)

    report = rewrap(kms, [m.dst for m in made], max_workers=4, dry_run=True)  # four chunks of one

    assert report.would_rewrap == 4
    lines = messages(caplog, logging.INFO)
    assert [line.split(" done ")[0] for line in lines] == [
        "rewrap (dry run): 1 of 4 envelope(s)",
        "rewrap (dry run): 2 of 4 envelope(s)",
        "rewrap (dry run): 3 of 4 envelope(s)",
        "rewrap (dry run): 4 of 4 envelope(s)",  # the summary
    ]
    assert "(0 rewrapped, 3 would be, 0 current, 0 conflict(s), 0 failure(s))" in lines[2]
    assert not any(m.dst in line for m in made for line in lines)  # no envelope is named at INFO


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def start(self, total: int, description: str) -> None:
        self.calls.append(("start", (total, description)))

    def advance(self, n: int) -> None:
        self.calls.append(("advance", n))


def test_progress_is_started_with_the_envelopes_found_and_advanced_to_them(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = [make_file(kms, key, tmp_path / "src", str(tmp_path / f"root/{i}.enc"), seed=i) for i in range(5)]
    resources.rotate(kms, key)
    live, dry = Recorder(), Recorder()

    rewrap(kms, [str(tmp_path / "root")], max_workers=2, dry_run=True, progress=dry)
    report = rewrap(kms, [str(tmp_path / "root")], max_workers=2, progress=live)

    assert report.rewrapped == len(made)
    assert dry.calls[0] == ("start", (5, "rewrap dry run"))
    assert live.calls == [("start", (5, "rewrap")), ("advance", 3), ("advance", 2)]  # two chunks
