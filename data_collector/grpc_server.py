"""Data Collector gRPC server: ``DataCollectorService.DeleteUserInterests`` plus health."""

from common.process.supervisor import run_until_stopped
from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.server import AppServicer, GrpcServer
from data_collector import interests
from data_collector.app import create_app


class DataCollectorServicer(AppServicer, stubs.DataCollectorServiceServicer):
    """Deletes a deleted user's interests, for the User Manager (idempotent)."""

    def DeleteUserInterests(self, request, context):
        """Delete every interest of the user and report how many there were."""
        with self.serving(context, "DeleteUserInterests"):
            deleted = interests.delete_user_interests(email=request.email)
        # success stays for clients built from the first release, which check it.
        return messages.DeleteInterestsResponse(success=True, deleted_count=deleted)


def server() -> GrpcServer:
    """Build the gRPC server, on an app of its own (the launcher starts and stops it)."""
    app = create_app(migrations=False, process="grpc")
    return GrpcServer(
        app,
        add_servicer=lambda grpc_server: stubs.add_DataCollectorServiceServicer_to_server(
            DataCollectorServicer(app), grpc_server
        ),
        service_name=messages.DESCRIPTOR.services_by_name["DataCollectorService"].full_name,
    )


def serve() -> None:
    """Run the gRPC server alone until SIGTERM."""
    run_until_stopped(server())


if __name__ == "__main__":
    serve()
