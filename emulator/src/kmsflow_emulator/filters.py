"""The subset of Cloud KMS list ``filter`` syntax the emulator understands.

``field OP value`` terms with OP one of ``=``, ``!=`` or ``:`` (has), joined by ``AND`` / ``OR``
(``AND`` binds tighter), optionally prefixed by ``NOT``. Enough for ``state=ENABLED``,
``state=ENABLED OR state=DISABLED`` and ``NOT state:DESTROY``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from kmsflow_emulator.errors import invalid

_TERM = re.compile(r"^(?P<not>NOT\s+)?(?P<field>[A-Za-z_.]+)\s*(?P<op>!=|=|:)\s*(?P<value>\"[^\"]*\"|\S+)$")

Predicate = Callable[[Mapping[str, str]], bool]


def _term(text: str) -> Predicate:
    match = _TERM.match(text.strip())
    if match is None:
        raise invalid(f"Invalid filter term {text.strip()!r}: want field=value, field!=value or field:value.")
    field, op, value = match.group("field"), match.group("op"), match.group("value").strip('"')
    negate = bool(match.group("not"))

    def test(fields: Mapping[str, str]) -> bool:
        if field not in fields:
            raise invalid(f"Invalid filter: unknown field {field!r} (known: {', '.join(sorted(fields))}).")
        actual = fields[field]
        result = {"=": actual == value, "!=": actual != value, ":": value in actual}[op]
        return result != negate

    return test


def compile_filter(expression: str) -> Predicate:
    """A predicate over a resource's named string fields; the empty filter matches everything."""
    if not expression.strip():
        return lambda fields: True
    alternatives = [
        [_term(t) for t in re.split(r"\s+AND\s+", part)] for part in re.split(r"\s+OR\s+", expression.strip())
    ]
    return lambda fields: any(all(t(fields) for t in terms) for terms in alternatives)
