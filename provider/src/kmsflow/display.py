"""Make untrusted text (file and object names, messages that embed them) safe to show on a terminal.

A name is chosen by whoever wrote the file, not by the operator reading kmsflow's output: raw
escape sequences in it could retitle the terminal, clear the screen, hide or forge lines, and
Unicode bidi overrides could make ``evil.enc`` read as something else. Human output therefore goes
through :func:`printable`; JSON output does not need it (``json.dumps`` escapes control
characters, and tools, not terminals, read it).
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls; bidi embeddings/overrides and isolates, which reorder what
# follows them; the Unicode line and paragraph separators, which break "one line" for the tools
# that honour them; and the backslash itself, so that every escape reads back unambiguously.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\\\\]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character, bidi control and line separator shown as a visible
    ``\\xNN``/``\\uNNNN`` escape and each backslash doubled; anything else, ``é`` or ``日本``
    included, is unchanged. The result is one line, and distinct texts stay distinct."""
    return _UNSAFE.sub(_escape, text)
