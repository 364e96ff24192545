"""Associated data: the byte strings that bind ciphertexts to their envelope (docs/FORMAT.md §AAD).

Three domains, separated by a fixed label so that no ciphertext of one kind can stand in for another:

* the wrapped keyset (KMS Encrypt/Decrypt AAD)  ``kmsflow/v1 \\0 keyset   \\0 <envelope id>``
* the authenticated manifest (Tink AAD)         ``kmsflow/v1 \\0 manifest \\0 <envelope id>``
* each data file (Tink AAD)                     ``kmsflow/v1 \\0 data \\0 <envelope id> \\0 <relpath>``

and two labels of signed envelopes (``kmsflow.envelope.signature``), in the same name space:

* the data key commitment (HKDF info)           ``kmsflow/v1 \\0 commitment \\0 <envelope id>``
* the message a signing key signs               ``kmsflow/v1 \\0 signature \\0 <SHA-512 of the statement>``

(spaces added for reading only). The envelope id is 32 lowercase hex characters; the relative path
is UTF-8 with ``/`` separators, and is empty for a single-file envelope. NUL cannot occur in a path
or an id, so the encoding is unambiguous. Binding the id and the relative path, and nothing about
where the envelope lives, is what lets an envelope be copied or moved whole while a file swapped in
from another envelope, or renamed within one, fails authentication.

A recipient (public-key) envelope wraps its keyset locally, with AES-256-GCM under the same keyset
AAD, using a key derived by HKDF whose ``info`` (:func:`recipient_info`) binds the wrap kind, the
envelope id and the exact CryptoKeyVersion (docs/FORMAT.md §12).
"""

from __future__ import annotations

FORMAT_VERSION = 1
_PREFIX = b"kmsflow/v%d\x00" % FORMAT_VERSION


def keyset_aad(envelope_id: str) -> bytes:
    """AAD for the KMS Encrypt/Decrypt of the serialized Tink keyset."""
    return _PREFIX + b"keyset\x00" + envelope_id.encode("ascii")


def manifest_aad(envelope_id: str) -> bytes:
    """AAD for the Tink ciphertext of the manifest (the authenticated file list)."""
    return _PREFIX + b"manifest\x00" + envelope_id.encode("ascii")


def data_aad(envelope_id: str, relpath: str) -> bytes:
    """AAD for the Tink stream of the file at ``relpath`` ('' for a single-file envelope)."""
    return _PREFIX + b"data\x00" + envelope_id.encode("ascii") + b"\x00" + relpath.encode("utf-8")


def commitment_info(envelope_id: str) -> bytes:
    """HKDF ``info`` of the data key commitment a signed statement carries (docs/FORMAT.md §10)."""
    return _PREFIX + b"commitment\x00" + envelope_id.encode("ascii")


SIGNATURE_LABEL = _PREFIX + b"signature\x00"
"""What the message a signing key signs starts with: a signature made by kmsflow can never be
taken for one the same key made over anything else, unless that too begins with this label."""


def recipient_info(wrap_kind: str, envelope_id: str, version_name: str) -> bytes:
    """HKDF ``info`` deriving a recipient envelope's keyset-wrapping key from the shared secret:
    ``kmsflow/v1 \\0 recipient \\0 <wrap kind> \\0 <envelope id> \\0 <CryptoKeyVersion name>``."""
    parts = (wrap_kind.encode("ascii"), envelope_id.encode("ascii"), version_name.encode())
    return b"\x00".join((_PREFIX + b"recipient", *parts))
