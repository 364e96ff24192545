"""google.cloud.location.Locations (ListLocations, GetLocation) through the KMS client's mixin."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import kms_v1
from google.cloud.location import locations_pb2


def test_list_and_get_locations(kms: kms_v1.KeyManagementServiceClient, new_ring: Any) -> None:
    kms.create_key_ring(
        request={"parent": "projects/loc-proj/locations/mars-north1", "key_ring_id": "r", "key_ring": {}}
    )
    listed = kms.list_locations(request=locations_pb2.ListLocationsRequest(name="projects/loc-proj"))
    ids = [loc.location_id for loc in listed.locations]
    assert {"global", "us-central1", "europe-west1", "mars-north1"} <= set(ids)
    assert ids == sorted(ids)
    first = listed.locations[0]
    assert first.name == f"projects/loc-proj/locations/{first.location_id}"
    metadata = kms_v1.LocationMetadata.pb()()
    assert first.metadata.Unpack(metadata) and metadata.hsm_available

    paged = kms.list_locations(
        request=locations_pb2.ListLocationsRequest(name="projects/loc-proj", page_size=2)
    )
    assert len(paged.locations) == 2 and paged.next_page_token
    rest = kms.list_locations(
        request=locations_pb2.ListLocationsRequest(name="projects/loc-proj", page_token=paged.next_page_token)
    )
    assert [loc.location_id for loc in paged.locations] + [loc.location_id for loc in rest.locations] == ids
    only = kms.list_locations(
        request=locations_pb2.ListLocationsRequest(name="projects/loc-proj", filter="location_id=global")
    )
    assert [loc.location_id for loc in only.locations] == ["global"]
    # Key rings of another project are not this project's locations.
    other = kms.list_locations(request=locations_pb2.ListLocationsRequest(name="projects/other-proj"))
    assert "mars-north1" not in [loc.location_id for loc in other.locations]

    got = kms.get_location(
        request=locations_pb2.GetLocationRequest(name="projects/loc-proj/locations/us-east1")
    )
    assert (got.name, got.location_id) == ("projects/loc-proj/locations/us-east1", "us-east1")
    with pytest.raises(exceptions.InvalidArgument):
        kms.get_location(request=locations_pb2.GetLocationRequest(name="projects/loc-proj"))
    with pytest.raises(exceptions.InvalidArgument):
        kms.list_locations(request=locations_pb2.ListLocationsRequest(name="projects/a/locations/b"))


def test_locations_need_the_owner_under_iam(iam_emulator: Any, owner: str, clients: Any) -> None:
    request = locations_pb2.ListLocationsRequest(name="projects/loc-iam")
    assert clients(iam_emulator, owner).list_locations(request=request).locations
    stranger = clients(iam_emulator, "serviceAccount:x@p.iam.gserviceaccount.com")
    with pytest.raises(exceptions.PermissionDenied):
        stranger.list_locations(request=request)
    with pytest.raises(exceptions.PermissionDenied):
        stranger.get_location(
            request=locations_pb2.GetLocationRequest(name="projects/loc-iam/locations/global")
        )
