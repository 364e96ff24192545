"""Find envelope records under roots and count references per CryptoKey and CryptoKeyVersion (no Airflow).

``scan(roots)`` lists each root once, reads only the small records (in parallel) and returns an
:class:`Inventory`: per-version statistics, every envelope reference, and findings. A version may
be destroyed only when ``inventory.complete`` is true and ``inventory.references(version)`` is
empty (architecture invariant 2).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmsflow.inventory.listing import Listing, RootUnreachableError, list_root
    from kmsflow.inventory.model import UNSEEN, EnvelopeRef, Finding, FindingKind, Inventory, VersionStats
    from kmsflow.inventory.scanner import scan
else:  # each name is imported on first use (kmsflow.lazy): importing the package loads no module
    from kmsflow.lazy import lazy_names

    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "kmsflow.inventory.listing": ("Listing", "RootUnreachableError", "list_root"),
            "kmsflow.inventory.model": (
                "UNSEEN",
                "EnvelopeRef",
                "Finding",
                "FindingKind",
                "Inventory",
                "VersionStats",
            ),
            "kmsflow.inventory.scanner": ("scan",),
        },
    )

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
