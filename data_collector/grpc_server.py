"""Data Collector gRPC server: ``DataCollectorService.DeleteUserInterests`` (plus health)."""

from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.server import AppServicer
from data_collector import interests


class DataCollectorServicer(AppServicer, stubs.DataCollectorServiceServicer):
    """Deletes a deleted user's interests, for the User Manager (idempotent)."""

    SERVICE = "DataCollectorService"

    def DeleteUserInterests(self, request, context):
        """Delete every interest of the user and report how many there were."""
        email = self.email_argument(context, request.email)
        with self.serving(context, "DeleteUserInterests"):
            deleted = interests.delete_user_interests(email=email)
        # success stays for clients built from the first release, which check it.
        return messages.DeleteInterestsResponse(success=True, deleted_count=deleted)
