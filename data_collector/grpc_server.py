"""Data Collector gRPC server: ``DataCollectorService.DeleteUserInterests`` plus health."""

import grpc

from common.grpc_serving import run_grpc_server
from common.rpc import flight_tracker_pb2, flight_tracker_pb2_grpc
from data_collector import services
from data_collector.app import create_app


class DataCollectorServicer(flight_tracker_pb2_grpc.DataCollectorServiceServicer):
    """Deletes a deleted user's interests, for the User Manager (idempotent)."""

    def __init__(self, app):
        self.app = app

    def DeleteUserInterests(self, request, context):
        """Delete every interest of the user and report how many there were."""
        with self.app.app_context():
            try:
                deleted = services.delete_user_interests(email=request.email)
            except Exception:
                self.app.logger.exception("DeleteUserInterests failed")
                context.abort(grpc.StatusCode.UNAVAILABLE, "interest database unavailable")
        return flight_tracker_pb2.DeleteInterestsResponse(success=True, deleted_count=deleted)


def serve() -> None:
    """Run the gRPC server until SIGTERM."""
    app = create_app(migrations=False)

    def register(server: grpc.Server) -> list[str]:
        flight_tracker_pb2_grpc.add_DataCollectorServiceServicer_to_server(
            DataCollectorServicer(app), server
        )
        return ["flighttracker.v1.DataCollectorService"]

    run_grpc_server(app, register)


if __name__ == "__main__":
    serve()
