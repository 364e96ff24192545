"""``printable``: what reaches a person's terminal holds no control or bidi character, and stays
readable and unambiguous."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from kmsflow.display import printable

BIDI = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202etxt.enc"


def unescape(shown: str) -> str:
    """The inverse of ``printable``: it exists, so distinct texts are shown distinctly."""
    return re.sub(
        r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})",
        lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)),
        shown,
    )


@given(st.text())
def test_no_control_or_bidi_character_survives_and_nothing_is_lost(text: str) -> None:
    shown = printable(text)
    assert not any(unicodedata.category(c) == "Cc" or c in BIDI for c in shown)
    assert len(shown.splitlines()) <= 1  # one line, whatever the text held
    assert unescape(shown) == text


@given(st.text(st.characters(blacklist_categories=["Cc", "Zl", "Zp"], blacklist_characters=[*BIDI, "\\"])))
def test_printable_text_is_shown_as_is(text: str) -> None:
    assert printable(text) == text


def test_examples() -> None:
    assert printable(HOSTILE) == "evil\\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.enc"
    assert printable("modèle-日本\t\n\x85\x7f\\") == "modèle-日本\\x09\\x0a\\x85\\x7f\\\\"
