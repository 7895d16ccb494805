"""User Manager gRPC server: ``UserService.CheckUserExists`` (plus the standard health service)."""

from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.server import AppServicer
from user_manager import services


class UserServicer(AppServicer, stubs.UserServiceServicer):
    """Answers whether a user exists, for the Data Collector."""

    SERVICE = "UserService"

    def CheckUserExists(self, request, context):
        """Look the user up by normalized email."""
        email = self.email_argument(context, request.email)
        with self.serving(context, "CheckUserExists"):
            exists = services.user_exists(email=email)
        return messages.UserResponse(exists=exists)
