"""User Manager gRPC server: ``UserService.CheckUserExists`` plus the standard health service."""

from common.process.supervisor import run_until_stopped
from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.server import AppServicer, GrpcServer
from user_manager import services
from user_manager.app import create_app


class UserServicer(AppServicer, stubs.UserServiceServicer):
    """Answers whether a user exists, for the Data Collector."""

    def CheckUserExists(self, request, context):
        """Look the user up by normalized email."""
        with self.serving(context, "CheckUserExists"):
            exists = services.user_exists(email=request.email)
        return messages.UserResponse(exists=exists)


def server() -> GrpcServer:
    """Build the gRPC server, on an app of its own (the launcher starts and stops it)."""
    app = create_app(migrations=False, process="grpc")
    return GrpcServer(
        app,
        add_servicer=lambda grpc_server: stubs.add_UserServiceServicer_to_server(
            UserServicer(app), grpc_server
        ),
        service_name=messages.DESCRIPTOR.services_by_name["UserService"].full_name,
    )


def serve() -> None:
    """Run the gRPC server alone until SIGTERM."""
    run_until_stopped(server())


if __name__ == "__main__":
    serve()
