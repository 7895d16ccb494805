"""Any gRPC failure of CheckUserExists is a 503 for POST /interests, never a 500.

A user's flights are read while the check runs; the check's answer still decides.
"""

from concurrent import futures
from types import SimpleNamespace

import grpc
import pytest

from common.rpc.generated import flight_tracker_pb2_grpc
from common.rpc.peers import PeerError, UserDirectory
from common.web.errors import ApiError
from data_collector.services import read_for_existing_user, require_existing_user


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


class _Pending:
    """A CheckUserExists already answered: ``exists``, or the gRPC status it failed with."""

    def __init__(self, exists=None, code=None):
        self.exists, self.code = exists, code

    def reply(self):
        if self.code is not None:
            raise PeerError("user-manager:50051", "CheckUserExists", self.code, "down")
        return SimpleNamespace(exists=self.exists)


class _Directory:
    def __init__(self, pending):
        self.pending = pending

    def start_check_user_exists(self, email, *, wait_for_ready=False):
        return self.pending


class _ReadError(Exception):
    pass


def _failing_read():
    raise _ReadError


@pytest.mark.parametrize(
    ("pending", "status"),
    [
        (_Pending(exists=False), 404),
        (_Pending(code=grpc.StatusCode.UNAVAILABLE), 503),
        (_Pending(code=grpc.StatusCode.DEADLINE_EXCEEDED), 503),
    ],
)
def test_the_user_check_s_answer_comes_before_what_the_read_did(pending, status):
    directory = _Directory(pending)
    for read in (lambda: ["a flight"], _failing_read):
        with pytest.raises(ApiError) as raised:
            read_for_existing_user(directory=directory, email="someone@example.com", read=read)
        assert raised.value.status == status


def test_an_existing_user_gets_the_read_or_its_error():
    directory = _Directory(_Pending(exists=True))
    rows = read_for_existing_user(
        directory=directory, email="someone@example.com", read=lambda: ["a flight"]
    )
    assert rows == ["a flight"]
    with pytest.raises(_ReadError):
        read_for_existing_user(directory=directory, email="someone@example.com", read=_failing_read)
