"""``gcp-storage-emulator`` with GCS request preconditions enforced, for tests of kmsflow's gs:// code.

kmsflow's safety on GCS rests on checks that the *server* makes atomically: the record
compare-and-swap uploads with ``ifGenerationMatch=<generation read>`` (:mod:`kmsflow.lifecycle.cas`),
exclusive creates (``xb``, re-encrypt LEASE/COMMIT markers, audit log segments) upload with
``ifGenerationMatch=0``, and reads pin ``generation=`` so that one read never mixes two versions.
The ``gcp-storage-emulator`` package ignores all of these, so against it those paths are only
reasoned about. This module serves the same package (its routes, handlers and storage, unchanged)
with the preconditions enforced the way Cloud Storage documents them
(https://cloud.google.com/storage/docs/request-preconditions):

* ``ifGenerationMatch=N`` (JSON API; ``x-goog-if-generation-match`` header on the XML API): the
  request proceeds only if the object's live generation is N, where ``0`` means "no live object";
  otherwise HTTP 412 with a GCS-style ``conditionNotMet`` error body (gcsfs raises
  :class:`FileExistsError` for any 412). ``ifMetagenerationMatch`` likewise (a missing object never
  matches). ``ifGenerationNotMatch`` / ``ifMetagenerationNotMatch`` fail with 304 on reads and 412
  on writes.
* Writes checked: every upload the package accepts (media, multipart, resumable -- checked when the
  session starts and again when its last chunk creates the object --, XML ``PUT``), the destination
  of ``copyTo``/``rewriteTo``/``compose``, ``DELETE`` and metadata ``PATCH``. ``copyTo``/
  ``rewriteTo`` also honour ``sourceGeneration`` and ``ifSource(Meta)Generation(Not)Match`` on the
  source.
* ``generation=G`` on an object ``GET`` (metadata or media), ``DELETE`` or ``PATCH`` addresses that
  generation; the emulator keeps only the live one (like a bucket without versioning), so any other
  G is HTTP 404.

Check and write are one critical section (a lock around both), so two writers racing with
``ifGenerationMatch=0`` for one name get exactly one success. The server receives requests on a
thread per connection but serves them one at a time, under that same lock, since the package's
handlers and storage are not thread-safe: requests are serialized, which is what makes the PATCH
check (made where the package reads the object, before it patches it in place) atomic too. A
precondition that is not a number is answered 400, as GCS does.

Fast enough for tens of thousands of objects (docs/BENCHMARKS.md, "GCS emulator"): the package's
per-change metadata snapshot (quadratic in memory, where nothing reads it) is dropped and prefix
listings bisect a sorted index of names; the package's routes, handlers and object resources are
unchanged.

``--latency-ms N`` holds every request N ms before serving it (outside the lock, so concurrent
requests wait together, as round trips to a remote store overlap): loopback answers in a fraction
of a millisecond, which hides what a client that waits for one request before sending the next
would pay against real Cloud Storage (bench/cli_throughput.py).

Not covered: sub-requests of a JSON batch (``/batch/storage/v1``; gcsfs never batches against an
emulator), preconditions on ``compose`` *source* objects, ETag (``If-Match``) and date conditions.

Run it as ``python -m kmsflow_emulator.gcs --host 127.0.0.1 --port 9023`` (in memory, quiet). It
needs the ``gcs`` extra (``gcp-storage-emulator``): it is test tooling, not part of the product.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import functools
import http.server
import io
import itertools
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers.buckets import create_bucket
from gcp_storage_emulator.server import RequestHandler
from gcp_storage_emulator.storage import RESUMABLE_DIR, Storage

from kmsflow_emulator.process import spawn_server

__all__ = [
    "Conditions",
    "InvalidConditionError",
    "NotModifiedError",
    "PreconditionFailedError",
    "PreconditionRequestHandler",
    "PreconditionStorage",
    "RequestConditions",
    "crlf_multipart",
    "main",
    "make_server",
    "request_conditions",
    "spawn",
]

DEFAULT_PORT = 9023

CONDITION_NOT_MET = "At least one of the pre-conditions you specified did not hold."


class PreconditionFailedError(Exception):
    """A precondition did not hold: the request is answered 412 and changes nothing."""


class NotModifiedError(Exception):
    """An ``if...NotMatch`` condition did not hold on a read: answered 304 (no body), as GCS does."""


class InvalidConditionError(ValueError):
    """A precondition or generation parameter that is not an integer: answered 400."""


def _number(value: str | None) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Conditions:
    """The preconditions one request places on one object (all None: unconditional)."""

    generation: str | None = None
    """Address exactly this generation (``generation=``/``sourceGeneration=``): otherwise 404."""
    generation_match: str | None = None
    generation_not_match: str | None = None
    metageneration_match: str | None = None
    metageneration_not_match: str | None = None

    def check(self, obj: Mapping[str, Any] | None, *, not_modified: bool = False) -> None:
        """Raise unless the object resource ``obj`` (None: no live object) satisfies every condition.

        ``NotFound`` (the package's 404) for a generation the emulator does not hold,
        :class:`PreconditionFailedError` for a failed match, and for a failed not-match too unless
        ``not_modified`` (a GET) asks for :class:`NotModifiedError`.
        """
        generation = int(obj["generation"]) if obj is not None else 0
        metageneration = int(obj["metageneration"]) if obj is not None else None
        if self.generation is not None and (obj is None or generation != int(self.generation)):
            raise NotFound
        if self.generation_match is not None and generation != int(self.generation_match):
            raise PreconditionFailedError(f"ifGenerationMatch={self.generation_match}, live {generation}")
        wanted = _number(self.metageneration_match)
        if wanted is not None and metageneration != wanted:
            raise PreconditionFailedError(f"ifMetagenerationMatch={wanted}, live {metageneration}")
        failed = NotModifiedError if not_modified else PreconditionFailedError
        unwanted = _number(self.generation_not_match)
        if unwanted is not None and generation == unwanted:
            raise failed(f"ifGenerationNotMatch={unwanted}")
        unwanted = _number(self.metageneration_not_match)
        if unwanted is not None and metageneration == unwanted:
            raise failed(f"ifMetagenerationNotMatch={unwanted}")


@dataclass(frozen=True)
class RequestConditions:
    """What one request asks of the object it reads (``read``) and of the one it writes (``write``);
    ``is_get``: a failed not-match is answered 304, not 412."""

    read: Conditions = Conditions()
    write: Conditions = Conditions()
    is_get: bool = False


_COPY_PATH = re.compile(r"/o/.+/(?:copyTo|rewriteTo)/b/")


def request_conditions(
    method: str, path: str, query: Mapping[str, Sequence[str]], headers: Mapping[str, str]
) -> RequestConditions:
    """The conditions of one HTTP request, from its query (JSON API) or headers (XML API).

    Copy and rewrite read a source (``sourceGeneration``, ``ifSource...``) and write a
    destination; GET reads its target and DELETE writes it. PATCH is checked where the package
    reads the object, since it then patches the live resource in place before storing it. Every
    other request (uploads, compose) writes its destination. Restoring a soft-deleted object is
    left unconditional (it deletes, then creates, the live object; kmsflow never restores).
    """

    def arg(name: str, header: str | None = None) -> str | None:
        values = query.get(name)
        value = values[0] if values else headers.get(header) if header else None
        if value is not None and not value.isdigit():
            raise InvalidConditionError(f"{name}={value!r} is not a generation number")
        return value

    target = Conditions(
        generation_match=arg("ifGenerationMatch", "x-goog-if-generation-match"),
        generation_not_match=arg("ifGenerationNotMatch"),
        metageneration_match=arg("ifMetagenerationMatch", "x-goog-if-metageneration-match"),
        metageneration_not_match=arg("ifMetagenerationNotMatch"),
    )
    if method == "POST" and _COPY_PATH.search(path):
        source = Conditions(
            generation=arg("sourceGeneration"),
            generation_match=arg("ifSourceGenerationMatch"),
            generation_not_match=arg("ifSourceGenerationNotMatch"),
            metageneration_match=arg("ifSourceMetagenerationMatch"),
            metageneration_not_match=arg("ifSourceMetagenerationNotMatch"),
        )
        return RequestConditions(read=source, write=target)
    pinned = replace(target, generation=arg("generation"))
    if method == "GET":
        return RequestConditions(read=pinned, is_get=True)
    if method == "PATCH":
        return RequestConditions(read=pinned)
    if method == "DELETE":
        return RequestConditions(write=pinned)
    if method == "POST" and path.endswith("/restore"):
        return RequestConditions()
    return RequestConditions(write=target)


_CURRENT = threading.local()


def _current() -> RequestConditions:
    """The conditions of the request this thread is serving (none outside a request)."""
    conditions = getattr(_CURRENT, "conditions", None)
    return conditions if isinstance(conditions, RequestConditions) else RequestConditions()


class PreconditionStorage(Storage):  # type: ignore[misc]
    """The package's storage, checking the current request's conditions at the single points where
    an object is read (``get_file_obj``) or replaced (``create_file``, ``create_resumable_upload``,
    ``delete_file``), under one lock with the change itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock = threading.RLock()
        """Held around every storage change here, and by the request handler around each request."""
        self._sessions: dict[str, Conditions] = {}  # resumable upload id -> its write conditions
        self._names: dict[str, list[str]] = {}  # bucket -> its live object names, sorted
        super().__init__(*args, **kwargs)

    def _write_config_to_file(self) -> None:
        """Keep no metadata snapshot: the package re-serializes *every* bucket's and object's
        metadata (indented JSON) into its store on each change, so that a disk-backed emulator
        can reload it at start. In memory nothing ever reads it back (``_read_config_from_file``
        runs once, on an empty store), and the snapshot costs time linear in the objects held,
        which makes N uploads quadratic (docs/BENCHMARKS.md, "GCS emulator")."""

    def _list_live_candidates(
        self, bucket_name: str, prefix: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The live objects whose name starts with ``prefix``, found by bisection in a sorted index
        of names instead of the package's test of every name of the bucket: gcsfs lists a prefix
        several times per object it writes or opens, which made writing N objects quadratic."""
        objects = self.objects.get(bucket_name, {})
        names = self._names.get(bucket_name, [])
        found = []
        for name in itertools.islice(names, bisect.bisect_left(names, prefix or ""), None):
            if prefix and not name.startswith(prefix):
                break
            found.append((name, objects[name]))
        return found

    def wipe(self, keep_buckets: bool = False) -> None:
        with self.lock:
            super().wipe(keep_buckets)
            self._names.clear()

    def _live(self, bucket_name: str, file_name: str) -> dict[str, Any] | None:
        obj = self.objects.get(bucket_name, {}).get(file_name)
        return obj if isinstance(obj, dict) else None

    def get_file_obj(self, bucket_name: str, file_name: str) -> dict[str, Any]:
        with self.lock:
            obj: dict[str, Any] = super().get_file_obj(bucket_name, file_name)
            current = _current()
            current.read.check(obj, not_modified=current.is_get)
            return obj

    def create_file(
        self,
        bucket_name: str,
        file_name: str,
        content: bytes,
        file_obj: dict[str, Any],
        file_id: str | None = None,
    ) -> None:
        with self.lock:
            conditions = self._sessions.get(file_id, _current().write) if file_id else _current().write
            live = self._live(bucket_name, file_name)
            conditions.check(live)
            super().create_file(bucket_name, file_name, content, file_obj, file_id)
            if live is None:
                bisect.insort(self._names.setdefault(bucket_name, []), file_name)
            if file_id:
                self._sessions.pop(file_id, None)

    def create_resumable_upload(self, bucket_name: str, file_name: str, file_obj: dict[str, Any]) -> str:
        with self.lock:
            conditions = _current().write
            conditions.check(self._live(bucket_name, file_name))
            file_id = str(super().create_resumable_upload(bucket_name, file_name, file_obj))
            self._sessions[file_id] = conditions
            return file_id

    def add_to_resumable_upload(
        self, file_id: str, content: bytes, total_size: int | None = None, expected_start: int | None = None
    ) -> bytes | None:
        """Append a chunk in place. The package reads the bytes received so far, concatenates the
        chunk into a new object and stores that, so an upload of N chunks copies ~N²/2 chunks: a
        256 MiB envelope sent in gcsfs's 16 MiB blocks copied ~2 GiB, more than a 50 MiB-chunk
        ``put_file`` of the same bytes (docs/BENCHMARKS.md, "Whole process"). Held in memory as a
        ``bytearray``, the package's own ``+=`` extends it where it is; the completed object is
        stored as ``bytes``, as every other object."""
        with self.lock:
            path = self._object_path(RESUMABLE_DIR, self.safe_id(file_id))
            with contextlib.suppress(FileNotFoundError):
                received = self._store.read_bytes(path)
                if getattr(self._store, "_use_memory", False) and not isinstance(received, bytearray):
                    self._store.write_bytes(path, bytearray(received))
            data = super().add_to_resumable_upload(file_id, content, total_size, expected_start)
            return None if data is None else bytes(data)

    def cancel_resumable_upload(self, file_id: str) -> bool:
        """Drop a resumable upload session and the bytes it received (GCS: ``DELETE`` of the
        session URI); False when there is no such session."""
        with self.lock:
            if file_id not in self.resumable:
                return False
            self.delete_resumable_file_obj(file_id)
            self._delete_file(RESUMABLE_DIR, self.safe_id(file_id))
            self._sessions.pop(file_id, None)
            return True

    def delete_file(self, bucket_name: str, file_name: str) -> None:
        with self.lock:
            obj = self._live(bucket_name, file_name)
            if obj is not None:  # a missing object is the package's 404
                _current().write.check(obj)
            super().delete_file(bucket_name, file_name)
            names = self._names[bucket_name]
            del names[bisect.bisect_left(names, file_name)]


class PreconditionRequestHandler(RequestHandler):  # type: ignore[misc]
    """The package's request handler, with the request's conditions published to the storage for
    the duration of the request and their failures answered as GCS answers them.

    Requests are served one at a time (under the storage's lock: the package's handlers and
    storage are not thread-safe), but each is received whole before it waits for the lock: a body
    with a ``Content-Length`` is read into memory first, so a client slow to send never holds up
    the others (a chunked body is still read by the package, under the lock)."""

    storage: PreconditionStorage
    rfile: io.BufferedIOBase
    latency = 0.0  # seconds each request is held before it is served (``--latency-ms``)

    def _serve(self, dispatch: Callable[[], None]) -> None:
        if self.latency:
            time.sleep(self.latency)
        url = urlsplit(self.path)
        method = self.headers.get("x-http-method-override") or self.command
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = self.headers.get("Content-Length") or ""
        received = self.rfile
        if length.isdigit():
            body = crlf_multipart(received.read(int(length)), self.headers.get("Content-Type") or "")
            self.headers.replace_header("Content-Length", str(len(body)))
            self.rfile = io.BytesIO(body)
        try:
            _CURRENT.conditions = request_conditions(method, url.path, parse_qs(url.query), headers)
            with self.storage.lock:
                dispatch()
        except InvalidConditionError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": {"code": 400, "message": str(exc)}})
        except PreconditionFailedError as exc:
            self._answer(HTTPStatus.PRECONDITION_FAILED, _condition_not_met(str(exc)))
        except NotModifiedError:
            self._answer(HTTPStatus.NOT_MODIFIED, None)
        finally:
            _CURRENT.conditions = None
            self.rfile = received

    def _answer(self, status: HTTPStatus, body: dict[str, Any] | None) -> None:
        self._answer_status(status.value, status.phrase, body)

    def _answer_status(self, code: int, phrase: str, body: dict[str, Any] | None = None) -> None:
        content = b"" if body is None else json.dumps(body).encode()
        self.send_response(code, phrase)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self) -> None:
        self._serve(super().do_GET)

    def do_POST(self) -> None:
        self._serve(super().do_POST)

    def do_PUT(self) -> None:
        self._serve(super().do_PUT)

    def do_DELETE(self) -> None:
        url = urlsplit(self.path)
        upload = parse_qs(url.query).get("upload_id")
        if url.path.startswith("/upload/storage/v1/b/") and upload:
            self._serve(lambda: self._cancel_upload(upload[0]))
        else:
            self._serve(super().do_DELETE)

    def _cancel_upload(self, upload_id: str) -> None:
        """Cancel a resumable upload as GCS does: 499 for a session that was under way (gcsfs's
        ``discard``), 404 for one that is not. The package answers 501 (no route), which gcsfs
        retries for ~35 s."""
        if self.storage.cancel_resumable_upload(upload_id):
            self._answer_status(499, "Client Closed Request")
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": {"code": 404, "message": "No such upload"}})

    def do_PATCH(self) -> None:
        self._serve(super().do_PATCH)


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


def crlf_multipart(body: bytes, content_type: str) -> bytes:
    """``body`` with the delimiters of a bare-LF multipart body written CRLF, as the package's
    parser (Python's ``email``) expects; any other body unchanged.

    gcsfs writes its multipart uploads (``simple_upload``: ``pipe``, ``put`` of small files) with
    bare LF line breaks, so the delimiter after the media is ``\n--boundary``. The ``email``
    parser takes the line break before a delimiter to be CRLF when it can, so media ending in CR
    lost that byte (one object in 256 of random bytes). A body whose first delimiter line ends in
    LF only is a bare-LF body: every ``\n--boundary`` in it is a delimiter (a boundary may not
    occur in the content), and a CR before one is content.
    """
    found = _BOUNDARY.search(content_type) if content_type.startswith("multipart/") else None
    if found is None:
        return body
    delimiter = b"--" + found.group(1).encode()
    if not body.startswith(delimiter + b"\n"):
        return body
    return body.replace(b"\n" + delimiter, b"\r\n" + delimiter)


def _condition_not_met(detail: str) -> dict[str, Any]:
    """The JSON error GCS returns with a 412 (``detail`` says which condition, for humans)."""
    error = {
        "domain": "global",
        "reason": "conditionNotMet",
        "message": CONDITION_NOT_MET,
        "locationType": "header",
        "location": "If-Match",
    }
    return {"error": {"code": 412, "message": CONDITION_NOT_MET, "errors": [error], "detail": detail}}


class _Server(http.server.ThreadingHTTPServer):
    """A thread per connection, so that receiving one request overlaps serving another (each is
    served under the storage's lock, see :class:`PreconditionRequestHandler`); a deep accept
    queue, so that a burst of concurrent clients (the race tests) waits instead of having
    connections dropped."""

    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hung up first (gcsfs races two GETs in ``info`` and cancels
        the loser); report anything else as the base class does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(
    host: str, port: int, *, default_bucket: str | None = None, latency_ms: float = 0.0
) -> http.server.HTTPServer:
    """An in-memory emulator enforcing preconditions, bound to ``host:port`` (0: a free port), not
    yet serving: call ``serve_forever()`` (and ``shutdown()``/``server_close()`` from elsewhere).
    ``latency_ms`` holds every request that long before it is served (module docstring)."""
    storage = PreconditionStorage(use_memory_fs=True)
    if default_bucket:
        create_bucket(default_bucket, storage)
    handler = type("Handler", (PreconditionRequestHandler,), {"latency": latency_ms / 1000})
    return _Server((host, port), functools.partial(handler, storage))


LISTENING = "gcs emulator listening on "


def spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m kmsflow_emulator.gcs --port 0 *args`` (loopback unless ``--host`` says
    otherwise); return the process and its ``host:port`` once it accepts requests. The tests'
    fixture and the demo start it this way, as they start the KMS emulator
    (:func:`kmsflow_emulator.process.spawn`)."""
    return spawn_server("kmsflow_emulator.gcs", "--port", "0", *args, listening=LISTENING)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM: ``python -m kmsflow_emulator.gcs --host H --port P``."""
    parser = argparse.ArgumentParser(
        prog="kmsflow-gcs-emulator",
        description="gcp-storage-emulator (in memory) enforcing GCS request preconditions",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--default-bucket", help="create this bucket at start")
    parser.add_argument("--verbose", action="store_true", help="log every request (default: quiet)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="hold every request this long (a remote store's round trip)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    server = make_server(args.host, args.port, default_bucket=args.default_bucket, latency_ms=args.latency_ms)
    print(f"{LISTENING}{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
