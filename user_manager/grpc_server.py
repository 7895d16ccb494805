"""User Manager gRPC server: ``UserService.CheckUserExists`` plus the standard health service."""

from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.server import AppServicer, run_grpc_server
from user_manager import services
from user_manager.app import create_app


class UserServicer(AppServicer, stubs.UserServiceServicer):
    """Answers whether a user exists, for the Data Collector."""

    def CheckUserExists(self, request, context):
        """Look the user up by normalized email."""
        with self.serving(context, "CheckUserExists"):
            exists = services.user_exists(email=request.email)
        return messages.UserResponse(exists=exists)


def serve() -> None:
    """Run the gRPC server until SIGTERM."""
    app = create_app(migrations=False, process="grpc")
    run_grpc_server(
        app,
        add_servicer=lambda server: stubs.add_UserServiceServicer_to_server(
            UserServicer(app), server
        ),
        service_name=messages.DESCRIPTOR.services_by_name["UserService"].full_name,
    )


if __name__ == "__main__":
    serve()
