"""The GCS replacement protocol of re-encrypt: roll a verified new envelope forward, crash-safe.

GCS has no rename and no multi-object transaction, and without bucket versioning an overwritten
object is gone. So the old ciphertext is never overwritten before a complete, verified new
envelope exists beside it, and from then on the protocol only rolls **forward**.
:mod:`kmsflow.lifecycle.reencrypt` builds and verifies the new envelope in a staging prefix
``.<name>.kmsflow-<hex>.tmp/`` beside the envelope (its name is kmsflow's staging name, so the
inventory classifies leftovers): the staged data under the same relative paths (``data`` for a
file envelope), the staged record at ``_kmsflow/envelope.json``, and two markers::

    _kmsflow/LEASE   first object written (ifGenerationMatch=0), refreshed while the run works
    _kmsflow/COMMIT  written (ifGenerationMatch=0) once the staged envelope verified: the truth

Steps after ``verified`` (the ``on_step`` names; the job's own steps come before)::

    committed        COMMIT written (old record generation, old and new envelope ids)
    copying          first staged data object copied server-side over its live name
    data_copied      every data object replaced; the live record still names the old envelope
    record_replaced  staged record compare-and-swapped onto the live record
    staging_removed  staged data, record and LEASE deleted; only COMMIT remains
    commit_removed   COMMIT deleted: nothing left

Between ``copying`` and ``record_replaced`` the live record names the old envelope while (some of)
its objects hold new ciphertext: a reader fails authentication (a different key and AAD; never
wrong plaintext) until the rerun that the blocking ``reencrypt_committed`` inventory finding
demands. The old data then exists nowhere: the staged envelope is the only copy, which is why
recovery always rolls forward and nothing deletes a committed staging prefix except a finished
roll forward.

**Recovery** (:func:`recover`, run by re-encrypt before it reads an envelope): a staging prefix
with a COMMIT is rolled forward (idempotent: copies again, then the record; if the live record
already names the new envelope only cleanup is left). A staging prefix without COMMIT is garbage
from a run killed before its commit point; GCS has no ``flock``, so it is taken over (deleted,
LEASE last) only when its newest object is older than ``stale_after`` seconds (default 30 min; a
live run refreshes its LEASE every minute, also while one large file streams), and otherwise
makes the envelope a ``conflict`` ("another re-encrypt may be running") for a later rerun.

**Record replacement.** The staged record is swapped in with :func:`kmsflow.lifecycle.cas.swap`
(``ifGenerationMatch``). If the live record changed but still names the OLD envelope id (a
concurrent rewrap re-wrapped the old data key), it is re-read and replaced anyway: the data it
describes no longer exists. If it names neither id, someone else replaced the envelope: the run
stops with a :class:`~kmsflow.lifecycle.cas.RecordConflictError` before copying (or, if that
happened mid-copy, before touching the record) and deletes nothing.

**Concurrency.** A run writes its LEASE, then lists the envelope's staging prefixes; if any other
one holds a LEASE or COMMIT it withdraws (whoever lists second sees the first, so at most one run
proceeds past this point; possibly neither). Before COMMIT the run re-checks that the live record
generation and every live data generation are still the ones it read and that its staging is
intact. Two runs may roll the same committed prefix forward at once (a rerun of a slow one): both
copy the same bytes and write the same record, so that converges.

**Emulator.** The tests run against :mod:`kmsflow_emulator.gcs`, which enforces
``ifGenerationMatch`` and ``generation=`` as GCS does.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any

from kmsflow.clock import utc_now
from kmsflow.envelope.errors import EnvelopeError, EnvelopeIOError
from kmsflow.envelope.layout import DATASET_RECORD, RESERVED_DIR, TEMP_SUFFIX, record_location, temp_name
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.envelope.staging import Staging
from kmsflow.envelope.storage import CHUNK_SIZE, Location, fs_open_write
from kmsflow.inventory.scanner import REENCRYPT_COMMIT
from kmsflow.lifecycle.cas import RecordConflictError, RecordSnapshot, read_snapshot, swap
from kmsflow.lifecycle.reencryption.local import STEP_STAGED, STEP_STREAMING, STEP_VERIFIED, StepHook
from kmsflow.lifecycle.seconds import check_seconds

STEP_COMMITTED = "committed"
STEP_COPYING = "copying"
STEP_DATA_COPIED = "data_copied"
STEP_RECORD_REPLACED = "record_replaced"
STEP_STAGING_REMOVED = "staging_removed"
STEP_COMMIT_REMOVED = "commit_removed"
STEPS = (
    STEP_STREAMING,
    STEP_STAGED,
    STEP_VERIFIED,
    STEP_COMMITTED,
    STEP_COPYING,
    STEP_DATA_COPIED,
    STEP_RECORD_REPLACED,
    STEP_STAGING_REMOVED,
    STEP_COMMIT_REMOVED,
)

LEASE = f"{RESERVED_DIR}/LEASE"
STAGED_RECORD = DATASET_RECORD
DEFAULT_STALE_AFTER = 30 * 60.0
"""Seconds after which a staging prefix without COMMIT whose newest object is that old is taken
over as garbage of a killed run (a live run refreshes its LEASE every :data:`LEASE_REFRESH`)."""
LEASE_REFRESH = 60.0
_COMMIT_FORMAT = "kmsflow.reencrypt-commit"


class ReencryptBusyError(RecordConflictError):
    """Another re-encrypt of the envelope may be running (a fresh staging prefix exists)."""


def _noop(step: str, url: str) -> None:
    pass


# --- staging prefixes of an envelope ---------------------------------------------------------------


@dataclass(frozen=True)
class StagingPrefix:
    """One ``.<name>.kmsflow-<hex>.tmp/`` prefix and its objects (relative name -> listing info)."""

    location: Location
    objects: Mapping[str, Mapping[str, Any]]

    @property
    def committed(self) -> bool:
        return REENCRYPT_COMMIT in self.objects

    @property
    def ours(self) -> bool:
        """Made by a re-encrypt run (LEASE or COMMIT); anything else is never deleted here."""
        return self.committed or LEASE in self.objects

    def age(self) -> float:
        """Seconds since its newest object was written (GCS's ``updated``)."""
        return newest_age(self.objects.values())


def newest_age(infos: Iterable[Mapping[str, Any]]) -> float:
    """Seconds since the newest of these objects (listing infos) was written; an object without a
    date counts as written now."""
    newest = max(_updated(info) for info in infos)
    return (utc_now() - newest).total_seconds()


def _updated(info: Mapping[str, Any]) -> datetime:
    value = info.get("updated") or info.get("timeCreated")
    if not value:
        return utc_now()  # unknown: treat as fresh (never taken over by mistake)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def staging_prefixes(root: Location) -> list[StagingPrefix]:
    """The staging prefixes named after the envelope at ``root`` (one prefix listing)."""
    fs = root.fs
    assert fs is not None
    parent, _, name = root.path.rstrip("/").rpartition("/")
    pattern = re.compile(rf"^\.{re.escape(name)}\.kmsflow-[0-9a-f]+\.tmp$")
    fs.invalidate_cache(parent)
    found: dict[str, dict[str, Mapping[str, Any]]] = {}
    for path, info in fs.find(parent, prefix=f".{name}.kmsflow-", detail=True).items():
        top, _, inner = str(path)[len(parent) + 1 :].partition("/")
        if pattern.match(top) and inner and not inner.endswith("/"):
            found.setdefault(top, {})[inner] = info
    return [StagingPrefix(root.sibling(top), objects) for top, objects in sorted(found.items())]


def _delete(prefix: Location, names: Collection[str], last: str | None) -> None:
    """Delete ``names`` (relative to ``prefix``), ``last`` last: a kill midway must still leave the
    marker that says what the prefix is (LEASE: ours; COMMIT: roll forward)."""
    fs = prefix.fs
    assert fs is not None
    rest = [f"{prefix.path}/{rel}" for rel in sorted(names) if rel != last]
    if rest:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(rest)
    if last is not None and last in names:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(f"{prefix.path}/{last}")
    fs.invalidate_cache(prefix.path)


def relist(prefix: Location) -> StagingPrefix:
    """``prefix`` as the store holds it now (cache dropped): every object below it."""
    fs = prefix.fs
    assert fs is not None
    fs.invalidate_cache(prefix.path)
    base = prefix.path.rstrip("/")
    objects = {str(p)[len(base) + 1 :]: info for p, info in fs.find(base, detail=True).items()}
    return StagingPrefix(prefix, {k: v for k, v in objects.items() if k and not k.endswith("/")})


def take_over_refusal(prefix: StagingPrefix, stale_after: float) -> str | None:
    """Why the staging ``prefix`` must not be taken over (deleted) now, or None if it may: only an
    uncommitted prefix of ours whose newest object is ``stale_after`` seconds old (see the module
    docstring: a live run refreshes its LEASE, a committed one holds the only copy of the data).
    ``ValueError`` unless ``stale_after`` is finite and not negative (NaN would allow any)."""
    check_seconds(stale_after, "stale_after")
    if prefix.committed:
        return "committed re-encrypt staging: only a rerun of reencrypt (roll forward) removes it"
    if not prefix.ours:
        return "neither LEASE nor COMMIT: not a re-encrypt staging prefix, left for a human"
    age = prefix.age()
    if age < stale_after:
        return f"newest object {age:.0f} s old (< {stale_after:.0f} s): its run may still be alive"
    return None


def take_over(prefix: StagingPrefix) -> None:
    """Delete an uncommitted staging prefix :func:`take_over_refusal` allowed, LEASE last."""
    _delete(prefix.location, list(prefix.objects), LEASE)


# --- the commit marker and rolling forward ---------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """What a COMMIT marker says: enough to finish the replacement without any key.

    ``old_record_generation`` is the live record's generation the run authenticated: evidence for
    an operator resolving a conflict by hand (roll forward itself goes by envelope ids, since a
    concurrent rewrap legitimately changes the generation).
    """

    kind: str
    old_envelope_id: str
    old_record_generation: str | None
    new_envelope_id: str

    def to_json(self) -> bytes:
        return json.dumps({"format": _COMMIT_FORMAT, "version": 1, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Commit:
        try:
            doc = json.loads(data)
            if doc.get("format") != _COMMIT_FORMAT or doc.get("kind") not in ("file", "dataset"):
                raise ValueError("not a kmsflow re-encrypt commit marker")
            return cls(
                str(doc["kind"]),
                str(doc["old_envelope_id"]),
                doc.get("old_record_generation"),
                str(doc["new_envelope_id"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EnvelopeError(
                f"{where}: unreadable re-encrypt commit marker ({exc}); resolve by hand"
            ) from None


def _staged_data(prefix: Location, kind: str, relpath: str) -> Location:
    return prefix.child("data") if kind == "file" else prefix.child(relpath)


def _live_id(snapshot: RecordSnapshot) -> str | None:
    try:
        return EnvelopeRecord.from_json(snapshot.data, snapshot.location.url).envelope_id
    except EnvelopeError:
        return None


def _read_live(record: Location, commit: Commit, staging: Location) -> tuple[RecordSnapshot, bool]:
    """The live record and whether it already names the new envelope; a conflict unless it names
    the old or the new one (then someone else replaced the envelope: nothing may be touched)."""
    try:
        snapshot = read_snapshot(record)
    except FileNotFoundError:
        snapshot = RecordSnapshot(record, b"")
    live = _live_id(snapshot)
    if live not in (commit.old_envelope_id, commit.new_envelope_id):
        raise RecordConflictError(
            f"{record.url}: names envelope {live or '(none)'}, neither the re-encrypted "
            f"{commit.old_envelope_id} nor its replacement {commit.new_envelope_id}; staging "
            f"{staging.url} kept: resolve by hand"
        )
    return snapshot, live == commit.new_envelope_id


def roll_forward(root: Location, staging: Location, on_step: StepHook = _noop) -> str:
    """Finish a committed replacement at ``root`` from ``staging``: copy data, swap the record,
    delete the staging prefix (COMMIT last). Idempotent; returns the new envelope id."""
    fs = root.fs
    assert fs is not None
    marker = staging.child(REENCRYPT_COMMIT)
    commit = Commit.from_json(bytes(fs.cat_file(marker.path)), marker.url)
    record = record_location(root, commit.kind)
    snapshot, done = _read_live(record, commit, staging)
    if not done:
        staged_loc = staging.child(STAGED_RECORD)
        staged_bytes = staged_loc.read_bytes()
        staged = EnvelopeRecord.from_json(staged_bytes, staged_loc.url)
        if staged.envelope_id != commit.new_envelope_id:
            raise EnvelopeError(f"{marker.url}: staged record is not the committed envelope; resolve by hand")
        for i, entry in enumerate(staged.files):
            src, dst = _staged_data(staging, commit.kind, entry.path), root.child(entry.path)
            fs.cp_file(src.path, dst.path)  # server-side rewrite; atomic per object
            fs.invalidate_cache(dst.path)
            info = fs.info(dst.path)
            crc = info.get("crc32c") or entry.ciphertext_crc32c  # every GCS object has one
            if (int(info.get("size") or 0), crc) != (entry.ciphertext_size, entry.ciphertext_crc32c):
                raise EnvelopeIOError(f"{dst.url}: copy does not match the staged record; rerun to retry")
            if i == 0:
                on_step(STEP_COPYING, root.url)
        on_step(STEP_DATA_COPIED, root.url)
        _publish(record, snapshot, staged_bytes, commit, staging)
        on_step(STEP_RECORD_REPLACED, root.url)
    leftovers = relist(staging).objects
    _delete(staging, [rel for rel in leftovers if rel != REENCRYPT_COMMIT], LEASE)
    on_step(STEP_STAGING_REMOVED, root.url)
    _delete(staging, [REENCRYPT_COMMIT], None)
    on_step(STEP_COMMIT_REMOVED, root.url)
    return commit.new_envelope_id


def _publish(
    record: Location, snapshot: RecordSnapshot, new: bytes, commit: Commit, staging: Location
) -> None:
    """CAS the staged record onto the live one; re-read and retry while it still names the old id."""
    for _ in range(10):
        try:
            swap(snapshot, new)
            return
        except RecordConflictError:
            snapshot, done = _read_live(record, commit, staging)  # raises if neither id
            if done:
                return
    raise RecordConflictError(f"{record.url}: keeps changing (concurrent writers); rerun to finish")


# --- recovery --------------------------------------------------------------------------------------


@dataclass
class Recovery:
    """What :func:`recover` did: one-line notes (roll forwards) and staging prefixes it removed."""

    notes: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def recover(root: Location, stale_after: float = DEFAULT_STALE_AFTER) -> Recovery:
    """Resolve the staging prefixes interrupted re-encrypts left beside the envelope at ``root``.

    Committed: rolled forward. Uncommitted, ours, newest object older than ``stale_after`` s:
    deleted (LEASE last). Fresh ones are left to their run (the job then reports a conflict).
    """
    check_seconds(stale_after, "stale_after")
    out = Recovery()
    prefixes = staging_prefixes(root)
    committed = [p for p in prefixes if p.committed]
    if len(committed) > 1:
        raise RecordConflictError(
            f"{root.url}: {len(committed)} committed re-encrypt staging prefixes; resolve by hand"
        )
    for prefix in committed:
        new_id = roll_forward(root, prefix.location)
        out.notes.append(f"rolled an interrupted re-encrypt forward to envelope {new_id}")
    for prefix in prefixes:
        if take_over_refusal(prefix, stale_after) is None:
            take_over(prefix)
            out.removed.append(prefix.location.url)
    return out


# --- the re-encrypt job's view of a GCS envelope ---------------------------------------------------


class _PinnedObject(io.RawIOBase):
    """One generation of a GCS object, read in ranged GETs that each name that generation.

    Why not ``fs.open(path, generation=...)``: gcsfs' file object does not pass the generation on
    to its range reads, so an overwrite during the read would silently continue with the new
    object's bytes. Pinned, a range of a generation that is gone answers 404
    (``FileNotFoundError``): the read fails instead of mixing two objects.
    """

    def __init__(self, fs: Any, path: str, generation: str, size: int) -> None:
        super().__init__()
        self._fs, self._path, self._generation, self._size = fs, path, generation, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        end = self._pos + n
        data = self._fs.cat_file(self._path, start=self._pos, end=end, generation=self._generation)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


class GcsStore:
    """The live side of a GCS envelope. A data object's identity is its generation, and reads are
    pinned to it (:class:`_PinnedObject`), so a concurrent overwrite cannot be mixed into one read."""

    def __init__(self, root: Location, kind: str, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        assert root.fs is not None
        self.root = root
        self.fs: Any = root.fs
        self.kind = kind
        self.stale_after = check_seconds(stale_after, "stale_after")

    def check(self) -> None:
        """Nothing to refuse: object stores have no symbolic links."""

    def data_url(self, relpath: str) -> str:
        return self.root.child(relpath).url

    def data_files(self) -> dict[str, object]:
        """Every live data object of the dataset (``_kmsflow/`` excluded) -> its generation."""
        base = self.root.path.rstrip("/")
        self.fs.invalidate_cache(base)
        found: dict[str, object] = {}
        for path, info in self.fs.find(base, detail=True).items():
            rel = str(path)[len(base) + 1 :]
            if rel and not rel.endswith("/") and not rel.startswith(RESERVED_DIR + "/"):
                found[rel] = str(info.get("generation"))
        return found

    @contextlib.contextmanager
    def open_source(self, relpath: str) -> Iterator[tuple[IO[bytes], object]]:
        path = self.root.child(relpath).path
        self.fs.invalidate_cache(path)
        info = self.fs.info(path)
        generation = str(info.get("generation"))
        pinned = _PinnedObject(self.fs, path, generation, int(info.get("size") or 0))
        with io.BufferedReader(pinned, buffer_size=CHUNK_SIZE * 8) as raw:
            yield raw, generation

    @contextlib.contextmanager
    def staging(self) -> Iterator[GcsStage]:
        """A new staging prefix holding our LEASE; removed on failure unless committed."""
        stage = GcsStage(self, self.root.sibling(temp_name(self.root.name, TEMP_SUFFIX)))
        try:
            stage.claim()
            yield stage
        finally:
            if not stage.committed:
                _delete(stage.prefix, list(relist(stage.prefix).objects), LEASE)


class GcsStage:
    """One run's staging prefix: objects written with ``ifGenerationMatch=0``, LEASE kept fresh."""

    def __init__(self, store: GcsStore, prefix: Location) -> None:
        self.store = store
        self.prefix = prefix
        self.fs = store.fs
        self.committed = False
        self._verified: dict[str, str] = {}  # staged object (relative) -> generation read back
        self._refreshed = 0.0
        self._uploads = Staging(prefix, tree=False)

    def claim(self) -> None:
        """Write the LEASE, then withdraw if any other run's staging prefix exists."""
        with fs_open_write(self.fs, self.prefix.child(LEASE).path) as f:
            f.write(_lease_body())
        self._refreshed = time.monotonic()
        rivals = [
            p for p in staging_prefixes(self.store.root) if p.location.path != self.prefix.path and p.ours
        ]
        committed = [p for p in rivals if p.committed]
        if committed:
            raise ReencryptBusyError(
                f"{self.store.root.url}: an unfinished committed re-encrypt ({committed[0].location.url}) "
                "must be rolled forward first"
            )
        if rivals:
            age = min(p.age() for p in rivals)
            raise ReencryptBusyError(
                f"{self.store.root.url}: another re-encrypt may be running ({rivals[0].location.url} "
                f"updated {age:.0f} s ago); rerun once it finished (stale prefixes are taken over "
                f"after {self.store.stale_after:.0f} s)"
            )

    def tick(self) -> None:
        """Called per block streamed: refresh the LEASE once a minute, so the run never looks dead."""
        if time.monotonic() - self._refreshed >= LEASE_REFRESH:
            self.fs.pipe_file(self.prefix.child(LEASE).path, _lease_body())
            self._refreshed = time.monotonic()

    def data_url(self, relpath: str) -> str:
        return _staged_data(self.prefix, self.store.kind, relpath).url

    @contextlib.contextmanager
    def writer(self, relpath: str) -> Iterator[IO[bytes]]:
        with self._uploads.writer(_staged_data(self.prefix, self.store.kind, relpath)) as out:
            yield out

    def write_record(self, data: bytes) -> None:
        with self._uploads.writer(self.prefix.child(STAGED_RECORD)) as out:
            out.write(data)

    def read_record(self) -> bytes:
        """The staged record as stored (its generation is remembered: verified is what commits)."""
        snapshot = read_snapshot(self.prefix.child(STAGED_RECORD))
        self._verified[STAGED_RECORD] = str(snapshot.generation)
        return snapshot.data

    @contextlib.contextmanager
    def open_staged(self, relpath: str) -> Iterator[IO[bytes]]:
        loc = _staged_data(self.prefix, self.store.kind, relpath)
        self.fs.invalidate_cache(loc.path)
        info = self.fs.info(loc.path)
        generation = str(info.get("generation"))
        pinned = _PinnedObject(self.fs, loc.path, generation, int(info.get("size") or 0))
        with io.BufferedReader(pinned, buffer_size=CHUNK_SIZE * 8) as f:
            self._verified[loc.path[len(self.prefix.path) + 1 :]] = generation
            yield f

    def staged_files(self) -> set[str]:
        objects = relist(self.prefix).objects
        if self.store.kind == "file":
            return {""} if "data" in objects else set()
        return {rel for rel in objects if not rel.startswith(RESERVED_DIR + "/")}

    def commit(
        self,
        snapshot: RecordSnapshot,
        idents: Mapping[str, object],
        old: EnvelopeRecord,
        new: EnvelopeRecord,
        on_step: StepHook,
    ) -> None:
        """Check nothing moved, write COMMIT, roll forward (the module docstring)."""
        url = self.store.root.url
        current = read_snapshot(snapshot.location)
        if (current.generation, current.data) != (snapshot.generation, snapshot.data):
            raise RecordConflictError(f"{url}: record changed while re-encrypting; left as is")
        live = self.store.data_files() if self.store.kind == "dataset" else self._file_ident()
        if live != dict(idents):
            raise RecordConflictError(f"{url}: data changed while re-encrypting; left as is")
        self.tick()
        staged = relist(self.prefix).objects
        if LEASE not in staged or any(
            str(staged.get(rel, {}).get("generation")) != gen for rel, gen in self._verified.items()
        ):
            raise EnvelopeIOError(f"{self.prefix.url}: staging changed under us (taken over?); not committed")
        marker = Commit(new.kind, old.envelope_id, snapshot.generation, new.envelope_id)
        with fs_open_write(self.fs, self.prefix.child(REENCRYPT_COMMIT).path) as f:
            f.write(marker.to_json())
        self.committed = True
        on_step(STEP_COMMITTED, url)
        roll_forward(self.store.root, self.prefix, on_step)

    def _file_ident(self) -> dict[str, object]:
        self.fs.invalidate_cache(self.store.root.path)
        return {"": str(self.fs.info(self.store.root.path).get("generation"))}


def _lease_body() -> bytes:
    return json.dumps({"format": "kmsflow.reencrypt-lease", "at": utc_now().isoformat()}).encode()
