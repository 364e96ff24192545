"""How a re-encrypt run reports its progress: in plaintext bytes (each read twice: re-encrypt and
verify) to a ``Progress`` (the CLI's bar) from the worker threads, and to the log -- progress lines
and a summary at INFO, one line per envelope only at DEBUG."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
from google.cloud import kms_v1

from kmsflow.lifecycle import reencrypt
from kmsflow.lifecycle.reencryption.progress import ByteMeter
from lifecycle.test_reencrypt import make_envelope

LOGGER = "kmsflow.lifecycle.reencrypt"  # the operation's log channel
run_module = sys.modules["kmsflow.lifecycle.reencryption.run"]
MIB = 1 << 20


class Recorder:
    """A ``Progress`` that remembers its calls and the threads they came from."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, str]] = []
        self.advances: list[int] = []
        self.threads: set[str] = set()

    def start(self, total: int, description: str) -> None:
        self.starts.append((total, description))

    def advance(self, n: int) -> None:
        self.advances.append(n)
        self.threads.add(threading.current_thread().name)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """re-encrypt's log, DEBUG and up, with a progress line due at every block ("a while" later)."""
    monkeypatch.setattr(run_module, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def messages(logs: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in logs.records if r.name == LOGGER and r.levelno == level]


def test_the_bar_counts_every_plaintext_byte_twice_block_by_block(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    make_envelope(kms, key, root / "model.bin", None, scratch, file_size=1_000_000)
    make_envelope(kms, key, root / "dataset", {"a": 300_000, "b/c": 1_000}, scratch, 1)
    plaintext = 1_000_000 + 301_000
    bar = Recorder()

    report = reencrypt(kms, [str(root)], max_workers=2, progress=bar)

    assert report.ok and report.reencrypted == 2
    assert bar.starts == [(2 * plaintext, "reencrypt + verify")]
    assert sum(bar.advances) == 2 * plaintext
    assert len(bar.advances) >= 8  # block by block (256 KiB), not once per envelope
    assert all(t.startswith("kmsflow-reencrypt") for t in bar.threads)  # from the workers


def test_a_failed_envelope_is_counted_as_done_so_the_bar_ends_at_its_total(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    make_envelope(kms, key, root / "flipped.enc", None, scratch, file_size=2_000_000)
    make_envelope(kms, key, root / "good.enc", None, scratch, 1, file_size=10_000)
    data = bytearray((root / "flipped.enc").read_bytes())
    data[1_500_000] ^= 1  # fails mid-stream, after part of it was counted
    (root / "flipped.enc").write_bytes(bytes(data))
    bar = Recorder()

    report = reencrypt(kms, [str(root)], max_workers=1, progress=bar)

    assert report.reencrypted == 1 and [Path(f.url).name for f in report.failures] == ["flipped.enc"]
    ((total, _),) = bar.starts
    assert total == 2 * (2_000_000 + 10_001)
    assert sum(bar.advances) == total


def test_envelopes_named_directly_are_sized_from_their_records_for_a_bar(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    make_envelope(kms, key, tmp_path / "a.enc", None, scratch, file_size=40_000)
    make_envelope(kms, key, tmp_path / "ds", {"x": 5_000, "y": 7_000}, scratch, 1)
    bar = Recorder()

    reencrypt(kms, [str(tmp_path / "a.enc"), str(tmp_path / "ds")], progress=bar)

    assert bar.starts == [(2 * (40_000 + 12_000), "reencrypt + verify")]
    assert sum(bar.advances) == 2 * 52_000


def test_each_envelope_is_a_debug_line_and_progress_lines_carry_bytes(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    for i in range(2):
        make_envelope(kms, key, root / f"{i}.enc", None, scratch, i, file_size=MIB // 2)

    report = reencrypt(kms, [str(root)], max_workers=1)

    assert report.reencrypted == 2
    debug = messages(logs, logging.DEBUG)
    assert sorted(line.split(":")[0] for line in debug) == [f"re-encrypted {root}/{i}.enc" for i in range(2)]
    *progress, summary = messages(logs, logging.INFO)
    assert progress[0].startswith(
        "reencrypt: 0 of 2 envelope(s) done, 0.2 of 2.0 MiB read (re-encrypt and verify), "
    )
    assert any(line.startswith("reencrypt: 1 of 2 envelope(s) done, 1.0 of 2.0 MiB") for line in progress)
    assert all(line.endswith(" MiB/s") for line in progress)
    assert summary.startswith("reencrypt: 2 envelope(s), 2 re-encrypted, 0 would be, 0 recovered,")
    assert "; 1.0 MiB of plaintext in " in summary
    assert not any(str(root) in line for line in [*progress, summary])  # no envelope named at INFO


def test_a_batch_of_named_envelopes_without_a_bar_logs_bytes_without_a_total(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    scratch = tmp_path / "scratch"
    for i in range(2):
        make_envelope(kms, key, tmp_path / f"{i}.enc", None, scratch, i, file_size=MIB // 2)

    reencrypt(kms, [str(tmp_path / f"{i}.enc") for i in range(2)], max_workers=1)

    *progress, _ = messages(logs, logging.INFO)
    assert progress[0].startswith(
        "reencrypt: 0 of 2 envelope(s) done, 0.2 MiB read (re-encrypt and verify), "
    )
    assert not any(" of 2.0 MiB" in line for line in progress)  # no record was read just for a total


def test_a_dry_run_reads_no_data_and_shows_no_progress(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    make_envelope(kms, key, tmp_path / "root" / "a.enc", None, tmp_path / "scratch", file_size=MIB)
    bar = Recorder()

    report = reencrypt(kms, [str(tmp_path / "root")], dry_run=True, progress=bar)

    assert report.would_reencrypt == 1
    assert bar.starts == [] and bar.advances == []
    (summary,) = messages(logs, logging.INFO)
    assert summary.startswith("reencrypt (dry run): 1 envelope(s), 0 re-encrypted, 1 would be,")


def test_an_envelope_never_advances_the_bar_past_its_share() -> None:
    """A record replaced by a bigger one between the scan (which sized the total) and the job."""
    bar = Recorder()
    meter = ByteMeter(bar, plaintext_bytes=10, envelopes=1, log=logging.getLogger(LOGGER), every_s=60.0)
    share = meter.for_envelope(10)

    share.advance(15)
    share.advance(15)
    share.finish()

    assert bar.starts == [(20, "reencrypt + verify")]
    assert bar.advances == [15, 5]  # then nothing: the share was used up
