"""Duration parsing for key specs: the forms people write, the errors, and a round-trip property."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmsflow.spec.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90d", 90 * 86400),
        ("2160h", 90 * 86400),
        ("7776000s", 90 * 86400),
        ("30m", 1800),
        ("1d12h", 36 * 3600),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        (" 24h ", 86400),
        (86400, 86400),
        (1.5, 1.5),
        (timedelta(days=2), 2 * 86400),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "90", "90 days", "1h1d", "1d1d", "-5d", "5w", "d", "1.5d", True, -3])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=90), "90d"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=7), "7s"),
        (timedelta(0), "0s"),
        (timedelta(days=1, seconds=1), "86401s"),
    ],
)
def test_format_duration_uses_the_largest_exact_unit(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@given(st.integers(min_value=0, max_value=10**10))
def test_format_then_parse_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@given(
    st.lists(st.sampled_from("dhms"), min_size=1, max_size=4, unique=True),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=4, max_size=4),
)
def test_compound_forms_parse_to_their_sum(units: list[str], amounts: list[int]) -> None:
    size = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    ordered = sorted(units, key="dhms".index)
    text = "".join(f"{n}{u}" for n, u in zip(amounts, ordered, strict=False))
    expected = sum(n * size[u] for n, u in zip(amounts, ordered, strict=False))
    parsed = parse_duration(text)
    assert parsed == timedelta(seconds=expected)
    assert parse_duration(format_duration(parsed)) == parsed
