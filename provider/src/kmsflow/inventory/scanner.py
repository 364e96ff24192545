"""Scan roots for envelope records: one listing per root, records read in parallel, data never opened.

How every listed file is classified (layout: ``kmsflow.envelope.layout``), reading its path's
components from the root down, the first match deciding:

1. a directory holding ``_kmsflow/envelope.json`` is a **dataset** envelope: every file below it is
   its data (listed in its record) or a blocking **data without record**, whatever its name -- a
   nested envelope or a name that looks like a temp or a backup is data there. Under its
   ``_kmsflow/`` only the record and an interrupted rewrap's ``.envelope.json.kmsflow-<hex>.part``
   (a **stale temp**) may be; anything else is blocking. A file inside a dataset named like a
   record is read too, and counted as a reference if it parses (ciphertext never does);
2. a component named like kmsflow's staging temps (``.<name>.kmsflow-<hex>.tmp`` or ``.part``) is
   a **stale temp** (informational: a temp never holds a committed record; a decrypt's ``.plain``
   one is a **plaintext temp**, informational too), unless that staging
   directory holds :data:`REENCRYPT_COMMIT` (a GCS re-encrypt past its commit point: a blocking
   **reencrypt committed**, its envelope may be half replaced); one named like a re-encrypt backup
   (``.<name>.kmsflow-<envelope id>.old``) is a blocking **reencrypt backup** (it may hold the
   only data its envelope's record decrypts). A record that parses inside a temp directory (a
   staged envelope, or an envelope someone renamed to look like a temp) is counted as a reference
   marked ``in_temp``: it names a version, and the name alone proves nothing;
3. ``X.kmsflow.json`` outside any dataset is the sidecar record of the **file** envelope ``X``,
   and ``X.kmsflow.sig.json`` beside it (``_kmsflow/signature.json`` in a dataset) its signature
   record: never read (it names no version that decrypts anything), so a hostile or missing one
   changes nothing here;
4. anything else is **data without record** (a signature record without its envelope too).

What the listing itself could not account for (unlistable directories, special files, broken
symbolic links, links to directories outside every root: :mod:`kmsflow.inventory.listing`) is
blocking too.

Only records are read. A record's data is checked against the listing (present, ciphertext size
equal), which catches missing and truncated files without reading a byte of them; full
authentication is ``kmsflow verify``'s job. Every problem is a :class:`~kmsflow.inventory.model.Finding`;
the scan itself only fails on programming errors.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kmsflow.clock import format_time, utc_now
from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.layout import (
    DATASET_RECORD,
    PLAINTEXT_TEMP_NAME,
    REENCRYPT_BACKUP_NAME,
    RESERVED_DIR,
    SIDECAR_SUFFIX,
    is_reencrypt_backup_name,
    is_temp_name,
    owner_name,
    reserved_entry_allowed,
    signature_relpath,
)
from kmsflow.envelope.record import MAX_RECORD_SIZE, EnvelopeRecord
from kmsflow.envelope.record_io import parse_record, read_record_bytes
from kmsflow.envelope.storage import Location, resolve
from kmsflow.inventory.listing import Listing, RootUnreachableError, list_root
from kmsflow.inventory.model import EnvelopeRef, Finding, FindingKind, Inventory
from kmsflow.inventory.mounts import is_local_disk
from kmsflow.pools import chunks

REENCRYPT_COMMIT = f"{RESERVED_DIR}/COMMIT"
"""Inside a re-encrypt staging prefix on an object store: written once the staged envelope is
complete and verified; from then on the staged envelope is the truth and re-encrypt only rolls
forward (``kmsflow.lifecycle.reencryption.gcs``)."""

MAX_UNCOVERED_PER_ROOT = 1000
"""Data-without-record findings listed one by one per root; the rest are summarized in one finding."""

READ_CHUNK = 64
"""Records one scan thread reads and parses per task (see :func:`kmsflow.pools.chunks`)."""

LOCAL_READERS = 4
"""Most threads reading the records of a root on a local disk or tmpfs. A local record read is a
short system call, and parsing it is Python holding the GIL, so past a few threads more only
contend (measured in docs/BENCHMARKS.md, "Rewrap and inventory"). Four still overlap a slow disk.
Local paths on FUSE or network mounts (Cloud Storage FUSE, NFS) are read like object stores."""


def read_workers(root: Location, max_workers: int, mounts: str | None = None) -> int:
    """Threads to read ``root``'s records: ``max_workers`` where each read waits on a network
    (object stores, FUSE and network mounts, unknown filesystems), at most :data:`LOCAL_READERS`
    on a local disk or tmpfs. ``mounts`` as for :func:`kmsflow.inventory.mounts.filesystem_type`."""
    if root.is_local and is_local_disk(root.path, mounts):
        return min(max_workers, LOCAL_READERS)
    return max_workers


@dataclass(frozen=True)
class _Candidate:
    rel: str  # the record's path relative to the root
    kind: str  # "file" | "dataset"
    data_rel: str  # the envelope's path relative to the root ("" = the root itself)
    nested: bool = False  # named like a record inside a dataset or temp: a reference if it parses
    in_temp: bool = False  # inside a kmsflow temp directory (an interrupted write, or a renamed envelope)


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
    started = format_time(utc_now())
    refs: list[EnvelopeRef] = []
    findings: list[Finding] = []
    local_roots = [os.path.realpath(loc.path) for loc in _local(roots)]
    for root in roots:
        _scan_root(root, max_workers, local_roots, refs, findings)
    refs.sort(key=lambda r: (r.root, r.url))
    return Inventory(
        scan_id=uuid.uuid4().hex,
        started_at=started,
        finished_at=format_time(utc_now()),
        roots=tuple(roots),
        envelopes=tuple(refs),
        findings=tuple(findings),
    )


def _scan_root(
    url: str, max_workers: int, local_roots: Sequence[str], refs: list[EnvelopeRef], findings: list[Finding]
) -> None:
    try:
        root = resolve(url)
        listing = list_root(root, local_roots)
    except (RootUnreachableError, EnvelopeError) as exc:
        findings.append(Finding(FindingKind.UNREACHABLE_ROOT, url, str(exc)))
        return
    findings.extend(listing.findings)
    layout = _classify(listing)
    workers = read_workers(root, max_workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmsflow-scan") as pool:
        split = chunks(layout.records, workers, READ_CHUNK)
        outcomes = [o for chunk in pool.map(lambda cs: [_read(root, c) for c in cs], split) for o in chunk]

    covered: set[str] = set()
    claimed_dirs: set[str] = set()  # datasets whose record is unusable: don't also report their files
    # Envelopes a committed GCS re-encrypt is rolling forward: their objects may already differ
    # from the live record (CRC32C); the one REENCRYPT_COMMITTED finding below says why and what to do.
    temps = layout.temps
    replacing = {_staged_owner(top) for top in temps if _join(top, REENCRYPT_COMMIT) in listing.files}
    for outcome in outcomes:
        cand = outcome.candidate
        if not cand.nested:
            covered.add(signature_relpath(cand.data_rel, cand.kind))
        if outcome.record is None:
            if cand.nested:
                continue  # not a record: the enclosing dataset's data (its ciphertext, normally)
            covered.add(cand.rel)
            if outcome.finding is not None:
                findings.append(outcome.finding)
            if cand.kind == "dataset":
                claimed_dirs.add(cand.data_rel)
            else:
                covered.add(cand.data_rel)
            continue
        if not cand.nested:
            covered.add(cand.rel)
        data_rels = [_join(cand.data_rel, e.path) for e in outcome.record.files]
        covered.update(data_rels)
        problem = "" if cand.in_temp else _data_problem(outcome.record, data_rels, listing)
        if problem and cand.data_rel not in replacing:
            findings.append(Finding(FindingKind.RECORD_WITHOUT_DATA, root.child(cand.data_rel).url, problem))
        refs.append(_ref(url, root, cand, outcome.record))

    for top, what in sorted(temps.items()):
        findings.append(_temp_finding(root, listing, top, what))
    _report_uncovered(root, layout, covered, claimed_dirs, findings)


@dataclass
class _Layout:
    """What each listed file is, by where kmsflow puts things (see the module docstring)."""

    records: list[_Candidate]  # records to read: datasets', sidecars', look-alikes in datasets and temps
    temps: dict[str, str]  # temp top (file or dir) relpath -> "file" | "directory"
    owners: dict[str, str]  # relpath of a file inside a dataset -> the dataset's relpath
    loose: list[str]  # files outside every dataset and temp


def _classify(listing: Listing) -> _Layout:
    """Sort every listed path into datasets, temps and loose files, outermost first.

    Reserved names mean something only where kmsflow creates them: a path's components are read
    from the root down, and the first that is a dataset envelope (a directory holding
    ``_kmsflow/envelope.json``) or a temp/backup name decides. So everything inside a dataset --
    a nested envelope, a file named like a temp or a backup -- is that dataset's data.
    """
    dataset_dirs = {
        rel[: -len(DATASET_RECORD)].rstrip("/")
        for rel in listing.files
        if rel == DATASET_RECORD or rel.endswith("/" + DATASET_RECORD)
    }
    layout = _Layout(records=[], temps={}, owners={}, loose=[])
    for rel in listing.files:
        parts = rel.split("/")
        for i, part in enumerate(parts):
            head = "/".join(parts[:i])
            if head in dataset_dirs:
                layout.owners[rel] = head
                break
            if is_temp_name(part) or is_reencrypt_backup_name(part):
                layout.temps["/".join(parts[: i + 1])] = "directory" if i < len(parts) - 1 else "file"
                staged = i < len(parts) - 1 and is_temp_name(part)  # a backup is blocking anyway
                record_like = _record_candidate(rel) if staged and _may_be_record(listing, rel) else None
                if record_like is not None:
                    layout.records.append(dataclasses.replace(record_like, nested=True, in_temp=True))
                break
        else:
            layout.loose.append(rel)
    for dataset in sorted(set(layout.owners.values())):
        layout.records.append(_Candidate(_join(dataset, DATASET_RECORD), "dataset", dataset))
    for rel, dataset in layout.owners.items():
        if rel.startswith(_join(dataset, RESERVED_DIR) + "/"):
            continue
        record_like = _record_candidate(rel) if _may_be_record(listing, rel) else None
        if record_like is not None:
            layout.records.append(dataclasses.replace(record_like, nested=True))
    loose = set(layout.loose)
    for rel in layout.loose:
        cand = _record_candidate(rel)
        # A file envelope may itself be named "*.kmsflow.json": then its own sidecar is listed
        # too, and the name is data, not a record (encrypt refuses to write over a sidecar).
        if cand is not None and cand.kind == "file" and rel + SIDECAR_SUFFIX not in loose:
            layout.records.append(cand)
    return layout


def _may_be_record(listing: Listing, rel: str) -> bool:
    """A file named like a record where a record need not be is read only if it is small enough
    to be one (a multi-GB ciphertext named ``*.kmsflow.json`` inside a dataset is just data)."""
    return listing.files[rel] <= MAX_RECORD_SIZE


def _record_candidate(rel: str) -> _Candidate | None:
    """The record ``rel`` would be by its name (a dataset's or a sidecar), else None."""
    if rel == DATASET_RECORD or rel.endswith("/" + DATASET_RECORD):
        return _Candidate(rel, "dataset", rel[: -len(DATASET_RECORD)].rstrip("/"))
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(SIDECAR_SUFFIX) and name != SIDECAR_SUFFIX and RESERVED_DIR not in rel.split("/"):
        return _Candidate(rel, "file", rel[: -len(SIDECAR_SUFFIX)])
    return None


def _temp_finding(root: Location, listing: Listing, top: str, what: str) -> Finding:
    backup = REENCRYPT_BACKUP_NAME.match(top.rsplit("/", 1)[-1])
    if backup is not None:
        envelope = _join(top.rsplit("/", 1)[0] if "/" in top else "", backup.group("name"))
        return Finding(
            FindingKind.REENCRYPT_BACKUP,
            root.child(top).url,
            f"re-encrypt backup ({what}) of envelope {backup.group('id')} left by an "
            f"interrupted run; it may hold the data of {root.child(envelope).url}: rerun "
            "reencrypt on that envelope to resolve it (do not delete it by hand)",
        )
    if _join(top, REENCRYPT_COMMIT) in listing.files:
        owner = root.child(_staged_owner(top))
        return Finding(
            FindingKind.REENCRYPT_COMMITTED,
            root.child(top).url,
            f"committed re-encrypt staging: {owner.url} may be half replaced and only "
            "this staged envelope decrypts it; rerun reencrypt on it to roll forward (do "
            "not delete this by hand)",
        )
    if PLAINTEXT_TEMP_NAME.match(top.rsplit("/", 1)[-1]):
        return Finding(
            FindingKind.PLAINTEXT_TEMP,
            root.child(top).url,
            f"decrypted plaintext {what} of a decrypt that is running or was killed; "
            "kmsflow clean removes it unless its decrypt is alive",
        )
    return Finding(
        FindingKind.STALE_TEMP, root.child(top).url, f"kmsflow temp {what} left by an interrupted write"
    )


def _local(roots: Sequence[str]) -> list[Location]:
    """The local roots among ``roots`` (those that resolve; the scan reports the others)."""
    found = []
    for url in roots:
        try:
            loc = resolve(url)
        except EnvelopeError:
            continue
        if loc.is_local:
            found.append(loc)
    return found


def _staged_owner(top: str) -> str:
    """The envelope (relative path) a staging prefix ``.<name>.kmsflow-<hex>.tmp`` belongs to."""
    owner = owner_name(top.rsplit("/", 1)[-1])
    assert owner is not None
    return _join(top.rsplit("/", 1)[0] if "/" in top else "", owner)


def _read(root: Location, cand: _Candidate) -> _Outcome:
    loc = root.child(cand.rel)
    try:
        data = read_record_bytes(loc)
    except EnvelopeError as exc:  # larger than any record may be
        return _Outcome(cand, None, Finding(FindingKind.INVALID_RECORD, loc.url, str(exc)))
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
    root: Location, layout: _Layout, covered: set[str], claimed_dirs: set[str], findings: list[Finding]
) -> None:
    uncovered = 0
    reserved = [(rel, dataset) for rel, dataset in layout.owners.items() if rel not in covered]
    for rel, dataset in sorted(reserved + [(rel, None) for rel in layout.loose if rel not in covered]):
        if dataset is not None and dataset in claimed_dirs:
            continue
        if dataset is not None and rel.startswith(_join(dataset, RESERVED_DIR) + "/"):
            if reserved_entry_allowed(rel[len(_join(dataset, RESERVED_DIR)) + 1 :]):  # a rewrap's temp
                findings.append(
                    Finding(
                        FindingKind.STALE_TEMP,
                        root.child(rel).url,
                        "kmsflow temp file left by an interrupted write",
                    )
                )
                continue
            detail = (
                f"under {RESERVED_DIR}/ of dataset envelope {root.child(dataset).url}, where nothing "
                "but its record may be"
            )
        elif dataset is not None:
            detail = f"inside dataset envelope {root.child(dataset).url} but not in its record"
        else:
            detail = "no envelope record covers this file"
        uncovered += 1
        if uncovered <= MAX_UNCOVERED_PER_ROOT:
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
        in_temp=cand.in_temp,
    )


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    return f"{base}/{rel}" if rel else base
