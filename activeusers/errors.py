"""Error types shared by the consumer, the API and the command line.

Every error the service raises on purpose derives from :class:`ActiveUsersError`; the API maps them to HTTP
in one place (``api.errors``) and the command line prints their message and exits non-zero.
"""


class ActiveUsersError(Exception):
    """Base class of the service's own errors."""


class ConfigError(ActiveUsersError):
    """A setting is missing or invalid; the message names the variable and what is expected."""


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
