"""X-Wing encapsulation (draft-connolly-cfrg-xwing-kem-08) for the producer of recipient envelopes.

Cloud KMS's ``KEM_XWING`` keys decapsulate X-Wing ciphertexts; the producer must encapsulate to the
public key itself, with no KMS call. ``cryptography`` offers X-Wing only inside HPKE
(``hpke.MLKEM768X25519PublicKey``, whose shared secret HPKE never hands out), so this module composes
the draft's ``Encapsulate`` from ``cryptography``'s ML-KEM-768, X25519 and SHA3-256: nothing but
the split of the public key, the ciphertext layout and the combiner is written here::

    pk = pk_M (1184 bytes, ML-KEM-768) || pk_X (32 bytes, X25519)
    ss_M, ct_M = ML-KEM-768.Encaps(pk_M);   ek_X random, ct_X = X25519(ek_X, 9), ss_X = X25519(ek_X, pk_X)
    ss = SHA3-256(ss_M || ss_X || ct_X || pk_X || "\\.//^\\");   ct = ct_M || ct_X (1120 bytes)

The emulator (``kmsflow_emulator.algorithms``, playing Google's side) keeps its own X-Wing
decapsulation on purpose, and this module never imports it: two independent implementations, each
pinned by the draft's test vector, are what catches a mistake in either (as the independent FORMAT
reader does for envelopes).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

PUBLIC_KEY_SIZE = 1184 + 32
CIPHERTEXT_SIZE = 1088 + 32
SHARED_SECRET_SIZE = 32
LABEL = b"\\.//^\\"
"""The draft's domain separator, the six ASCII bytes ``\\.//^\\`` (5c 2e 2f 2f 5e 5c)."""


def combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    """The draft's combiner: SHA3-256(ss_M || ss_X || ct_X || pk_X || label)."""
    digest = hashes.Hash(hashes.SHA3_256())
    for part in (ss_m, ss_x, ct_x, pk_x, LABEL):
        digest.update(part)
    return bytes(digest.finalize())


class XWingPublicKey:
    """An X-Wing public key (Cloud KMS's ``XWING_RAW_BYTES``), checked on load."""

    def __init__(self, ml_kem: mlkem.MLKEM768PublicKey, dh: x25519.X25519PublicKey) -> None:
        self._ml_kem = ml_kem
        self._dh = dh
        self._pk_x = dh.public_bytes_raw()

    @classmethod
    def from_public_bytes(cls, data: bytes) -> XWingPublicKey:
        """ValueError unless ``data`` is 1216 bytes holding a valid ML-KEM-768 encapsulation key
        and an X25519 key usable for agreement (a low-order point would make ``ss_X`` all zeros and
        is refused here, not at the first envelope)."""
        if len(data) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an X-Wing public key is {PUBLIC_KEY_SIZE} bytes, got {len(data)}")
        key = cls(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:1184]),
            x25519.X25519PublicKey.from_public_bytes(data[1184:]),
        )
        x25519.X25519PrivateKey.generate().exchange(key._dh)  # ValueError for a low-order point
        return key

    def encapsulate(self) -> tuple[bytes, bytes]:
        """(32-byte shared secret, 1120-byte ciphertext), as ``mlkem``'s ``encapsulate`` returns."""
        ss_m, ct_m = self._ml_kem.encapsulate()
        ephemeral = x25519.X25519PrivateKey.generate()
        return self.encapsulate_with(bytes(ss_m), bytes(ct_m), ephemeral)

    def encapsulate_with(
        self, ss_m: bytes, ct_m: bytes, ephemeral: x25519.X25519PrivateKey
    ) -> tuple[bytes, bytes]:
        """The X25519 half and the combiner for a given ML-KEM result and ephemeral key: the
        deterministic part of :meth:`encapsulate`, which the draft's test vector pins."""
        ct_x = ephemeral.public_key().public_bytes_raw()
        ss_x = ephemeral.exchange(self._dh)
        return combine(ss_m, ss_x, ct_x, self._pk_x), ct_m + ct_x
