"""Load and validate a key spec from YAML, reporting every problem with its field path.

A spec is reviewed by people and applied by machines, so a bad one must fail *before* any KMS call,
with all its problems at once, each pointing at the field: ``key_rings[0].keys[1].rotation_period:
must be at least 24h (got 1h)``. Values are echoed cut short (``kmsflow.shown``) and YAML aliases
are refused: a 455-byte alias bomb once expanded into a 722 MB message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kmsflow.shown import shown
from kmsflow.spec.model import KeySpec

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENCRYPT_ALGORITHMS = {"ENCRYPT_DECRYPT": ("GOOGLE_SYMMETRIC_ENCRYPTION",)}
MAX_LISTED_PROBLEMS = 50
"""The most problems a :class:`SpecError` message lists (all are in ``problems``)."""


class SpecError(ValueError):
    """The spec is invalid; ``problems`` lists each as ``field.path: what is wrong``."""

    def __init__(self, problems: list[str], source: str = "key spec") -> None:
        self.problems = problems
        listed = [f"  - {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            listed.append(f"  - ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"invalid {source} ({count}):\n" + "\n".join(listed))


class _SpecLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """YAML's safe loader without aliases: every value in a spec is written out where it applies.

    Why: an alias repeats a node without repeating its text, so nine lines of ``&a [*b, *b, ...]``
    expand into billions of values (and a validation error echoing them). Anchors are refused too,
    as they only exist to be aliased; the error names the line and column.
    """

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors and aliases (&name, *name) are not allowed in a key spec",
                event.start_mark,
            )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('key_rings', 0, 'iam', 'roles/x', 1)`` → ``key_rings[0].iam['roles/x'][1]``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the dict key itself", already named
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part) and len(part) <= 63:
            out += f".{part}" if out else part
        else:
            out += f"[{shown(part)}]"
    return out or "(document)"


def _message(error: Mapping[str, Any]) -> str:
    kind, message = error["type"], str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    return f"{message[0].lower()}{message[1:]} (got {shown(error.get('input'))})"


def _problems(error: ValidationError) -> list[str]:
    seen: list[str] = []
    for item in error.errors():
        line = f"{field_path(tuple(item['loc']))}: {_message(item)}"
        if line not in seen:
            seen.append(line)
    return seen


def check(spec: KeySpec) -> list[str]:
    """Rules across fields: unique ids, an algorithm the purpose accepts, signers and verifiers only
    on signing keys. Empty when valid."""
    problems: list[str] = []
    rings: dict[str, int] = {}
    for r, ring in enumerate(spec.key_rings):
        if ring.id in rings:
            problems.append(
                f"key_rings[{r}].id: duplicate key ring id {ring.id!r} (also key_rings[{rings[ring.id]}])"
            )
        rings.setdefault(ring.id, r)
        keys: dict[str, int] = {}
        for k, key in enumerate(ring.keys):
            where = f"key_rings[{r}].keys[{k}]"
            if key.id in keys:
                problems.append(
                    f"{where}.id: duplicate key id {key.id!r} in key ring {ring.id!r} "
                    f"(also keys[{keys[key.id]}])"
                )
            keys.setdefault(key.id, k)
            allowed = _ENCRYPT_ALGORITHMS.get(key.purpose)
            if allowed is not None and key.algorithm not in allowed:
                problems.append(
                    f"{where}.algorithm: {key.purpose} keys need {' or '.join(allowed)} "
                    f"(got {key.algorithm!r})"
                )
            for field in ("signers", "verifiers"):
                if key.purpose != "ASYMMETRIC_SIGN" and field in key.model_fields_set:
                    problems.append(
                        f"{where}.{field}: only ASYMMETRIC_SIGN keys sign (purpose is {key.purpose})"
                    )
    return problems


def _read(source: str | Path) -> tuple[str, str]:
    """(text, label): ``source`` is a path to a YAML file, or YAML text itself."""
    if isinstance(source, Path):
        return source.read_text(encoding="utf-8"), str(source)
    looks_like_path = "\n" not in source and source.strip().endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(source.strip())
        if not path.is_file():
            raise SpecError([f"(document): no such spec file {source!r}"])
        return path.read_text(encoding="utf-8"), source.strip()
    return source, "key spec"


def parse_spec(data: Mapping[str, Any], source: str = "key spec") -> KeySpec:
    """Validate an already-parsed document (e.g. from JSON or XCom) into a ``KeySpec``."""
    try:
        spec = KeySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc), source) from None
    problems = check(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


def load_spec(path_or_text: str | Path | Mapping[str, Any]) -> KeySpec:
    """Load a ``KeySpec`` from a YAML file path, YAML text, or a mapping; ``SpecError`` if invalid.

    A string ending in ``.yaml``/``.yml`` without newlines is a path; any other string is YAML.
    """
    if isinstance(path_or_text, Mapping):
        return parse_spec(path_or_text)
    text, source = _read(path_or_text)
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader (no Python objects), no aliases
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: not valid YAML: {problem}"], source) from None
    if not isinstance(data, Mapping):
        raise SpecError(
            [f"(document): want a mapping with project, location, key_rings (got {type(data).__name__})"],
            source,
        )
    return parse_spec(data, source)
