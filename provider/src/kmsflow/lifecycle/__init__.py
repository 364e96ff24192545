"""Key lifecycle over envelopes (no Airflow).

* ``rewrap(client, targets)`` moves every envelope under its CryptoKey's current primary version by
  rewriting only the small record (compare-and-swap), never the data; ``verify_unwraps`` proves
  each envelope's key still unwraps and names the primary.
* ``reencrypt(client, targets)`` gives every envelope a new data key (a data key may have leaked).
* ``run_shred`` retires versions (disable, soak, destroy, confirm) only on a complete scan with zero
  references; ``restore`` undoes a scheduled destruction; ``erase_tenant``/``prove_erasure``
  crypto-erase a tenant's key; ``rotate`` is an audited rotation.
* ``clean_stale_temps`` removes the temps interrupted writes left.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmsflow.lifecycle.cas import DirSync, RecordConflictError, RecordSnapshot, read_snapshot, swap
    from kmsflow.lifecycle.clean import CleanReport, TempOutcome, clean_stale_temps
    from kmsflow.lifecycle.reencryption import (
        EnvelopeOutcome,
        ReencryptNotSupportedError,
        ReencryptReport,
        reencrypt,
    )
    from kmsflow.lifecycle.retirement.erase import ErasureReport, erase_tenant, prove_erasure
    from kmsflow.lifecycle.retirement.report import KeyDecision, ShredReport, VersionDecision
    from kmsflow.lifecycle.retirement.restore import restore
    from kmsflow.lifecycle.retirement.rotation import rotate
    from kmsflow.lifecycle.retirement.shred import run_shred
    from kmsflow.lifecycle.rewrap import PrimaryCache, RewrapReport, rewrap, verify_unwraps
    from kmsflow.lifecycle.targets import EnvelopeTarget, Issue, RunReport, collect
else:  # each name is imported on first use (kmsflow.lazy): importing the package loads no module
    from kmsflow.lazy import lazy_names

    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "kmsflow.lifecycle.cas": (
                "DirSync",
                "RecordConflictError",
                "RecordSnapshot",
                "read_snapshot",
                "swap",
            ),
            "kmsflow.lifecycle.clean": ("CleanReport", "TempOutcome", "clean_stale_temps"),
            "kmsflow.lifecycle.retirement.erase": ("ErasureReport", "erase_tenant", "prove_erasure"),
            "kmsflow.lifecycle.reencryption": (
                "EnvelopeOutcome",
                "ReencryptNotSupportedError",
                "ReencryptReport",
                "reencrypt",
            ),
            "kmsflow.lifecycle.retirement.restore": ("restore",),
            "kmsflow.lifecycle.rewrap": ("PrimaryCache", "RewrapReport", "rewrap", "verify_unwraps"),
            "kmsflow.lifecycle.retirement.rotation": ("rotate",),
            "kmsflow.lifecycle.retirement.shred": ("run_shred",),
            "kmsflow.lifecycle.retirement.report": ("KeyDecision", "ShredReport", "VersionDecision"),
            "kmsflow.lifecycle.targets": ("EnvelopeTarget", "Issue", "RunReport", "collect"),
        },
    )

__all__ = [
    "CleanReport",
    "DirSync",
    "EnvelopeOutcome",
    "EnvelopeTarget",
    "ErasureReport",
    "Issue",
    "KeyDecision",
    "PrimaryCache",
    "RecordConflictError",
    "RecordSnapshot",
    "ReencryptNotSupportedError",
    "ReencryptReport",
    "RewrapReport",
    "RunReport",
    "ShredReport",
    "TempOutcome",
    "VersionDecision",
    "clean_stale_temps",
    "collect",
    "erase_tenant",
    "prove_erasure",
    "read_snapshot",
    "reencrypt",
    "restore",
    "rewrap",
    "rotate",
    "run_shred",
    "swap",
    "verify_unwraps",
]
