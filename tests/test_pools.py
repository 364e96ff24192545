"""``kmsflow.pools.chunks``: how rewrap and inventory split their work over a thread pool."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kmsflow.pools import chunks


@given(count=st.integers(0, 1000), workers=st.integers(1, 64), most=st.integers(1, 100))
def test_chunks_cover_every_item_once_in_order_and_feed_every_worker(
    count: int, workers: int, most: int
) -> None:
    items = list(range(count))

    split = chunks(items, workers, most)

    assert [i for chunk in split for i in chunk] == items
    assert all(0 < len(chunk) <= most for chunk in split)
    assert len(split) >= min(count, workers)  # no worker idles while another holds two chunks
    sizes = {len(chunk) for chunk in split}
    assert not split or max(sizes) - min(sizes) <= 1
