"""Full re-encrypt for a suspected data-key compromise: new data key, new envelope id, new ciphertext.

Rewrap (:mod:`kmsflow.lifecycle.rewrap`) protects against a compromised *KMS key version*: the
data key stays, only its wrapping changes. When a *data key* may have leaked (a process dump, a
debugger, a keyset in a log) every byte it encrypted must be re-encrypted under a fresh one. Per
envelope, on local paths and on ``gs://``:

1. resolve what an interrupted earlier run left (:func:`kmsflow.lifecycle.reencryption.local.recover`,
   :func:`kmsflow.lifecycle.reencryption.gcs.recover`);
2. read the record (exact bytes; on GCS also its generation), KMS Decrypt the old keyset and
   authenticate the record against its manifest: a tampered envelope is refused before anything
   is written;
3. generate a fresh Tink keyset and a new envelope id, wrap the keyset with ONE KMS Encrypt under
   the CryptoKey (its current primary), before any data is read;
4. stream every file: old ciphertext -> Tink decrypting stream (old key, old AAD) -> Tink
   encrypting stream (new key, new AAD) -> a staged file in ``.<name>.kmsflow-<hex>.tmp`` beside
   the envelope (a directory locally, a prefix on GCS). Constant memory; plaintext exists only in
   in-memory blocks, never in a file, temp file, object or log. The old ciphertext is read to EOF
   and must match the record's size and CRC32C (authenticated end to end);
5. seal the new record's manifest and write it into the staging area (last);
6. **verify before replacing**: one KMS Decrypt of the new wrapped keyset, the new manifest
   checked, every staged file decrypted under the new key to EOF, its size and CRC32C checked, and
   the SHA-256 of its plaintext compared (in memory) with that of the plaintext read in step 4;
7. replace the old envelope by the staged one: locally with the rename protocol of
   :mod:`kmsflow.lifecycle.reencryption.local` (rolls *back* after a kill), on GCS with the
   commit-marker protocol of :mod:`kmsflow.lifecycle.reencryption.gcs` (rolls *forward* after a kill;
   readers fail authentication, never get wrong plaintext, while it copies). Either way every
   instant is recoverable by a rerun, and the inventory blocks shredding until it happened.

Steps 2-6 are one storage-agnostic job (:class:`_Job`) over a *store* (the live envelope: read
old ciphertext, list data) and a *stage* (write, read back and commit the new one); the two
modules above provide those for local paths and GCS. Other fsspec schemes fail with a one-line
reason (:data:`NOT_SUPPORTED`): without rename or generation preconditions there is no safe
replacement.

KMS calls per envelope: Decrypt (old key), Encrypt (new key), Decrypt (verification). Transient
KMS errors are retried in ``kmsflow.kms.crypto``; an envelope that still fails is reported and left
untouched (its staging removed, unless a GCS run already committed: then the next run rolls it
forward). Every run re-encrypts every envelope it is given (there is no "already done": a new key
is the point); an interrupted run is simply run again.

**Test seam.** ``on_step(step, envelope_url)`` is called after each protocol step (the ``STEP_*``
names of :mod:`~kmsflow.lifecycle.reencryption.local` and :mod:`~kmsflow.lifecycle.reencryption.gcs`, in
the order listed there); the crash tests run re-encrypt in a subprocess whose hook SIGKILLs itself
at a chosen step. Production callers pass nothing.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmsflow.lifecycle.reencryption.report import (
        EnvelopeOutcome,
        ReencryptNotSupportedError,
        ReencryptReport,
    )
    from kmsflow.lifecycle.reencryption.run import reencrypt
else:  # each name is imported on first use (kmsflow.lazy): importing the package loads no module
    from kmsflow.lazy import lazy_names

    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "kmsflow.lifecycle.reencryption.report": (
                "EnvelopeOutcome",
                "ReencryptNotSupportedError",
                "ReencryptReport",
            ),
            "kmsflow.lifecycle.reencryption.run": ("reencrypt",),
        },
    )

__all__ = ["EnvelopeOutcome", "ReencryptNotSupportedError", "ReencryptReport", "reencrypt"]
