"""The record's size caps, as plain numbers: what readers accept and encrypt may write.

Apart from the record model (``kmsflow.envelope.record``, which re-exports them) so that a reader
that only needs the cap (``storage``'s capped reads, and through it the audit log) does not load
the model (docs/BENCHMARKS.md, CLI start-up).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

MAX_RECORD_FILES = 200_000
"""The most files one envelope may hold. ``encrypt`` refuses a larger dataset before any KMS call
(split it into several envelopes, or pack it into fewer shards); readers refuse a longer list."""
ENTRY_BOUND = 300
"""Bytes a file entry takes in a record beyond its JSON-quoted path, at most: ~150 in the record's
indented JSON (with 20-digit sizes), and its compact copy in the manifest (~110) grown by 4/3 by
base64. The path itself counts 7/3 times: once in the record, 4/3 times in the manifest."""
RECORD_BOUND = 8 << 10
"""Bytes a record takes besides its file entries, at most (ids, key names, the wrapped keyset)."""
MAX_RECORD_SIZE = 128 << 20
"""The largest record a reader accepts (bytes), sized for :data:`MAX_RECORD_FILES`: 200,000 entries
of :data:`ENTRY_BOUND` + 7/3 x their quoted path fit in 128 MiB for paths averaging up to ~155
bytes. Why a cap: a record is input written by whoever may encrypt, and parsing one costs about 20x
its size in memory; readers read at most this + 1 bytes of it (``storage.read_file``)."""


def record_too_large(where: str) -> str:
    """The message for a record past :data:`MAX_RECORD_SIZE` (read no further than that)."""
    return f"{where}: record larger than {MAX_RECORD_SIZE >> 20} MiB, the format's limit; not read"


def record_size_bound(paths: Iterable[str]) -> int:
    """At most how many bytes the record of a dataset holding ``paths`` takes (see
    :data:`ENTRY_BOUND`), so that encrypt can refuse up front what readers would refuse."""
    total = RECORD_BOUND
    for path in paths:
        quoted = len(json.dumps(path, ensure_ascii=False).encode())
        total += ENTRY_BOUND + -(-7 * quoted // 3)
    return total
