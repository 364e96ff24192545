"""Find envelope records under roots and count references per CryptoKey and CryptoKeyVersion (no Airflow).

``scan(roots)`` lists each root once, reads only the small records (in parallel) and returns an
:class:`Inventory`: per-version statistics, every envelope reference, and findings. A version may
be destroyed only when ``inventory.complete`` is true and ``inventory.references(version)`` is
empty (architecture invariant 2).
"""

from kmsflow.inventory.listing import Listing, RootUnreachableError, list_root
from kmsflow.inventory.model import UNSEEN, EnvelopeRef, Finding, FindingKind, Inventory, VersionStats
from kmsflow.inventory.scanner import scan

__all__ = [
    "UNSEEN",
    "EnvelopeRef",
    "Finding",
    "FindingKind",
    "Inventory",
    "Listing",
    "RootUnreachableError",
    "VersionStats",
    "list_root",
    "scan",
]
