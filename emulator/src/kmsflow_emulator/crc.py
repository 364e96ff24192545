"""CRC32C as Cloud KMS computes it for the ``*_crc32c`` integrity fields of Encrypt/Decrypt."""

import google_crc32c


def crc32c(data: bytes) -> int:
    """Return the CRC32C of ``data`` as the unsigned int Cloud KMS puts in ``*_crc32c`` fields."""
    return int(google_crc32c.value(data))
