"""Errors every layer raises or catches, importable without loading any library."""


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and why."""
