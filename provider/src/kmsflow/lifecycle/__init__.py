"""Key lifecycle over envelopes (no Airflow): re-wrap onto the primary version, verify unwraps.

``rewrap(client, targets)`` moves every envelope under its CryptoKey's current primary version by
rewriting only the small record (compare-and-swap), never the data; ``verify_unwraps`` proves each
envelope's key still unwraps and names the primary.
"""

from kmsflow.lifecycle.cas import DirSync, RecordConflictError, RecordSnapshot, read_snapshot, swap
from kmsflow.lifecycle.rewrap import PrimaryCache, RewrapReport, rewrap, verify_unwraps
from kmsflow.lifecycle.targets import EnvelopeTarget, Issue, collect

__all__ = [
    "DirSync",
    "EnvelopeTarget",
    "Issue",
    "PrimaryCache",
    "RecordConflictError",
    "RecordSnapshot",
    "RewrapReport",
    "collect",
    "read_snapshot",
    "rewrap",
    "swap",
    "verify_unwraps",
]

# Retiring versions (issue 6): shred state machine, restore, tenant erasure, audited rotation.
# Appended as a block so the re-wrap exports above stay as their author wrote them.
from kmsflow.lifecycle.erase import ErasureReport, erase_tenant, prove_erasure
from kmsflow.lifecycle.restore import restore
from kmsflow.lifecycle.rotation import rotate
from kmsflow.lifecycle.shred import run_shred
from kmsflow.lifecycle.shred_report import KeyDecision, ShredReport, VersionDecision

__all__ += [
    "ErasureReport",
    "KeyDecision",
    "ShredReport",
    "VersionDecision",
    "erase_tenant",
    "prove_erasure",
    "restore",
    "rotate",
    "run_shred",
]

# Full re-encrypt for a suspected data-key compromise (issue 5): new data key, new envelope id.
from kmsflow.lifecycle.reencryption import (  # noqa: E402 (appended block, as above)
    EnvelopeOutcome,
    ReencryptNotSupportedError,
    ReencryptReport,
    reencrypt,
)

__all__ += [
    "EnvelopeOutcome",
    "ReencryptNotSupportedError",
    "ReencryptReport",
    "reencrypt",
]

# Removing temps of interrupted writes (kmsflow clean): stale_temp findings only, never backups.
from kmsflow.lifecycle.clean import CleanReport, TempOutcome, clean_stale_temps  # noqa: E402

__all__ += ["CleanReport", "TempOutcome", "clean_stale_temps"]
