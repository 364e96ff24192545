"""Hostile key specs: no YAML aliases, values echoed cut short, messages of bounded length.

Regression: a 455-byte alias bomb expanded into a 722 MB validation message (2.1 GB RSS).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.shown import SHOWN_LIMIT, shown
from kmsflow.spec.loader import MAX_LISTED_PROBLEMS, SpecError, load_spec

HEAD = "project: p\nlocation: l\n"
BOMB = HEAD + (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "key_rings: *c\n"
)
MESSAGE_BOUND = 20_000  # MAX_LISTED_PROBLEMS lines of a path, a reason and a value cut short


def problems(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    assert len(str(info.value)) < MESSAGE_BOUND
    return info.value


def test_an_alias_bomb_is_refused_at_its_first_anchor() -> None:
    error = problems(BOMB)
    assert error.problems == [
        "line 3, column 4: not valid YAML: anchors and aliases (&name, *name) are not allowed in a key spec"
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (HEAD + "key_rings: &rings []\n", "line 3, column 12"),
        ("project: &p p\nlocation: *p\n", "line 1, column 10"),
        (HEAD + "key_rings:\n- id: r\n  iam: &i {}\n- id: s\n  iam: *i\n", "line 5, column 8"),
        (HEAD + "base: &b {id: r}\nkey_rings:\n- <<: *b\n", "line 3, column 7"),
    ],
)
def test_anchors_and_aliases_are_refused_with_line_and_column(text: str, where: str) -> None:
    (problem,) = problems(text).problems
    assert problem.startswith(f"{where}: ") and "aliases" in problem


def test_the_same_spec_written_out_still_loads() -> None:
    spec = load_spec(HEAD + "key_rings:\n- id: r\n  keys:\n  - id: k\n")
    assert spec.key_rings[0].keys[0].id == "k"


LONG = "x" * 100_000


@pytest.mark.parametrize(
    "text",
    [
        f"project: '{LONG}'\nlocation: l\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    algorithm: '{LONG}'\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    rotation_period: '{LONG}'\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    labels: {{'{LONG}': v}}\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    labels: {{k: '{LONG}'}}\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    tenant: '{LONG}'\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    consumers: ['user:{LONG}']\n",
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    consumers: ['{LONG}']\n",
        HEAD + f"key_rings:\n- id: r\n  iam: {{'{LONG}': []}}\n",
        HEAD + f"key_rings:\n- id: r\n  iam: {{'roles/{LONG}': []}}\n",
        HEAD + f"key_rings: '{LONG}'\n",
        HEAD + f"key_rings:\n- id: r\n  keys: [{', '.join(['[1]'] * 20_000)}]\n",
        HEAD + f"key_rings:\n- id: r\n  {LONG}: 1\n",
    ],
)
def test_long_values_are_echoed_cut_short(text: str) -> None:
    error = problems(text)
    for problem in error.problems:
        assert len(problem) < 400, problem[:500]
        assert "x" * (SHOWN_LIMIT + 1) not in problem


def test_a_message_lists_a_bounded_number_of_problems() -> None:
    members = ", ".join(f"'user:nobody{i}'" for i in range(5_000))
    error = problems(HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    consumers: [{members}]\n")

    assert len(error.problems) == 5_000
    assert str(error).count("\n  - ") == MAX_LISTED_PROBLEMS + 1
    assert str(error).endswith(f"  - ... and {5_000 - MAX_LISTED_PROBLEMS} more")


@pytest.mark.parametrize(
    "value", [".inf", "-.inf", ".nan", "-1", "99999999999999999999d", "[1]", "{a: 1}", "1e400"]
)
def test_durations_that_are_not_finite_or_too_long_are_problems_not_crashes(value: str) -> None:
    (problem,) = problems(
        HEAD + f"key_rings:\n- id: r\n  keys:\n  - id: k\n    rotation_period: {value}\n"
    ).problems
    assert problem.startswith("key_rings[0].keys[0].rotation_period: ")


@settings(max_examples=200)
@given(
    st.recursive(
        st.text() | st.integers() | st.floats(), lambda v: st.lists(v) | st.dictionaries(st.text(), v)
    )
)
def test_shown_is_bounded_for_any_value(value: object) -> None:
    assert len(shown(value)) <= SHOWN_LIMIT


def test_shown_cuts_with_an_ellipsis_and_leaves_short_values_alone() -> None:
    assert shown("my project") == "'my project'"
    cut = shown("y" * 1000)
    assert len(cut) <= SHOWN_LIMIT and "..." in cut
