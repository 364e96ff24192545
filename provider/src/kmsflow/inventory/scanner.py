"""Scan roots for envelope records: one listing per root, records read in parallel, data never opened.

How every listed file is classified (layout: ``kmsflow.envelope.layout``):

1. a path with a component named like kmsflow's staging temps (``.<name>.kmsflow-<hex>.tmp`` or
   ``.part``) is a **stale temp** (informational: a temp never holds a committed record), unless
   that staging directory holds :data:`REENCRYPT_COMMIT` (a GCS re-encrypt past its commit point:
   a blocking **reencrypt committed**, its envelope may be half replaced); one named like a
   re-encrypt backup (``.<name>.kmsflow-<envelope id>.old``) is a blocking **reencrypt backup**
   (it may hold the only data its envelope's record decrypts);
2. ``D/_kmsflow/envelope.json`` is the record of the **dataset** envelope ``D``; every file under
   ``D`` is that envelope's (listed in its record, or reserved under ``D/_kmsflow/``) or is reported
   as data without record;
3. ``X.kmsflow.json`` outside any dataset is the sidecar record of the **file** envelope ``X``;
4. anything else is **data without record**.

Only records are read. A record's data is checked against the listing (present, ciphertext size
equal), which catches missing and truncated files without reading a byte of them; full
authentication is ``kmsflow verify``'s job. Every problem is a :class:`~kmsflow.inventory.model.Finding`;
the scan itself only fails on programming errors.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from kmsflow.envelope.errors import EnvelopeError, RecordInvalidError
from kmsflow.envelope.layout import (
    DATASET_RECORD,
    REENCRYPT_BACKUP_NAME,
    RESERVED_DIR,
    SIDECAR_SUFFIX,
    check_relpath,
)
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.envelope.storage import Location, resolve
from kmsflow.inventory.listing import Listing, RootUnreachableError, list_root
from kmsflow.inventory.model import EnvelopeRef, Finding, FindingKind, Inventory
from kmsflow.inventory.mounts import is_local_disk
from kmsflow.pools import chunks

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.kmsflow-[0-9a-f]+\.(?:tmp|part)$")
"""kmsflow's staging names (``envelope.staging``; also used by rewrap for new records)."""

REENCRYPT_COMMIT = f"{RESERVED_DIR}/COMMIT"
"""Inside a re-encrypt staging prefix on an object store: written once the staged envelope is
complete and verified; from then on the staged envelope is the truth and re-encrypt only rolls
forward (``kmsflow.lifecycle.reencrypt_gcs``)."""

MAX_UNCOVERED_PER_ROOT = 1000
"""Data-without-record findings listed one by one per root; the rest are summarized in one finding."""

READ_CHUNK = 64
"""Records one scan thread reads and parses per task (see :func:`kmsflow.pools.chunks`)."""

LOCAL_READERS = 4
"""Most threads reading the records of a root on a local disk or tmpfs. A local record read is a
short system call, and parsing it is Python holding the GIL, so past a few threads more only
contend: 50,000 records on this project's benchmark VM, page cache dropped, took 7.9 s with 2
threads, 8.4 s with 4 and 11.2 s with 16 (docs/BENCHMARKS.md). Four still overlap a slow disk.
Local paths on FUSE or network mounts (Cloud Storage FUSE, NFS) are read like object stores."""


def read_workers(root: Location, max_workers: int, mounts: str | None = None) -> int:
    """Threads to read ``root``'s records: ``max_workers`` where each read waits on a network
    (object stores, FUSE and network mounts, unknown filesystems), at most :data:`LOCAL_READERS`
    on a local disk or tmpfs. ``mounts`` as for :func:`kmsflow.inventory.mounts.filesystem_type`."""
    if root.is_local and is_local_disk(root.path, mounts):
        return min(max_workers, LOCAL_READERS)
    return max_workers


def now_rfc3339() -> str:
    """UTC now with milliseconds, e.g. 2026-11-30T10:05:25.123Z (scan start/finish times)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_temp_name(name: str) -> bool:
    """True for a kmsflow staging temp name (one path component)."""
    return bool(TEMP_NAME.match(name))


def is_reencrypt_backup_name(name: str) -> bool:
    """True for a re-encrypt backup name (one path component), see ``envelope.layout``."""
    return bool(REENCRYPT_BACKUP_NAME.match(name))


def read_record_bytes(loc: Location) -> bytes:
    """The bytes of a record: ``read_file`` locally, one ranged GET on object stores, never more
    than the format's cap + 1 bytes (``Location.read_bytes``; past it, ``RecordInvalidError``)."""
    return loc.read_bytes()


def parse_record(data: bytes, where: str, kind: str) -> EnvelopeRecord:
    """Parse a record and check it fits where it was found (kind, file paths).

    Raises :class:`RecordInvalidError` (or another ``EnvelopeError``) with a one-line reason.
    """
    record = EnvelopeRecord.from_json(data, where)
    if record.kind != kind:
        raise RecordInvalidError(f"{where}: record is for a {record.kind} envelope, found as a {kind} record")
    if kind == "file" and len(record.files) != 1:
        raise RecordInvalidError(f"{where}: a file envelope must list exactly one file")
    for entry in record.files:
        check_relpath(entry.path, dataset=(kind == "dataset"))
    return record


@dataclass(frozen=True)
class _Candidate:
    rel: str  # the record's path relative to the root
    kind: str  # "file" | "dataset"
    data_rel: str  # the envelope's path relative to the root ("" = the root itself)


@dataclass(frozen=True)
class _Outcome:
    candidate: _Candidate
    record: EnvelopeRecord | None
    finding: Finding | None


def scan(roots: Sequence[str], *, max_workers: int = 16) -> Inventory:
    """List every root once, read every envelope record, and report.

    Records are read by ``max_workers`` threads where each read waits on a network (object stores,
    FUSE and network mounts), by at most :data:`LOCAL_READERS` on a local disk (:func:`read_workers`).

    Never raises for storage problems: a missing root, an unreadable or invalid record, a record
    whose data is missing or truncated, and data no record covers are findings, and any blocking
    finding makes ``Inventory.complete`` false.
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    started = now_rfc3339()
    refs: list[EnvelopeRef] = []
    findings: list[Finding] = []
    for root in roots:
        _scan_root(root, max_workers, refs, findings)
    refs.sort(key=lambda r: (r.root, r.url))
    return Inventory(
        scan_id=uuid.uuid4().hex,
        started_at=started,
        finished_at=now_rfc3339(),
        roots=tuple(roots),
        envelopes=tuple(refs),
        findings=tuple(findings),
    )


def _scan_root(url: str, max_workers: int, refs: list[EnvelopeRef], findings: list[Finding]) -> None:
    try:
        root = resolve(url)
        listing = list_root(root)
    except (RootUnreachableError, EnvelopeError) as exc:
        findings.append(Finding(FindingKind.UNREACHABLE_ROOT, url, str(exc)))
        return
    for where, detail in listing.errors:
        findings.append(Finding(FindingKind.UNREACHABLE_ROOT, where, detail))

    temps: dict[str, str] = {}  # temp top (file or dir) relpath -> kind of temp
    datasets: list[_Candidate] = []
    sidecars: list[_Candidate] = []
    for rel in listing.files:
        parts = rel.split("/")
        temp_at = next(
            (i for i, p in enumerate(parts) if is_temp_name(p) or is_reencrypt_backup_name(p)), None
        )
        if temp_at is not None:
            temps["/".join(parts[: temp_at + 1])] = "directory" if temp_at < len(parts) - 1 else "file"
        elif rel == DATASET_RECORD or rel.endswith("/" + DATASET_RECORD):
            datasets.append(_Candidate(rel, "dataset", rel[: -len(DATASET_RECORD)].rstrip("/")))
        elif parts[-1].endswith(SIDECAR_SUFFIX) and parts[-1] != SIDECAR_SUFFIX and RESERVED_DIR not in parts:
            sidecars.append(_Candidate(rel, "file", rel[: -len(SIDECAR_SUFFIX)]))

    # Datasets first: a sidecar-looking name inside a dataset is that dataset's data, not a record.
    dataset_dirs = {c.data_rel for c in datasets}
    sidecars = [c for c in sidecars if not _under_any(c.rel, dataset_dirs)]
    # A file envelope may itself be named "*.kmsflow.json": then its own sidecar is listed too,
    # and the name is data, not a record (encrypt refuses to write over an existing sidecar).
    sidecars = [c for c in sidecars if c.rel + SIDECAR_SUFFIX not in listing.files]
    workers = read_workers(root, max_workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmsflow-scan") as pool:
        split = chunks(datasets + sidecars, workers, READ_CHUNK)
        outcomes = [o for chunk in pool.map(lambda cs: [_read(root, c) for c in cs], split) for o in chunk]

    covered: set[str] = set()
    claimed_dirs: set[str] = set()  # datasets whose record is unusable: don't also report their files
    # Envelopes a committed GCS re-encrypt is rolling forward: their objects may already differ
    # from the live record (CRC32C); the one REENCRYPT_COMMITTED finding below says why and what to do.
    replacing = {_staged_owner(top) for top in temps if _join(top, REENCRYPT_COMMIT) in listing.files}
    for outcome in outcomes:
        cand = outcome.candidate
        covered.add(cand.rel)
        if outcome.finding is not None:
            findings.append(outcome.finding)
        if outcome.record is None:
            if cand.kind == "dataset":
                claimed_dirs.add(cand.data_rel)
            else:
                covered.add(cand.data_rel)
            continue
        data_rels = [_join(cand.data_rel, e.path) for e in outcome.record.files]
        covered.update(data_rels)
        problem = _data_problem(outcome.record, data_rels, listing)
        if problem and cand.data_rel not in replacing:
            findings.append(Finding(FindingKind.RECORD_WITHOUT_DATA, root.child(cand.data_rel).url, problem))
        refs.append(_ref(url, root, cand, outcome.record))

    for top, what in sorted(temps.items()):
        backup = REENCRYPT_BACKUP_NAME.match(top.rsplit("/", 1)[-1])
        if backup is not None:
            envelope = _join(top.rsplit("/", 1)[0] if "/" in top else "", backup.group("name"))
            findings.append(
                Finding(
                    FindingKind.REENCRYPT_BACKUP,
                    root.child(top).url,
                    f"re-encrypt backup ({what}) of envelope {backup.group('id')} left by an "
                    f"interrupted run; it may hold the data of {root.child(envelope).url}: rerun "
                    "reencrypt on that envelope to resolve it (do not delete it by hand)",
                )
            )
            continue
        if _join(top, REENCRYPT_COMMIT) in listing.files:
            owner = root.child(_staged_owner(top))
            findings.append(
                Finding(
                    FindingKind.REENCRYPT_COMMITTED,
                    root.child(top).url,
                    f"committed re-encrypt staging: {owner.url} may be half replaced and only "
                    "this staged envelope decrypts it; rerun reencrypt on it to roll forward (do "
                    "not delete this by hand)",
                )
            )
            continue
        findings.append(
            Finding(
                FindingKind.STALE_TEMP,
                root.child(top).url,
                f"kmsflow temp {what} left by an interrupted write",
            )
        )
    _report_uncovered(root, listing, covered, dataset_dirs, claimed_dirs, set(temps), findings)


def _staged_owner(top: str) -> str:
    """The envelope (relative path) a staging prefix ``.<name>.kmsflow-<hex>.tmp`` belongs to."""
    m = TEMP_NAME.match(top.rsplit("/", 1)[-1])
    assert m is not None
    return _join(top.rsplit("/", 1)[0] if "/" in top else "", m.group("name"))


def _read(root: Location, cand: _Candidate) -> _Outcome:
    loc = root.child(cand.rel)
    try:
        data = read_record_bytes(loc)
    except OSError as exc:
        detail = f"cannot read record ({exc.__class__.__name__}: {exc.strerror or exc})"
        return _Outcome(cand, None, Finding(FindingKind.UNREADABLE_RECORD, loc.url, detail))
    except Exception as exc:  # object-store client errors are not always OSError
        detail = f"cannot read record ({exc.__class__.__name__}: {exc})"
        return _Outcome(cand, None, Finding(FindingKind.UNREADABLE_RECORD, loc.url, detail))
    try:
        return _Outcome(cand, parse_record(data, loc.url, cand.kind), None)
    except EnvelopeError as exc:
        return _Outcome(cand, None, Finding(FindingKind.INVALID_RECORD, loc.url, str(exc)))


def _data_problem(record: EnvelopeRecord, data_rels: list[str], listing: Listing) -> str:
    missing: list[str] = []
    wrong: list[str] = []
    altered: list[str] = []
    for entry, rel in zip(record.files, data_rels, strict=True):
        size = listing.files.get(rel)
        crc = listing.crc32c.get(rel)
        if size is None:
            missing.append(rel)
        elif size != entry.ciphertext_size:
            wrong.append(f"{rel!r} is {size} bytes, record says {entry.ciphertext_size}")
        elif crc is not None and crc != entry.ciphertext_crc32c:
            altered.append(f"{rel!r} has CRC32C {crc}, record says {entry.ciphertext_crc32c}")
    parts = []
    if missing:
        parts.append(f"{len(missing)} file(s) missing, e.g. {missing[0]!r}")
    if wrong:
        parts.append(f"{len(wrong)} file(s) with another ciphertext size, e.g. {wrong[0]}")
    if altered:
        parts.append(f"{len(altered)} file(s) corrupted or replaced (stored CRC32C), e.g. {altered[0]}")
    return "; ".join(parts)


def _report_uncovered(
    root: Location,
    listing: Listing,
    covered: set[str],
    dataset_dirs: set[str],
    claimed_dirs: set[str],
    temps: set[str],
    findings: list[Finding],
) -> None:
    uncovered = 0
    for rel in sorted(listing.files):
        if rel in covered or _under_any(rel, temps) or _under_any(rel, claimed_dirs):
            continue
        owner = _owner(rel, dataset_dirs)
        if owner is not None and rel.startswith(_join(owner, RESERVED_DIR) + "/"):
            continue  # reserved for kmsflow inside a dataset
        uncovered += 1
        if uncovered > MAX_UNCOVERED_PER_ROOT:
            continue
        if owner is not None:
            detail = f"inside dataset envelope {root.child(owner).url} but not in its record"
        else:
            detail = "no envelope record covers this file"
        findings.append(Finding(FindingKind.DATA_WITHOUT_RECORD, root.child(rel).url, detail))
    if uncovered > MAX_UNCOVERED_PER_ROOT:
        extra = uncovered - MAX_UNCOVERED_PER_ROOT
        findings.append(
            Finding(
                FindingKind.DATA_WITHOUT_RECORD, root.url, f"{extra} more file(s) without record not listed"
            )
        )


def _ref(root_url: str, root: Location, cand: _Candidate, record: EnvelopeRecord) -> EnvelopeRef:
    return EnvelopeRef(
        url=root.child(cand.data_rel).url,
        record_url=root.child(cand.rel).url,
        root=root_url,
        envelope_id=record.envelope_id,
        kind=record.kind,
        crypto_key=record.key.crypto_key,
        crypto_key_version=record.key.crypto_key_version,
        files=len(record.files),
        plaintext_bytes=record.plaintext_size,
        ciphertext_bytes=record.ciphertext_size,
        created=record.created,
        wrapped_at=record.key.wrapped_at,
    )


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    return f"{base}/{rel}" if rel else base


def _owner(rel: str, dirs: set[str]) -> str | None:
    """The innermost directory of ``dirs`` that contains ``rel`` ("" = the root), if any."""
    parts = rel.split("/")
    for i in range(len(parts) - 1, -1, -1):
        prefix = "/".join(parts[:i])
        if prefix in dirs:
            return prefix
    return None


def _under_any(rel: str, tops: set[str]) -> bool:
    """True if ``rel`` is one of ``tops`` or below one of them."""
    if not tops:
        return False
    return rel in tops or _owner(rel, tops) is not None
