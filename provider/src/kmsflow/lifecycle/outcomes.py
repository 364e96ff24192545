"""What a lifecycle operation did to each thing it visited, named once.

``StrEnum`` members are their strings: reports, XCom and JSON carry their plain string values, and
readers may compare with plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class EnvelopeStatus(StrEnum):
    """What a rewrap or a re-encrypt did to one envelope."""

    REWRAPPED = "rewrapped"
    WOULD_REWRAP = "would_rewrap"  # dry run
    CURRENT = "current"  # already wrapped by its key's primary: nothing to do
    REENCRYPTED = "reencrypted"
    WOULD_REENCRYPT = "would_reencrypt"  # dry run
    CONFLICT = "conflict"  # another writer changed it meanwhile; left as it was, rerun
    FAILED = "failed"


class TempStatus(StrEnum):
    """What ``kmsflow clean`` did to one temp."""

    REMOVED = "removed"
    WOULD_REMOVE = "would_remove"  # dry run
    KEPT = "kept"
    GONE = "gone"  # disappeared between the scan and its turn (its writer finished, or another clean)
    FAILED = "failed"
