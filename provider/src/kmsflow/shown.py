"""Values echoed in error messages, cut short.

A message says what is wrong and where; it does not carry the input back. A key spec of 455 bytes
(a YAML alias bomb) once made a 722 MB validation message. :func:`shown` is bounded in both its
output and its work (``reprlib`` stops descending into large values), whatever it is given.
"""

from __future__ import annotations

import reprlib

SHOWN_LIMIT = 80
"""The most characters of a value a message shows; longer ones end in ``...``."""

_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel = 2
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_LIMIT


def shown(value: object) -> str:
    """``repr(value)`` cut to at most :data:`SHOWN_LIMIT` characters, ending in ``...`` if cut."""
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_LIMIT else text[: SHOWN_LIMIT - 3] + "..."
