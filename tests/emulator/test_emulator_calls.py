"""The Admin service's per-method call counts (GetCalls / ResetCalls)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

LOCATION = "projects/p/locations/us-central1"


def test_every_call_is_counted_by_method_faulted_ones_too_admin_never(
    fresh_emulator: Any, clients: Callable[..., Any]
) -> None:
    client = clients(fresh_emulator)
    admin = fresh_emulator.admin
    assert admin.calls() == {}
    ring = client.create_key_ring(parent=LOCATION, key_ring_id="r", key_ring={})
    for _ in range(3):
        list(client.list_key_rings(parent=LOCATION))
    with pytest.raises(gexc.NotFound):
        client.get_key_ring(name=f"{LOCATION}/keyRings/missing")
    admin.set_faults(script=["UNAVAILABLE"], methods=["GetKeyRing"])
    with pytest.raises(gexc.ServiceUnavailable):
        client.get_key_ring(name=ring.name, retry=Retry(predicate=lambda _: False))
    admin.now()  # the harness's own calls are not counted
    assert admin.calls() == {"CreateKeyRing": 1, "GetKeyRing": 2, "ListKeyRings": 3}

    assert admin.reset_calls() == {"CreateKeyRing": 1, "GetKeyRing": 2, "ListKeyRings": 3}
    assert admin.calls() == {}
    client.get_key_ring(name=ring.name)
    assert admin.calls() == {"GetKeyRing": 1}
