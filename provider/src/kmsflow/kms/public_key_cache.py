"""A local cache of public keys, one file per CryptoKeyVersion, so a producer fetches each once.

A version's public key never changes, so an entry never expires. Where: ``$KMSFLOW_CACHE_DIR``,
else ``$XDG_CACHE_HOME/kmsflow``, else ``~/.cache/kmsflow``; entries are public key files
(``kmsflow.kms.public_key``) under ``public-keys/``, named by the SHA-256 of the version name.

A cache entry decides which key the data is wrapped for, so it is trusted no more than it must be:
the directory is created ``0700`` and entries ``0600``, written to a temp name and renamed into
place (never half-written); a read refuses (:class:`PublicKeyError`, naming the file) an entry that
is not a regular file owned by this user with no group/other access, that fails the public key
file's own checks (CRC32C, fields), or that names another version than its file name says. It is
never silently re-fetched: a refused entry means someone else wrote there, which the user must see.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from kmsflow.kms.public_key import MAX_FILE_SIZE, PublicKey, PublicKeyError

CACHE_DIR_ENV = "KMSFLOW_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$KMSFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/kmsflow``, else ``~/.cache/kmsflow``."""
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kmsflow"


class PublicKeyCache:
    """Public keys by version name under ``root/public-keys/`` (see the module docstring)."""

    def __init__(self, root: Path | None = None) -> None:
        self.directory = (root or default_cache_dir()) / "public-keys"

    def path_for(self, version_name: str) -> Path:
        return self.directory / (hashlib.sha256(version_name.encode()).hexdigest()[:40] + ".json")

    def get(self, version_name: str) -> PublicKey | None:
        """The cached key of ``version_name``; None if absent; PublicKeyError if not trustworthy."""
        path = self.path_for(version_name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise PublicKeyError(f"{path}: public key cache entry unreadable ({reason}); delete it") from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                raise PublicKeyError(
                    f"{path}: public key cache entry not private to this user (owner or mode changed); "
                    "refused: delete it and export the key again"
                )
            data = f.read(MAX_FILE_SIZE + 1)
        public = PublicKey.from_file_bytes(data, f"{path} (public key cache)")
        if public.version_name != version_name:
            raise PublicKeyError(
                f"{path}: public key cache entry names {public.version_name}; refused: delete it"
            )
        return public

    def put(self, public: PublicKey) -> Path:
        """Store ``public`` (atomically, ``0600``); returns the entry's path."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.path_for(public.version_name)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".part")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(public.to_file_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path
