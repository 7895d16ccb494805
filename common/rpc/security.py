"""The grpcio side of :class:`common.settings.GrpcSecurity`: channels, ports, the token check.

Servers and clients build their transport here and nowhere else, so the
peers, the gRPC server, the container health check and the local stack's
readiness wait always agree: plaintext, or mutual TLS from the same three
PEM files; and, when a token is set, ``authorization: Bearer <token>`` on
every call.

The standard health service (``Check`` and ``Watch``) is the one exception to
the token: the channels' client-side health checks (:mod:`common.rpc.peers`)
are RPCs that gRPC itself makes on each connection, without the metadata the
application adds to its own calls, and gRPC sends call credentials only over
TLS. Its only answer is SERVING or not; with TLS on, it is still reachable
only by a client holding a certificate of the CA.

With TLS a client also checks that the server's certificate names the
address it dialled (a DNS name or an IP address in its subjectAltName): the
certificate must name the peers' host names in ``*_GRPC_ADDR`` and, for the
health check that runs beside the server, ``127.0.0.1``.
"""

import hmac
from collections.abc import Sequence

import grpc

from common.settings import GrpcSecurity

AUTHORIZATION_METADATA_KEY = "authorization"
UNAUTHENTICATED_DETAILS = "this call needs the metadata authorization: Bearer <GRPC_AUTH_TOKEN>"


def open_channel(
    address: str, security: GrpcSecurity, *, options: Sequence[tuple[str, object]] = ()
) -> grpc.Channel:
    """Open a channel to ``address``: mutual TLS when configured, else plaintext."""
    if not security.tls:
        return grpc.insecure_channel(address, options=list(options))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=security.ca,
        private_key=security.private_key,
        certificate_chain=security.certificate,
    )
    return grpc.secure_channel(address, credentials, options=list(options))


def add_port(server: grpc.Server, address: str, security: GrpcSecurity) -> int:
    """Listen on ``address`` (mutual TLS when configured); return the port, 0 if it failed."""
    if not security.tls:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials(
        [(security.private_key, security.certificate)],
        root_certificates=security.ca,
        # Mutual: a client without a certificate signed by the CA never gets a connection.
        require_client_auth=True,
    )
    return server.add_secure_port(address, credentials)


def _refuse(_request, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)


# Every RPC of this contract ends at its first message: a unary handler that aborts
# answers any of them with the status alone.
_REFUSED = grpc.unary_unary_rpc_method_handler(_refuse)
# Served without the token: what gRPC's client-side health checking calls (it cannot send
# the token), and the one-shot probe. Health's other methods (List) still need it.
TOKENLESS_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuse, with ``UNAUTHENTICATED``, every call that does not carry the shared token.

    The health service's ``Check`` and ``Watch`` (:data:`TOKENLESS_METHODS`) are
    served to any client that has a connection: see the module docstring.
    """

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        """Let the call through only when its ``authorization`` metadata is the token."""
        if handler_call_details.method in TOKENLESS_METHODS:
            return continuation(handler_call_details)
        given = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTHORIZATION_METADATA_KEY:
                given = value if isinstance(value, str) else ""
                break
        # Constant time: how long the comparison takes says nothing about the token.
        if hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        return _REFUSED
