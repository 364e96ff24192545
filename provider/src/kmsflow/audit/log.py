"""The append-only audit log: JSON lines in a local file, or one object per event on GCS.

**Local file** (a path or ``file://`` URL): each event is one line, written with a single
``write`` on an ``O_APPEND`` descriptor under an exclusive ``flock`` and fsynced before
``append`` returns, so concurrent kmsflow writers interleave whole lines and a recorded action
survives a crash. A torn last line (power loss mid-write) is ignored on read and cut off by the
next append (it never was a recorded event: appends return only after the newline is fsynced); a
damaged line anywhere else is an :class:`AuditLogError`, because a log we cannot read is a log we
cannot trust (shredding then stops rather than guessing).

**Object stores** (``gs://bucket/prefix`` and other fsspec URLs): the location is a *prefix* and
every event is its own small object ``<prefix>/<time>-<random>.json``, created with
``ifGenerationMatch=0`` (``xb``). Why not one object rewritten per append (read + rewrite with a
generation precondition)? Every append would cost O(log size) bytes, concurrent writers (several
DAG runs, the CLI) would contend and retry on the same object, and a bug in the rewrite path could
lose history; with one object per event an append never touches an existing event, needs no retry
loop, and a bucket retention policy / object hold can make the log truly immutable. Reading lists
the prefix once and sorts by name (the name starts with the RFC 3339 time, so that is time order).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kmsflow.audit.actor import resolve_actor
from kmsflow.audit.event import AuditEvent
from kmsflow.envelope.storage import Location, fs_open_write, resolve


class AuditLogError(Exception):
    """The audit log could not be written or read (the message says where and why)."""


def _filter(events: Iterable[AuditEvent], resource: str | None, action: str | None) -> list[AuditEvent]:
    return [
        e
        for e in events
        if (resource is None or e.resource == resource) and (action is None or e.action == action)
    ]


def _line(event: AuditEvent) -> bytes:
    return (json.dumps(event.to_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def _parse(data: bytes, where: str) -> AuditEvent:
    try:
        value = json.loads(data.decode("utf-8"))
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return AuditEvent.from_dict(value)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise AuditLogError(f"{where}: unreadable audit event ({exc})") from None


def _drop_torn_tail(fd: int) -> None:
    """Cut a partial last line (a crash mid-append) back to the last newline; caller holds the lock.

    Every completed append ends with a newline and is fsynced before ``append`` returns, so bytes
    after the last newline were never an event anyone was told had been recorded.
    """
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    cut = tail.rfind(b"\n")
    os.ftruncate(fd, start + cut + 1 if cut >= 0 else start)


class AuditLog:
    """Append events to, and read them back from, one audit log location.

    ``actor`` (else :func:`~kmsflow.audit.actor.resolve_actor` with ``credentials``) and ``run``
    are stamped on every event this object appends unless ``append`` is given others.
    """

    def __init__(
        self,
        location: str,
        *,
        actor: str | None = None,
        run: str = "cli",
        credentials: Any = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not location:
            raise ValueError("an audit log location is required")
        self.location = location
        self.actor = resolve_actor(actor, credentials=credentials)
        self.run = run
        self.clock = clock
        self._loc: Location = resolve(location)

    def __repr__(self) -> str:
        return f"AuditLog({self.location!r})"

    # ------------------------------------------------------------------ writing

    def append(
        self,
        action: str,
        resource: str,
        *,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        run: str | None = None,
        time: datetime | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        """Record one action (scrubbed of anything secret-looking); returns the event as written.

        ``time`` defaults to the log's ``clock`` (else now); lifecycle code uses the run's clock so
        soak periods are measured on the same clock as KMS timestamps, and events of one log sort
        in the order they happened even against an emulator whose clock was moved.
        """
        event = AuditEvent.create(
            action=action,
            resource=resource,
            reason=reason,
            actor=actor or self.actor,
            run=run or self.run,
            evidence=evidence,
            time=time or (self.clock() if self.clock else None),
        )
        try:
            if self._loc.fs is None:
                self._append_local(event)
            else:
                self._append_object(event)
        except OSError as exc:
            raise AuditLogError(f"{self.location}: cannot append audit event ({exc})") from exc
        return event

    def _append_local(self, event: AuditEvent) -> None:
        path = self._loc.path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(fd)
            view = memoryview(_line(event))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def _append_object(self, event: AuditEvent) -> None:
        fs = self._loc.fs
        stamp = event.time.replace(":", "").replace("-", "")
        name = f"{self._loc.path.rstrip('/')}/{stamp}-{secrets.token_hex(8)}.json"
        with fs_open_write(fs, name) as f:
            f.write(_line(event))

    # ------------------------------------------------------------------ reading

    def events(self, *, resource: str | None = None, action: str | None = None) -> list[AuditEvent]:
        """Every event in time (append) order, optionally only for ``resource`` / ``action``."""
        try:
            events = self._read_local() if self._loc.fs is None else self._read_objects()
        except OSError as exc:
            raise AuditLogError(f"{self.location}: cannot read the audit log ({exc})") from exc
        return _filter(events, resource, action)

    def _read_local(self) -> list[AuditEvent]:
        try:
            with open(self._loc.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        events: list[AuditEvent] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            last = number == len(lines)  # no newline after it: possibly torn by a crash
            try:
                events.append(_parse(line, f"{self.location}:{number}"))
            except AuditLogError:
                if not last:
                    raise
        return events

    def _read_objects(self) -> list[AuditEvent]:
        fs = self._loc.fs
        assert fs is not None
        prefix = self._loc.path.rstrip("/")
        with contextlib.suppress(Exception):
            fs.invalidate_cache(prefix)
        try:
            names = sorted(n for n in fs.find(prefix) if str(n).endswith(".json"))
        except FileNotFoundError:
            return []
        return [_parse(bytes(fs.cat_file(n)), f"{self._loc.protocol}://{n}") for n in names]

    def last(self, resource: str, actions: Iterable[str]) -> AuditEvent | None:
        """The most recent event for ``resource`` whose action is one of ``actions``."""
        wanted = set(actions)
        found = [e for e in self.events(resource=resource) if e.action in wanted]
        return sorted(found, key=lambda e: e.time)[-1] if found else None  # stable: ties keep log order


def read_events(location: str, *, resource: str | None = None, action: str | None = None) -> list[AuditEvent]:
    """Every event of the log at ``location`` (see :class:`AuditLog`), optionally filtered."""
    return AuditLog(location, actor="reader").events(resource=resource, action=action)
