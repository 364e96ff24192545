"""The GCS emulator of the test suite (``kmsflow_emulator.gcs``) enforces request preconditions.

Every precondition test here holds on real Cloud Storage and fails against the bare
``gcp-storage-emulator``, which ignores ``ifGenerationMatch`` and ``generation=``. Raw HTTP checks
the status codes and error bodies; gcsfs (as kmsflow configures it) checks the exceptions kmsflow
relies on (412 -> ``FileExistsError``, 404 -> ``FileNotFoundError``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kmsflow.envelope import gcs_filesystem
from kmsflow_emulator import gcs

Status = tuple[int, bytes, dict[str, str]]


def http(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Status:
    """One request to the emulator named by STORAGE_EMULATOR_HOST: (status, body, headers)."""
    host = os.environ["STORAGE_EMULATOR_HOST"]
    url = path if path.startswith("http") else f"http://{host}{path}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def query(**params: str) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items())


def media_upload(bucket: str, name: str, data: bytes, **conditions: str) -> Status:
    q = query(uploadType="media", name=name, **conditions)
    return http("POST", f"/upload/storage/v1/b/{bucket}/o?{q}", data, {"Content-Type": "text/plain"})


def multipart_upload(bucket: str, name: str, data: bytes, **conditions: str) -> Status:
    """What gcsfs ``simple_upload`` and ``kmsflow.lifecycle.cas`` send."""
    meta = json.dumps({"name": name})
    head = f"--b\r\nContent-Type: application/json\r\n\r\n{meta}\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    body = head.encode() + data + b"\r\n--b--"
    q = query(uploadType="multipart", **conditions)
    headers = {"Content-Type": 'multipart/related; boundary="b"'}
    return http("POST", f"/upload/storage/v1/b/{bucket}/o?{q}", body, headers)


def start_resumable(bucket: str, name: str, **conditions: str) -> tuple[Status, str]:
    """Start a resumable session; returns its answer and the session URL without the query's
    preconditions, as real GCS hands it out (the session itself must remember them)."""
    q = query(uploadType="resumable", name=name, **conditions)
    answer = http("POST", f"/upload/storage/v1/b/{bucket}/o?{q}", b"{}", {"Content-Type": "application/json"})
    location = re.sub(r"&if\w+=\d+", "", answer[2].get("Location", ""))
    return answer, location


def finish_resumable(location: str, data: bytes) -> Status:
    headers = {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}", "Content-Type": "text/plain"}
    return http("PUT", location, data, headers)


def resumable_upload(bucket: str, name: str, data: bytes, **conditions: str) -> Status:
    answer, location = start_resumable(bucket, name, **conditions)
    if answer[0] != 200:
        return answer
    return finish_resumable(location, data)


UPLOADS = {"media": media_upload, "multipart": multipart_upload, "resumable": resumable_upload}


def generation(bucket: str, name: str) -> str:
    status, body, _ = http("GET", f"/storage/v1/b/{bucket}/o/{name}")
    assert status == 200, status
    return str(json.loads(body)["generation"])


def content(bucket: str, name: str) -> bytes:
    status, body, _ = http("GET", f"/download/storage/v1/b/{bucket}/o/{name}?alt=media")
    assert status == 200, status
    return body


def two_generations(bucket: str, name: str) -> tuple[str, str]:
    """Write ``name`` twice (b"old", then b"new"); return (old generation, live generation)."""
    assert media_upload(bucket, name, b"old")[0] == 200
    old = generation(bucket, name)
    assert media_upload(bucket, name, b"new")[0] == 200
    new = generation(bucket, name)
    assert old != new
    return old, new


def assert_condition_not_met(status: Status) -> None:
    code, body, _ = status
    assert code == 412, (code, body)
    error = json.loads(body)["error"]
    assert error["code"] == 412
    assert error["errors"][0]["reason"] == "conditionNotMet"


@pytest.mark.parametrize("kind", sorted(UPLOADS))
def test_upload_with_a_stale_generation_is_refused(gcs_bucket: str, kind: str) -> None:
    old, new = two_generations(gcs_bucket, "obj")

    assert_condition_not_met(UPLOADS[kind](gcs_bucket, "obj", b"lost update", ifGenerationMatch=old))
    assert content(gcs_bucket, "obj") == b"new" and generation(gcs_bucket, "obj") == new

    code, body, _ = UPLOADS[kind](gcs_bucket, "obj", b"update", ifGenerationMatch=new)
    assert code == 200, body
    assert content(gcs_bucket, "obj") == b"update" and generation(gcs_bucket, "obj") != new


@pytest.mark.parametrize("kind", sorted(UPLOADS))
def test_if_generation_match_zero_creates_only_if_absent(gcs_bucket: str, kind: str) -> None:
    assert UPLOADS[kind](gcs_bucket, "obj", b"first", ifGenerationMatch="0")[0] == 200
    assert_condition_not_met(UPLOADS[kind](gcs_bucket, "obj", b"second", ifGenerationMatch="0"))
    assert content(gcs_bucket, "obj") == b"first"


def test_resumable_session_checks_its_precondition_when_it_completes(gcs_bucket: str) -> None:
    """The check that matters for a long upload: another writer creates the object meanwhile. The
    session URL carries no precondition (as on GCS); the session remembers it."""
    answer, location = start_resumable(gcs_bucket, "obj", ifGenerationMatch="0")
    assert answer[0] == 200 and "upload_id=" in location and "ifGenerationMatch" not in location
    assert media_upload(gcs_bucket, "obj", b"theirs")[0] == 200

    assert_condition_not_met(finish_resumable(location, b"ours"))
    assert content(gcs_bucket, "obj") == b"theirs"


def test_a_cancelled_resumable_session_creates_nothing(gcs_bucket: str) -> None:
    """``DELETE`` of a session URL cancels it (GCS answers 499; the package had no route and
    answered 501, which gcsfs retried for ~35 s on every discarded upload): the bytes received are
    dropped, the session cannot complete, and a second cancel finds nothing (404)."""
    answer, location = start_resumable(gcs_bucket, "cancelled", ifGenerationMatch="0")
    assert answer[0] == 200
    part = b"p" * (256 << 10)
    headers = {"Content-Range": f"bytes 0-{len(part) - 1}/*", "Content-Type": "text/plain"}
    assert http("PUT", location, part, headers)[0] == 308
    assert http("DELETE", location)[0] == 499
    assert http("DELETE", location)[0] == 404
    assert finish_resumable(location, b"late")[0] >= 400
    assert http("GET", f"/storage/v1/b/{gcs_bucket}/o/cancelled")[0] == 404
    assert resumable_upload(gcs_bucket, "cancelled", b"again", ifGenerationMatch="0")[0] == 200


def test_gcsfs_exclusive_creates_raise_file_exists(gcs_bucket: str) -> None:
    """``pipe_file(mode="create")`` and ``open("xb")`` (one-shot and resumable) -> FileExistsError."""
    fs = gcs_filesystem()
    path = f"{gcs_bucket}/obj"
    fs.pipe_file(path, b"theirs")

    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"ours", mode="create")
    with pytest.raises(FileExistsError), fs.open(path, "xb") as f:
        f.write(b"ours")
    with pytest.raises(FileExistsError), fs.open(path, "xb", block_size=2**18) as f:
        f.write(b"x" * (2**19 + 1))  # more than one block: a resumable upload
    fs.invalidate_cache()
    assert fs.cat_file(path) == b"theirs"

    with fs.open(f"{gcs_bucket}/new", "xb") as f:
        f.write(b"created")
    assert fs.cat_file(f"{gcs_bucket}/new") == b"created"


def test_generation_pinned_reads(gcs_bucket: str) -> None:
    """Only the live generation is kept: reading any other is 404, as on a bucket without versioning."""
    old, new = two_generations(gcs_bucket, "obj")
    fs = gcs_filesystem()
    path = f"{gcs_bucket}/obj"

    with pytest.raises(FileNotFoundError):
        fs.cat_file(path, generation=old)
    assert fs.cat_file(path, generation=new) == b"new"
    with pytest.raises(FileNotFoundError):
        fs.call("GET", "b/{}/o/{}", gcs_bucket, "obj", generation=old, json_out=True)
    assert fs.call("GET", "b/{}/o/{}", gcs_bucket, "obj", generation=new, json_out=True)["generation"] == new
    assert http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj?alt=media&generation={old}")[0] == 404
    assert http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj?alt=media&generation={new}")[1] == b"new"


def test_delete_with_a_stale_generation_is_refused(gcs_bucket: str) -> None:
    old, new = two_generations(gcs_bucket, "obj")
    fs = gcs_filesystem()

    with pytest.raises(FileExistsError):  # 412
        fs.call("DELETE", "b/{}/o/{}", gcs_bucket, "obj", ifGenerationMatch=old)
    with pytest.raises(FileNotFoundError):  # that generation is gone: 404
        fs.call("DELETE", "b/{}/o/{}", gcs_bucket, "obj", generation=old)
    assert content(gcs_bucket, "obj") == b"new"

    fs.call("DELETE", "b/{}/o/{}", gcs_bucket, "obj", ifGenerationMatch=new)
    assert http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj")[0] == 404


def test_copy_rewrite_and_compose_check_their_destination_and_source(gcs_bucket: str) -> None:
    old, _ = two_generations(gcs_bucket, "src")
    assert media_upload(gcs_bucket, "dst", b"dst")[0] == 200
    base = f"/storage/v1/b/{gcs_bucket}/o"
    json_body = {"Content-Type": "application/json"}

    for verb in ("copyTo", "rewriteTo"):
        target = f"{base}/src/{verb}/b/{gcs_bucket}/o/dst"
        assert_condition_not_met(http("POST", f"{target}?ifGenerationMatch=0", b"{}", json_body))
        assert http("POST", f"{target}?sourceGeneration={old}", b"{}", json_body)[0] == 404
        assert_condition_not_met(http("POST", f"{target}?ifSourceGenerationMatch={old}", b"{}", json_body))
    assert content(gcs_bucket, "dst") == b"dst"

    compose = json.dumps({"sourceObjects": [{"name": "src"}, {"name": "src"}], "destination": {}})
    assert_condition_not_met(
        http("POST", f"{base}/dst/compose?ifGenerationMatch={old}", compose.encode(), json_body)
    )
    assert content(gcs_bucket, "dst") == b"dst"

    dst = generation(gcs_bucket, "dst")
    code, body, _ = http(
        "POST", f"{base}/src/rewriteTo/b/{gcs_bucket}/o/dst?ifGenerationMatch={dst}", b"{}", json_body
    )
    assert code == 200 and json.loads(body)["done"], body
    assert content(gcs_bucket, "dst") == b"new"


def test_metageneration_and_not_match_conditions(gcs_bucket: str) -> None:
    assert media_upload(gcs_bucket, "obj", b"data")[0] == 200
    meta = json.loads(http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj")[1])
    gen, metagen = meta["generation"], int(meta["metageneration"])
    patch = json.dumps({"metadata": {"k": "v"}}).encode()
    json_body = {"Content-Type": "application/json"}

    stale = http(
        "PATCH", f"/storage/v1/b/{gcs_bucket}/o/obj?ifMetagenerationMatch={metagen - 1}", patch, json_body
    )
    assert_condition_not_met(stale)
    assert "metadata" not in json.loads(http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj")[1])
    code, body, _ = http(
        "PATCH", f"/storage/v1/b/{gcs_bucket}/o/obj?ifMetagenerationMatch={metagen}", patch, json_body
    )
    assert code == 200 and json.loads(body)["metadata"] == {"k": "v"}

    assert http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj?ifGenerationNotMatch={gen}")[0] == 304
    assert_condition_not_met(media_upload(gcs_bucket, "obj", b"x", ifGenerationNotMatch=gen))
    assert content(gcs_bucket, "obj") == b"data"


def test_a_precondition_that_is_not_a_number_is_a_bad_request(gcs_bucket: str) -> None:
    code, body, _ = media_upload(gcs_bucket, "obj", b"data", ifGenerationMatch="latest")
    assert code == 400 and json.loads(body)["error"]["code"] == 400
    assert http("GET", f"/storage/v1/b/{gcs_bucket}/o/obj")[0] == 404


def test_racing_exclusive_creates_exactly_one_wins(gcs_bucket: str) -> None:
    """Many gcsfs writers create one name with ``mode="create"`` at once: one object, one winner."""
    fs = gcs_filesystem()
    path = f"{gcs_bucket}/{uuid.uuid4().hex}"
    writers = 16
    barrier = threading.Barrier(writers)

    def create(i: int) -> bytes | None:
        body = f"writer {i}".encode()
        barrier.wait()
        try:
            fs.pipe_file(path, body, mode="create")
        except FileExistsError:
            return None
        return body

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(create, range(writers)))

    winners = [r for r in results if r is not None]
    assert len(winners) == 1, winners
    fs.invalidate_cache()
    assert fs.cat_file(path) == winners[0]


def test_racing_compare_and_swaps_exactly_one_wins(gcs_bucket: str) -> None:
    """Many writers replace one object conditional on the generation they all read: one wins, the
    others get 412 (a check-then-write would let every one of them through)."""
    assert media_upload(gcs_bucket, "obj", b"base")[0] == 200
    read = generation(gcs_bucket, "obj")
    writers = 16
    barrier = threading.Barrier(writers)

    def swap(i: int) -> tuple[int, bytes]:
        body = f"writer {i}".encode()
        barrier.wait()
        return multipart_upload(gcs_bucket, "obj", body, ifGenerationMatch=read)[0], body

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(swap, range(writers)))

    assert sorted(code for code, _ in results) == [200] + [412] * (writers - 1)
    assert content(gcs_bucket, "obj") == next(body for code, body in results if code == 200)


def test_module_runs_standalone_on_a_free_port() -> None:
    """``python -m kmsflow_emulator.gcs --port 0`` says where it listens and serves there
    (``spawn`` reads that line)."""
    proc, host = gcs.spawn("--default-bucket", "b")
    try:
        with urllib.request.urlopen(f"http://{host}/storage/v1/b/b", timeout=10) as resp:
            bucket: dict[str, Any] = json.loads(resp.read())
        assert bucket["name"] == "b"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) in (0, -15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_latency_holds_every_request_and_concurrent_requests_wait_together() -> None:
    """``--latency-ms``: each request answers no sooner than the latency, and requests sent
    together overlap their waits (a round trip, not a queue), as against a remote store."""
    import time

    proc, host = gcs.spawn("--default-bucket", "b", "--latency-ms", "500")
    try:

        def get(_: int) -> float:
            start = time.monotonic()
            with urllib.request.urlopen(f"http://{host}/storage/v1/b/b", timeout=10) as resp:
                resp.read()
            return time.monotonic() - start

        assert get(0) >= 0.5
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            each = list(pool.map(get, range(4)))
        assert min(each) >= 0.5
        assert time.monotonic() - start < 1.5  # one after the other, it would take 2 s
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) in (0, -15)
        if proc.stdout is not None:
            proc.stdout.close()
