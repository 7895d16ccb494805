"""The gRPC between the two services: typed clients (peers), the server, generated code."""
