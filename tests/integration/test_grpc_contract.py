"""A client built from the released gRPC contract still understands today's servers.

During a rolling update, User Manager replicas of the first release call the
new Data Collector; they check ``DeleteInterestsResponse.success``. Their
messages are built here from ``protos/released/`` in a descriptor pool of
their own (the current contract's generated code stays untouched).
"""

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from devstack.protos import PROTO_DIR, descriptor_set
from tests.utils import create_user

pytestmark = pytest.mark.local_stack


@pytest.fixture(scope="module")
def released_messages(tmp_path_factory):
    """The released contract's message classes, by name."""
    output = tmp_path_factory.mktemp("released") / "released.binpb"
    pool = descriptor_pool.DescriptorPool()
    for contract in descriptor_set(PROTO_DIR / "released" / "flight_tracker.proto", output).file:
        pool.Add(contract)
    return lambda name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"flighttracker.v1.{name}")
    )


def test_a_first_release_client_sees_every_delete_succeed(local_stack, um, dc, released_messages):
    email = create_user(um)
    for code in ("LIRF", "EGLL"):
        answer = dc.post("/interests", json={"email": email, "airport_code": code})
        assert answer.status_code == 201, answer.text
    request_type = released_messages("UserRequest")
    response_type = released_messages("DeleteInterestsResponse")
    address = f"127.0.0.1:{local_stack.settings.data_collector_grpc_port}"
    with grpc.insecure_channel(address) as channel:
        delete = channel.unary_unary(
            "/flighttracker.v1.DataCollectorService/DeleteUserInterests",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        first = delete(request_type(email=email), timeout=5)
        again = delete(request_type(email=email), timeout=5)
    assert (first.success, first.deleted_count) == (True, 2)
    assert (again.success, again.deleted_count) == (True, 0)  # idempotent, still a success
