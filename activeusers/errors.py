"""Error types shared by the consumer, the API and the command line.

Every error the service raises on purpose derives from :class:`ActiveUsersError`; the API maps them to HTTP
in one place (``api.errors``) and the command line prints their message and exits non-zero.
"""

import errno


class ActiveUsersError(Exception):
    """Base class of the service's own errors."""


class ConfigError(ActiveUsersError):
    """A setting is missing or invalid; the message names the variable and what is expected."""


class ListenError(ConfigError):
    """A server cannot listen on its configured address; the message names the setting to change."""

    def __init__(self, host_setting: str, port_setting: str, host: str, port: int, error: OSError) -> None:
        if error.errno == errno.EADDRINUSE:
            message = (
                f"{port_setting}={port}: {host}:{port} is already in use by another process; "
                f"set {port_setting} to a free port (0: any free port)"
            )
        elif error.errno == errno.EACCES:
            message = f"{port_setting}={port}: not permitted to listen on port {port}; choose a port above 1023"
        else:
            reason = error.strerror or str(error)
            message = f"{host_setting}={host}, {port_setting}={port}: cannot listen there ({reason})"
        super().__init__(message)


class MalformedEvent(ActiveUsersError):
    """A Kafka record cannot be turned into an event.

    ``reason`` is a short stable code (used as a metric label and a dead-letter header); ``detail`` is for people.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StoreUnavailable(ActiveUsersError):
    """Redis could not be reached or answered with an error."""


class IndexIncomplete(StoreUnavailable):
    """A bit of the index has no user id in its bucket's names list: numbers given before the list existed,
    not yet listed by ``active-users reindex`` (the upgrade), or a list removed by hand."""

    def __init__(self, names_key: str, needed: int, listed: int) -> None:
        super().__init__(
            f"{names_key} lists {listed} user ids but the index has user number {needed - 1}: "
            "run `active-users reindex` to list the ids of numbers given before this version"
        )
