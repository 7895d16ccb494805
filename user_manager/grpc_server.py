"""User Manager gRPC server: ``UserService.CheckUserExists`` plus the standard health service."""

import grpc

from common.grpc_serving import run_grpc_server
from common.rpc import flight_tracker_pb2, flight_tracker_pb2_grpc
from user_manager import services
from user_manager.app import create_app


class UserServicer(flight_tracker_pb2_grpc.UserServiceServicer):
    """Answers whether a user exists, for the Data Collector."""

    def __init__(self, app):
        self.app = app

    def CheckUserExists(self, request, context):
        """Look the user up by normalized email."""
        with self.app.app_context():
            try:
                exists = services.user_exists(email=request.email)
            except Exception:
                self.app.logger.exception("CheckUserExists failed")
                context.abort(grpc.StatusCode.UNAVAILABLE, "user database unavailable")
        return flight_tracker_pb2.UserResponse(exists=exists)


def serve() -> None:
    """Run the gRPC server until SIGTERM."""
    app = create_app(migrations=False)

    def register(server: grpc.Server) -> list[str]:
        flight_tracker_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(app), server)
        return ["flighttracker.v1.UserService"]

    run_grpc_server(app, register)


if __name__ == "__main__":
    serve()
