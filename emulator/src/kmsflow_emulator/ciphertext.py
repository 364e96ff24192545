"""The emulator's ciphertext: AES-256-GCM under one CryptoKeyVersion's material.

Layout: ``b"KFE1" | version id (uint32 BE) | nonce (12) | GCM ciphertext and tag``. The version id
makes the ciphertext name the version that produced it (Cloud KMS ciphertexts do too); the GCM
associated data binds the crypto key name and version id to the caller's AAD, so a ciphertext
decrypted through another key, or with its header edited, fails authentication.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"KFE1"
_HEADER = struct.Struct(">4sI")
NONCE_SIZE = 12
OVERHEAD = _HEADER.size + NONCE_SIZE + 16


class CiphertextError(ValueError):
    """The bytes are not a ciphertext of this key, or fail authentication."""


def new_material() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _aad(key_name: str, version_id: int, aad: bytes) -> bytes:
    return key_name.encode() + b"\x00" + struct.pack(">I", version_id) + aad


def encrypt(key_name: str, version_id: int, material: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    sealed = AESGCM(material).encrypt(nonce, plaintext, _aad(key_name, version_id, aad))
    return _HEADER.pack(MAGIC, version_id) + nonce + sealed


def version_of(ciphertext: bytes) -> int:
    """The version id a ciphertext names; raises CiphertextError if it is not ours."""
    if len(ciphertext) < OVERHEAD:
        raise CiphertextError("ciphertext is too short")
    magic, version_id = _HEADER.unpack_from(ciphertext)
    if magic != MAGIC or version_id == 0:
        raise CiphertextError("ciphertext has an unknown header")
    return int(version_id)


def decrypt(key_name: str, material: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    version_id = version_of(ciphertext)
    nonce = ciphertext[_HEADER.size : _HEADER.size + NONCE_SIZE]
    try:
        return AESGCM(material).decrypt(
            nonce, ciphertext[_HEADER.size + NONCE_SIZE :], _aad(key_name, version_id, aad)
        )
    except InvalidTag as exc:
        raise CiphertextError("ciphertext failed authentication") from exc
