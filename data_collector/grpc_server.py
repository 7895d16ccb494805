"""Data Collector gRPC server: ``DataCollectorService.DeleteUserInterests`` plus health."""

from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.server import AppServicer, run_grpc_server
from data_collector import interests
from data_collector.app import create_app


class DataCollectorServicer(AppServicer, stubs.DataCollectorServiceServicer):
    """Deletes a deleted user's interests, for the User Manager (idempotent)."""

    def DeleteUserInterests(self, request, context):
        """Delete every interest of the user and report how many there were."""
        with self.serving(context, "DeleteUserInterests"):
            deleted = interests.delete_user_interests(email=request.email)
        return messages.DeleteInterestsResponse(deleted_count=deleted)


def serve() -> None:
    """Run the gRPC server until SIGTERM."""
    app = create_app(migrations=False, process="grpc")
    run_grpc_server(
        app,
        add_servicer=lambda server: stubs.add_DataCollectorServiceServicer_to_server(
            DataCollectorServicer(app), server
        ),
        service_name=messages.DESCRIPTOR.services_by_name["DataCollectorService"].full_name,
    )


if __name__ == "__main__":
    serve()
