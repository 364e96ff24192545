"""The GCS emulator (``kmsflow_emulator.gcs``) stores exactly what gcsfs uploads, lists a prefix
exactly, and serves many clients: what the scale end-to-end test (tests/e2e) relies on.

Its speed at tens of thousands of objects is measured in bench/ (docs/BENCHMARKS.md), not here.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
import uuid
from email.parser import BytesParser

import pytest
from gcp_storage_emulator.handlers.buckets import create_bucket
from gcp_storage_emulator.storage import RESUMABLE_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsflow.envelope import gcs_filesystem
from kmsflow_emulator.gcs import PreconditionStorage, crlf_multipart

GCSFS_BOUNDARY = "==0=="


def gcsfs_multipart(media: bytes) -> bytes:
    """The body gcsfs ``simple_upload`` sends (bare LF line breaks), for ``media``."""
    head = f'--{GCSFS_BOUNDARY}\nContent-Type: application/json; charset=UTF-8\n\n{{"name": "o"}}\n'
    head += f"--{GCSFS_BOUNDARY}\nContent-Type: application/octet-stream\n\n"
    return head.encode() + media + f"\n--{GCSFS_BOUNDARY}--".encode()


def parsed_media(body: bytes, content_type: str) -> bytes:
    """The media the package's parser (Python's ``email``, as gcp_storage_emulator calls it) reads."""
    message = BytesParser().parsebytes(f"Content-Type:{content_type}\r\n".encode() + body)
    media: bytes = message.get_payload()[1].get_payload(decode=True)
    return media


@settings(max_examples=200, deadline=None)
@given(media=st.binary(max_size=64).map(lambda b: b.replace(b"\n--", b"\n-")))
def test_a_bare_lf_multipart_body_keeps_every_media_byte(media: bytes) -> None:
    content_type = f'multipart/related; boundary="{GCSFS_BOUNDARY}"'
    assert parsed_media(crlf_multipart(gcsfs_multipart(media), content_type), content_type) == media


def test_a_crlf_multipart_body_and_other_bodies_are_left_alone() -> None:
    crlf = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\n\r\nx\r\r\n--b--"
    assert crlf_multipart(crlf, 'multipart/related; boundary="b"') == crlf
    assert parsed_media(crlf, 'multipart/related; boundary="b"') == b"x\r"
    assert crlf_multipart(b"--b\nraw\n--b", "application/octet-stream") == b"--b\nraw\n--b"


@pytest.mark.parametrize("tail", [b"\r", b"\n", b"\r\n", b"\n\r", b""])
def test_gcsfs_small_uploads_round_trip_whatever_they_end_with(gcs_bucket: str, tail: bytes) -> None:
    """``pipe`` and ``put`` of a small file are multipart uploads with bare LF line breaks, which
    the package parses as if CRLF: a ciphertext ending in CR (one random object in 256) must keep
    that byte."""
    fs = gcs_filesystem()
    data = b"\x00ciphertext" + tail
    fs.pipe_file(f"{gcs_bucket}/obj", data)
    fs.invalidate_cache()
    assert fs.cat_file(f"{gcs_bucket}/obj") == data
    assert fs.info(f"{gcs_bucket}/obj")["size"] == len(data)


names = st.text(alphabet="ab/", min_size=1, max_size=6).filter(lambda n: not n.startswith("/"))


@settings(max_examples=100, deadline=None)
@given(
    changes=st.lists(st.tuples(st.booleans(), names), max_size=40),
    prefix=st.one_of(st.none(), st.text(alphabet="ab/", max_size=3)),
    delimiter=st.sampled_from([None, "/"]),
)
def test_a_listing_is_every_live_name_under_the_prefix(
    changes: list[tuple[bool, str]], prefix: str | None, delimiter: str | None
) -> None:
    """The sorted index of names the listing bisects follows every create, replace and delete."""
    storage = PreconditionStorage(use_memory_fs=True)
    create_bucket("b", storage)
    live: set[str] = set()
    for create, name in changes:
        if create:
            storage.create_file("b", name, b"x", {"name": name, "generation": "1", "metageneration": "1"})
            live.add(name)
        elif name in live:
            storage.delete_file("b", name)
            live.discard(name)
    objects, prefixes = storage.get_file_list("b", prefix, delimiter)
    under = sorted(n for n in live if n.startswith(prefix or ""))
    if delimiter is None:
        assert [o["name"] for o in objects] == under
    else:
        cut = len(prefix or "")
        assert [o["name"] for o in objects] == [n for n in under if "/" not in n[cut:]]
        assert prefixes == sorted({n[: cut + n[cut:].index("/") + 1] for n in under if "/" in n[cut:]})


def test_a_client_slow_to_send_holds_up_no_one(gcs_bucket: str, gcs_emulator: str) -> None:
    """Requests are received on a thread each: a connection that sends nothing (a client
    stalled, a half-open socket) does not block the next request."""
    host, port = gcs_emulator.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as silent:
        silent.sendall(b"GET /storage/v1/b/")  # an unfinished request line
        start = time.monotonic()
        with urllib.request.urlopen(f"http://{gcs_emulator}/storage/v1/b/{gcs_bucket}", timeout=10) as r:
            assert r.status == 200
        assert time.monotonic() - start < 10


def test_resumable_chunks_are_appended_in_place_and_complete_as_bytes() -> None:
    """A resumable upload keeps one growing buffer (no copy of everything received per chunk) and
    returns exactly the bytes sent, as ``bytes``, once the declared total arrived."""
    storage = PreconditionStorage(use_memory_fs=True)
    create_bucket("b", storage)
    upload = storage.create_resumable_upload("b", "o", {"name": "o", "bucket": "b"})
    received = storage._object_path(RESUMABLE_DIR, storage.safe_id(upload))
    assert storage.add_to_resumable_upload(upload, b"one-", None, 0) is None
    assert storage.add_to_resumable_upload(upload, b"two-", None, 4) is None
    buffer = storage._store.read_bytes(received)
    assert storage.add_to_resumable_upload(upload, b"three-", None, 8) is None
    assert storage._store.read_bytes(received) is buffer  # extended where it is
    done = storage.add_to_resumable_upload(upload, b"four", 18, 14)
    assert done == b"one-two-three-four" and type(done) is bytes


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.integers(min_value=1, max_value=300_000), min_size=1, max_size=8))
def test_gcsfs_uploads_in_many_chunks_round_trip(gcs_bucket: str, pieces: list[int]) -> None:
    """gcsfs sends a file larger than its block size as a resumable upload of several chunks; the
    object holds every byte, in order, whatever the writes' sizes. (Each example writes its own
    object, so sharing the bucket fixture is safe.)"""
    fs = gcs_filesystem()
    data = os.urandom(sum(pieces))
    path = f"{gcs_bucket}/chunks-{uuid.uuid4().hex}"
    with fs.open(path, "wb", block_size=1 << 18) as f:
        offset = 0
        for size in pieces:
            f.write(data[offset : offset + size])
            offset += size
    assert fs.cat_file(path) == data
