"""Where an envelope's record sits relative to its data, and which relative paths are allowed.

* A **file** envelope ``DST`` is the ciphertext object ``DST`` plus the sidecar record
  ``DST.kmsflow.json`` next to it (so ``DST`` keeps the name and shape the user asked for).
* A **dataset** envelope ``DST/`` mirrors the source tree (same relative paths, ciphertext instead
  of plaintext) and holds its record at ``DST/_kmsflow/envelope.json``; everything under
  ``DST/_kmsflow/`` is reserved for kmsflow, so copying the directory copies the whole envelope.
* A signed envelope also has a **signature record** (``kmsflow.envelope.signature``): beside a file
  envelope's sidecar as ``DST.kmsflow.sig.json``, in a dataset's ``DST/_kmsflow/signature.json``.
  It names no key version that decrypts anything, so it never counts as a reference, and no
  reader needs it to decrypt.
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kmsflow.envelope.errors import InvalidPathError, RecordNotFoundError
from kmsflow.envelope.storage import Location, concurrently

SIDECAR_SUFFIX = ".kmsflow.json"
RESERVED_DIR = "_kmsflow"
DATASET_RECORD = f"{RESERVED_DIR}/envelope.json"
SIGNATURE_SUFFIX = ".kmsflow.sig.json"
DATASET_SIGNATURE = f"{RESERVED_DIR}/signature.json"

TEMP_SUFFIX = ".tmp"
"""A staging directory of ciphertext (encrypt's dataset tree, a re-encrypt staging directory)."""
PART_SUFFIX = ".part"
"""A staged ciphertext file or record (encrypt's file envelope and sidecar, rewrap's new record)."""
PLAINTEXT_TEMP_SUFFIX = ".plain"
"""A decrypt's staged plaintext, a file or a whole dataset tree (mode 0600/0700, ``flock``ed by
the live decrypt). Its own suffix so that a leftover is recognisable as decrypted data by name:
``kmsflow clean`` removes it at once, it is never needed to recover anything."""

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.kmsflow-[0-9a-f]+\.(?:tmp|part|plain)$")
"""``.<name>.kmsflow-<hex>.tmp|.part|.plain``: every staging temp name kmsflow writes, always
beside what it will become (and, for a rewrap of a dataset's record, inside its ``_kmsflow/``),
never elsewhere inside a dataset."""
PLAINTEXT_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.kmsflow-[0-9a-f]+\.plain$")
"""The staging temp names that hold plaintext (decrypt's), see :data:`PLAINTEXT_TEMP_SUFFIX`."""


def temp_name(name: str, suffix: str) -> str:
    """A new random staging temp name for ``name``: ``.<name>.kmsflow-<12 hex>`` + ``suffix``."""
    return f".{name}.kmsflow-{secrets.token_hex(6)}{suffix}"


REENCRYPT_BACKUP_NAME = re.compile(r"^\.(?P<name>.+)\.kmsflow-(?P<id>[0-9a-f]{32})\.old$")
"""``.<name>.kmsflow-<envelope id>.old``: the old data an interrupted re-encrypt set aside (a hard
link to a file envelope's data, or a whole dataset directory). The id is the envelope whose data it
holds, so whoever finds it can tell whether it is still needed (the record beside it names that id,
or the dataset is missing) or garbage. See ``kmsflow.lifecycle.reencrypt`` and docs/FORMAT.md §9."""


def reencrypt_backup(envelope: Location, envelope_id: str) -> Location:
    """Where re-encrypt sets aside the old data of envelope ``envelope_id`` living at ``envelope``."""
    return envelope.sibling(f".{envelope.name}.kmsflow-{envelope_id}.old")


def reencrypt_backups(envelope: Location) -> list[tuple[Location, str]]:
    """Re-encrypt backups of the local envelope at ``envelope`` as (location, envelope id), sorted.

    One listing of the parent directory. Object stores have none: re-encrypt on GCS never sets old
    data aside, it rolls a committed staging prefix forward (:mod:`kmsflow.lifecycle.reencryption.gcs`).
    """
    if not envelope.is_local:
        return []
    parent = os.path.dirname(envelope.path.rstrip(os.sep)) or "."
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    found = []
    for name in names:
        m = REENCRYPT_BACKUP_NAME.match(name)
        if m and m.group("name") == envelope.name:
            found.append((envelope.sibling(name), m.group("id")))
    return found


def is_temp_name(name: str) -> bool:
    """True for a kmsflow staging temp name (one path component)."""
    return bool(TEMP_NAME.match(name))


def is_reencrypt_backup_name(name: str) -> bool:
    """True for a re-encrypt backup name (one path component)."""
    return bool(REENCRYPT_BACKUP_NAME.match(name))


def owner_name(name: str) -> str | None:
    """The name of what the temp or backup ``name`` (one path component) stands beside and belongs
    to (``.model.bin.kmsflow-3fa9c1.part`` -> ``model.bin``); None for any other name."""
    m = TEMP_NAME.match(name) or REENCRYPT_BACKUP_NAME.match(name)
    return m.group("name") if m else None


def reserved_entry_allowed(name: str) -> bool:
    """True for what may live in a dataset's ``_kmsflow/`` (a ``/``-separated path below it): the
    record, the signature record, and the temp an interrupted write of either left behind.
    Anything else is not the format."""
    return "/" not in name and (name in _RESERVED_ENTRIES or is_temp_name(name))


_RESERVED_ENTRIES = (DATASET_RECORD.rsplit("/", 1)[-1], DATASET_SIGNATURE.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class DestinationProbe:
    """What stands in the way of writing at a destination (:func:`probe_destination`)."""

    taken: Location | None  # the first of the outputs asked about that exists already
    enclosing: Location | None  # the dataset envelope the destination would be written into


def probe_destination(dst: Location, outputs: Sequence[Location]) -> DestinationProbe:
    """Which of ``outputs`` (the destination and its records) exists already, and the dataset
    envelope ``dst`` would be written into, if any: the nearest directory above ``dst`` (links
    resolved, locally; never a bucket) that holds a dataset record.

    On an object store each of these questions is a round trip (two for a missing object, with
    gcsfs), so all of them are asked at once; locally they are a few ``stat`` calls, in turn.
    """
    if dst.is_local:
        parent = os.path.realpath(os.path.dirname(dst.path.rstrip(os.sep)) or ".")
        candidates = [Location(parent)]
        while os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
            candidates.append(Location(parent))
    else:
        parts = dst.path.rstrip("/").split("/")
        above = range(len(parts) - 1, 1, -1)
        candidates = [Location("/".join(parts[:i]), dst.fs, dst.protocol) for i in above]
    checks = [out.exists for out in outputs] + [c.child(DATASET_RECORD).isfile for c in candidates]
    found = [check() for check in checks] if dst.is_local else concurrently(checks)
    exist, held = found[: len(outputs)], found[len(outputs) :]
    taken = next((out for out, there in zip(outputs, exist, strict=True) if there), None)
    enclosing = next((c for c, has in zip(candidates, held, strict=True) if has), None)
    return DestinationProbe(taken, enclosing)


def record_location(dst: Location, kind: str) -> Location:
    """Where the record of an envelope written to ``dst`` lives."""
    if kind == "dataset":
        return dst.child(DATASET_RECORD)
    return dst.sibling(dst.name + SIDECAR_SUFFIX)


def signature_location(dst: Location, kind: str) -> Location:
    """Where the signature record of the envelope at ``dst`` lives."""
    if kind == "dataset":
        return dst.child(DATASET_SIGNATURE)
    return dst.sibling(dst.name + SIGNATURE_SUFFIX)


def signature_relpath(envelope_rel: str, kind: str) -> str:
    """:func:`signature_location` as a ``/``-separated path relative to a scanned root."""
    if kind == "dataset":
        return f"{envelope_rel}/{DATASET_SIGNATURE}" if envelope_rel else DATASET_SIGNATURE
    return envelope_rel + SIGNATURE_SUFFIX


def data_location(root: Location, relpath: str) -> Location:
    """The ciphertext (or plaintext output) of ``relpath`` ('' = the file envelope itself)."""
    return root.child(relpath)


def locate(src: Location) -> tuple[str, Location, Location]:
    """(kind, envelope root, record location) for ``src``: the path encrypt was given as DST.

    The record's own path is accepted too (``X.kmsflow.json`` or ``X/_kmsflow/envelope.json``).
    """
    path = src.path.rstrip("/")
    if path.endswith(SIDECAR_SUFFIX) and src.isfile():
        return "file", Location(path[: -len(SIDECAR_SUFFIX)], src.fs, src.protocol), src
    suffix = "/" + DATASET_RECORD
    native_suffix = suffix if not src.is_local else suffix.replace("/", os.sep)
    if path.endswith(native_suffix) and src.isfile():
        return "dataset", Location(path[: -len(native_suffix)], src.fs, src.protocol), src
    dataset_record = src.child(DATASET_RECORD)
    if src.isdir():
        if dataset_record.isfile():
            return "dataset", src, dataset_record
        raise RecordNotFoundError(f"{src.url}: not a kmsflow envelope (no {DATASET_RECORD} inside)")
    sidecar = record_location(src, "file")
    if sidecar.isfile():
        return "file", src, sidecar
    if not src.exists():
        raise RecordNotFoundError(f"{src.url}: no such envelope")
    raise RecordNotFoundError(f"{src.url}: not a kmsflow envelope (no sidecar {sidecar.name})")


def check_normalization(paths: Iterable[str]) -> None:
    """Refuse two paths that differ only by Unicode normalization (``é`` as one code point or as
    ``e`` + a combining accent): a normalizing filesystem (macOS) would store them as one file, so
    the dataset could not be decrypted there. Paths are otherwise kept exactly as written."""
    seen: dict[str, str] = {}
    for path in paths:
        other = seen.setdefault(unicodedata.normalize("NFC", path), path)
        if other != path:
            raise InvalidPathError(
                f"{other!r} and {path!r} differ only by Unicode normalization; rename one of them"
            )


def renamed_by_normalization(missing: Iterable[str], present: Iterable[str]) -> tuple[str, str] | None:
    """A (recorded, found) pair of paths equal after NFC normalization: a filesystem that
    normalizes names (or a copy through one) renamed the file."""
    found = {unicodedata.normalize("NFC", p): p for p in present}
    for path in missing:
        other = found.get(unicodedata.normalize("NFC", path))
        if other is not None:
            return path, other
    return None


def check_relpath(relpath: str, *, dataset: bool) -> str:
    """Reject paths that could escape the destination or collide with kmsflow's own files."""
    if not dataset:
        if relpath != "":
            raise InvalidPathError(
                f"a file envelope has exactly one entry with an empty path, not {relpath!r}"
            )
        return relpath
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPathError(f"{relpath!r}: file name is not valid UTF-8; rename it first") from None
    parts = relpath.split("/")
    if (
        not relpath
        or relpath.startswith("/")
        or "\\" in relpath
        or "\x00" in relpath
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidPathError(f"{relpath!r}: not a clean relative path inside the dataset")
    if parts[0] == RESERVED_DIR:
        raise InvalidPathError(
            f"{relpath!r}: '{RESERVED_DIR}/' is reserved for kmsflow records "
            "(is the source already an envelope?)"
        )
    return relpath
