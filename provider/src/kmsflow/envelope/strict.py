"""Strict JSON records as frozen dataclasses: the record and the signed statement, without pydantic.

Why not pydantic: every ``kmsflow`` command that reads a record (``inspect``, ``decrypt``,
``clean``, ``verify``...) paid for importing it and building the models, about as much as gRPC and
Tink together (docs/BENCHMARKS.md, CLI start-up). A record has a dozen fields of four kinds, so each
class lists its fields' checks (:attr:`StrictRecord.CHECKS`) and this module applies them.

The methods keep the names the spec models (pydantic) use for the same ideas — ``model_validate``,
``model_dump``, ``model_copy`` — so a caller handles a record and a spec alike. Unlike pydantic,
nothing is coerced: an integer field takes a JSON integer (not ``"1"``, ``1.0`` or ``true``), a
string field a string. Constructing a class directly does not validate: only writers holding values
they computed do that, and :func:`kmsflow.envelope.manifest.seal` validates the whole record before
it is written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) uses, in C
from typing import Any, ClassVar, Literal, Self

Check = Callable[[Any], Any]
"""Takes a field's JSON value, returns the field's value, or raises ValueError saying what is wrong."""


class FieldError(ValueError):
    """A record field that is not valid: ``loc`` is where (field names and list indexes)."""

    def __init__(self, loc: tuple[str | int, ...], problem: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc)) or 'the record'}: {problem}")
        self.loc = loc
        self.problem = problem


class StrictRecord:
    """Base of the strict record classes (each a frozen dataclass): validate, dump and copy."""

    __slots__ = ()
    CHECKS: ClassVar[Mapping[str, Check]]
    """Every field, in the order it is written, with its check."""

    @classmethod
    def model_validate(cls, raw: Any) -> Self:
        """``raw`` (a dict, as JSON parses it) checked field by field; :class:`FieldError` names the
        first field that is missing, unknown or invalid."""
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, dict):
            raise FieldError((), "must be a JSON object")
        checks = cls.CHECKS
        for name in raw:
            if name not in checks:
                raise FieldError((name,), "is not a field of this record")
        values = {}
        for name, check in checks.items():
            if name not in raw:
                if cls.__dataclass_fields__[name].default is dataclasses.MISSING:  # type: ignore[attr-defined]
                    raise FieldError((name,), "is required")
                continue
            try:
                values[name] = check(raw[name])
            except FieldError as exc:
                raise FieldError((name, *exc.loc), exc.problem) from None
            except ValueError as exc:
                raise FieldError((name,), str(exc)) from None
        return cls(**values)

    @classmethod
    def model_validate_json(cls, data: bytes) -> Self:
        """Parse (:func:`load_json`) and validate; ValueError (or :class:`FieldError`) if invalid."""
        return cls.model_validate(load_json(data))

    def model_dump(self, *, mode: Literal["json"] = "json", exclude: Collection[str] = ()) -> dict[str, Any]:
        """The fields as JSON values (lists, not tuples), in :attr:`CHECKS` order, but ``exclude``."""
        if exclude:
            return {name: _dumped(getattr(self, name)) for name in self.CHECKS if name not in exclude}
        return {name: _dumped(getattr(self, name)) for name in self.CHECKS}

    def model_copy(self, *, update: Mapping[str, Any]) -> Self:
        """A copy with ``update``'s fields replaced, not validated (as pydantic's ``model_copy``)."""
        return dataclasses.replace(self, **update)  # type: ignore[type-var]


def _dumped(value: Any) -> Any:
    if type(value) is str or type(value) is int:
        return value
    if isinstance(value, StrictRecord):
        return value.model_dump()
    if isinstance(value, tuple):
        return [_dumped(v) for v in value]
    return value


def load_json(data: bytes) -> Any:
    """The JSON value of ``data``: UTF-8 only (``json`` would sniff UTF-16 and UTF-32), nesting as
    deep as the parser's recursion limit allows; ValueError otherwise, saying where, never what."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def text(value: Any) -> str:
    """A string that is valid Unicode (JSON's ``\\ud800`` escapes can spell a lone surrogate)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (no lone surrogate)") from None
    return value


def byte_count(value: Any) -> int:
    """A byte count: a JSON integer, not negative (``bool`` is an ``int`` in Python: refused)."""
    if type(value) is not int or value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def one_of(*allowed: str | int) -> Check:
    """A check taking exactly one of ``allowed`` (``1`` but neither ``1.0`` nor ``true``)."""
    problem = "must be " + " or ".join(json.dumps(a) for a in allowed)

    def check(value: Any) -> Any:
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise ValueError(problem)
        return value

    return check


def items(check: Check, max_length: int) -> Check:
    """A check taking a list of at most ``max_length`` items, each passing ``check``; a tuple."""
    problem = f"must be a list of at most {max_length} items"

    def check_items(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple) or len(value) > max_length:
            raise ValueError(problem)
        out = []
        for i, item in enumerate(value):
            try:
                out.append(check(item))
            except FieldError as exc:
                raise FieldError((i, *exc.loc), exc.problem) from None
            except ValueError as exc:
                raise FieldError((i,), str(exc)) from None
        return tuple(out)

    return check_items


def indented_json(value: Any) -> str:
    """What ``json.dumps(value, indent=2, ensure_ascii=False)`` writes, for values made of dicts,
    lists, strings and integers (a record's), several times faster: ``json`` indents in pure
    Python, this writes strings with its C string encoder and a list of flat objects (the file
    entries) with one call of its C encoder (:func:`_flat_objects`)."""
    out: list[str] = []
    _write(value, "\n", out)
    return "".join(out)


def _is_flat_object(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(type(v) is str or type(v) is int for v in value.values())
    )


def _flat_objects(objects: list[dict[str, Any]], newline: str) -> str:
    """A list of non-empty objects of strings and integers, indented after ``newline``.

    ``json``'s C encoder writes the list with its item separator set to the fields' line break, so
    the fields come out right; the objects' boundaries, ``},`` + that break + ``{``, are then
    re-indented. The pattern occurs nowhere else: a line break inside a string is escaped."""
    item, field = newline + "  ", newline + "    "
    compact = json.dumps(objects, ensure_ascii=False, separators=("," + field, ": "))
    body = compact[2:-2].replace("}," + field + "{", item + "}," + item + "{" + field)
    return "[" + item + "{" + field + body + item + "}" + newline + "]"


def _write(value: Any, newline: str, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(encode_basestring(value))
    elif type(value) is int:
        out.append(int.__repr__(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        sep = "{" + inner
        for key, item in value.items():
            out.append(sep)
            out.append(encode_basestring(key))
            out.append(": ")
            _write(item, inner, out)
            sep = "," + inner
        out.append(newline + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[]")
            return
        if all(_is_flat_object(item) for item in value):
            out.append(_flat_objects(value, newline))
            return
        inner = newline + "  "
        sep = "[" + inner
        for item in value:
            out.append(sep)
            _write(item, inner, out)
            sep = "," + inner
        out.append(newline + "]")
    else:
        raise TypeError(f"not a record value: {type(value).__name__}")
