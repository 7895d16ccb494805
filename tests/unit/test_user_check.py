"""Any gRPC failure of CheckUserExists is a 503 for POST /interests, never a 500."""

from concurrent import futures

import grpc
import pytest

from common.rpc.generated import flight_tracker_pb2_grpc
from common.rpc.peers import UserDirectory
from common.web.errors import ApiError
from data_collector.services import require_existing_user


class _FailingUserService(flight_tracker_pb2_grpc.UserServiceServicer):
    def __init__(self, code):
        self.code = code

    def CheckUserExists(self, request, context):  # noqa: N802 (the .proto's name)
        context.abort(self.code, "the User Manager is having a bad day")


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED],
)
def test_any_grpc_error_from_the_user_check_is_a_503(code):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    flight_tracker_pb2_grpc.add_UserServiceServicer_to_server(_FailingUserService(code), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    directory = UserDirectory(f"127.0.0.1:{port}", timeout=5)
    try:
        with pytest.raises(ApiError) as raised:
            require_existing_user(directory=directory, email="someone@example.com")
        assert raised.value.status == 503
    finally:
        server.stop(None)
