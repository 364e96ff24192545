"""A local cache of public keys, one file per KMS endpoint and CryptoKeyVersion, so a producer
fetches each once.

A version's public key never changes, so an entry never expires. Where: ``$KMSFLOW_CACHE_DIR``,
else ``$XDG_CACHE_HOME/kmsflow``, else ``~/.cache/kmsflow``; entries are public key files
(``kmsflow.kms.public_key``) under ``public-keys/``, named by the SHA-256 of the endpoint and the
version name.

Why the endpoint: a version name is unique within one KMS only. Two endpoints (Cloud KMS and an
emulator, two emulators) can each have ``.../cryptoKeyVersions/1`` of a different key; keyed by
name alone, a producer would wrap for the other one's key (its consumer's unwrap then fails:
nothing lost, but wrong). The endpoint is the client's own target (``api_endpoint``: the
emulator's ``host:port``, or Cloud KMS's host). One endpoint whose keys are deleted and re-made
under the same names (an emulator restarted without its data directory) is not told apart: clear
the cache, or re-export with ``kmsflow pubkey export``, which always fetches and writes through.

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
from typing import TYPE_CHECKING

from kmsflow.kms.public_key import MAX_FILE_SIZE, PublicKey, PublicKeyError

if TYPE_CHECKING:
    from google.cloud import kms_v1

CACHE_DIR_ENV = "KMSFLOW_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$KMSFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/kmsflow``, else ``~/.cache/kmsflow``."""
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kmsflow"


def client_endpoint(client: kms_v1.KeyManagementServiceClient) -> str:
    """The endpoint ``client`` talks to (``host:port`` of an emulator, else Cloud KMS's host)."""
    endpoint = getattr(client, "api_endpoint", None)
    if not isinstance(endpoint, str) or not endpoint:
        raise TypeError(f"{type(client).__name__} names no api_endpoint: not a google-cloud-kms client")
    return endpoint


class PublicKeyCache:
    """Public keys of one KMS ``endpoint``'s versions under ``root/public-keys/`` (see the module
    docstring); :meth:`for_client` binds it to the endpoint of the client that fetches them."""

    def __init__(self, endpoint: str, root: Path | None = None) -> None:
        self.endpoint = endpoint
        self.directory = (root or default_cache_dir()) / "public-keys"

    @classmethod
    def for_client(
        cls, client: kms_v1.KeyManagementServiceClient, root: Path | None = None
    ) -> PublicKeyCache:
        return cls(client_endpoint(client), root)

    def path_for(self, version_name: str) -> Path:
        digest = hashlib.sha256(f"{self.endpoint}\n{version_name}".encode()).hexdigest()
        return self.directory / (digest[:40] + ".json")

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
