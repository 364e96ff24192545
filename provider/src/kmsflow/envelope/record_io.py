"""Read and parse envelope records where a scan or a lifecycle operation finds them.

One place for what inventory, rewrap, re-encrypt and erase all do with a record they did not
write: read at most the format's cap (locally with bare ``open``/``read``, one ranged GET on object
stores) and check that it fits where it was found (its kind, its file paths).
"""

from __future__ import annotations

from kmsflow.envelope.errors import RecordInvalidError
from kmsflow.envelope.layout import check_relpath
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.envelope.storage import Location


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
