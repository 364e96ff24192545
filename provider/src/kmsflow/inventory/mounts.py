"""Which filesystem holds a local path, so the scan can size its read parallelism.

A local path is not always a local disk: ML pipelines often read buckets through Cloud Storage
FUSE (Vertex AI mounts them under ``/gcs``), or a team share over NFS. There every record read
waits on the network, as on ``gs://``, and wants many threads; on a real local disk or tmpfs more
than a few threads only contend for the GIL (see ``scanner.LOCAL_READERS``). Linux names the
filesystem of every mount point in ``/proc/mounts``; where that cannot be read (another OS), the
type is "unknown" and the path is treated like a network store (the safe side for speed).
"""

from __future__ import annotations

import os
import re

LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "bcachefs"}  # disks
    | {"tmpfs", "ramfs", "overlay"}  # memory, and container layers over a local disk
    | {"apfs", "hfs", "ntfs", "vfat", "exfat"}  # other local disks
)
"""Filesystems whose reads are served by a local disk or memory (page cache), not a network."""

_ESCAPE = re.compile(r"\\([0-7]{3})")


def filesystem_type(path: str, mounts: str | None = None) -> str:
    """The type (``ext4``, ``tmpfs``, ``fuse.gcsfuse``, ``nfs4``...) of the filesystem holding
    ``path``: the longest mount point that contains it. ``mounts`` is the text of ``/proc/mounts``
    (read when None); "unknown" when it cannot be read."""
    if mounts is None:
        try:
            with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return "unknown"
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])  # "\040" is a space
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):  # later mounts over the same point win
            best, kind = mount, fields[2]
    return kind


def is_local_disk(path: str, mounts: str | None = None) -> bool:
    """True when ``path`` is on a local disk or memory filesystem (see :data:`LOCAL_FILESYSTEMS`)."""
    return filesystem_type(path, mounts) in LOCAL_FILESYSTEMS
