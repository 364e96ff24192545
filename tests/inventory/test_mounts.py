"""Read parallelism follows the filesystem: few threads on a local disk, many where reads wait on
a network (Cloud Storage FUSE, NFS, object stores, or anything not known to be local)."""

from __future__ import annotations

from pathlib import Path

import fsspec

from kmsflow.envelope.storage import Location
from kmsflow.inventory.mounts import filesystem_type, is_local_disk
from kmsflow.inventory.scanner import LOCAL_READERS, read_workers

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
tmpfs /dev/shm tmpfs rw,nosuid 0 0
gcsfuse /gcs/models fuse.gcsfuse rw,nosuid,nodev 0 0
server:/export /mnt/team\\040share nfs4 rw,relatime 0 0
/dev/vdb /data xfs rw 0 0
tmpfs /data tmpfs rw 0 0
"""


def test_the_longest_containing_mount_point_names_the_filesystem() -> None:
    assert filesystem_type("/home/me/records", MOUNTS) == "ext4"
    assert filesystem_type("/dev/shm/x.kmsflow.json", MOUNTS) == "tmpfs"
    assert filesystem_type("/gcs/models/run-7", MOUNTS) == "fuse.gcsfuse"
    assert filesystem_type("/gcs/modelsX/run-7", MOUNTS) == "ext4"  # a prefix of a name is not a parent
    assert filesystem_type("/mnt/team share/datasets", MOUNTS) == "nfs4"  # "\040" is a space
    assert filesystem_type("/data/a", MOUNTS) == "tmpfs"  # mounted over /data later: it wins
    assert filesystem_type("/anything", "") == "unknown"


def test_only_known_local_filesystems_count_as_local_disks() -> None:
    assert is_local_disk("/srv/ml", MOUNTS) and is_local_disk("/dev/shm/a", MOUNTS)
    assert not is_local_disk("/gcs/models/a", MOUNTS)
    assert not is_local_disk("/mnt/team share/a", MOUNTS)
    assert not is_local_disk("/srv/ml", "")  # cannot tell: read it like a network store


def test_read_workers_per_kind_of_root() -> None:
    assert read_workers(Location("/srv/ml"), 16, MOUNTS) == LOCAL_READERS < 16
    assert read_workers(Location("/srv/ml"), 2, MOUNTS) == 2  # never more than asked for
    assert read_workers(Location("/gcs/models/run-7"), 16, MOUNTS) == 16
    assert read_workers(Location("/mnt/team share/x"), 16, MOUNTS) == 16
    assert read_workers(Location("bucket/root", fsspec.filesystem("memory"), "memory"), 16, MOUNTS) == 16


def test_the_real_mount_table_is_read(tmp_path: Path) -> None:
    kind = filesystem_type(str(tmp_path))  # from /proc/mounts: "/" at least contains every path
    assert kind != "unknown" and " " not in kind
    assert read_workers(Location(str(tmp_path)), 16) == (
        LOCAL_READERS if is_local_disk(str(tmp_path)) else 16
    )
