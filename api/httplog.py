"""The logger of aiohttp's HTTP server inside this API: parser rejections are logged without the raw request.

aiohttp logs a request its parser refuses (a control byte in a header, a header line over ``max_field_size``, an
invalid method...) at ERROR with a traceback whose message quotes the offending raw line, e.g.
``Invalid header value char: b'X-Auth-Token: <token>\\x00'``. That would put tokens into the service's log. The
app hands aiohttp this logger instead (``handler_args``); its filter turns such records into one INFO line naming
the error class and status, without the exception and its quoted bytes. Any other record passes unchanged.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

NAME: Final = "api.http"
MALFORMED: Final = "malformed HTTP request refused"


class RedactParserErrors(logging.Filter):
    """Replaces a parser error's record (message, quoted raw bytes, traceback) by a one-line summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; rewrites it when it carries an HTTP parser error."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = MALFORMED
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            # A client's malformed request is not the service's error.
            record.levelno = min(record.levelno, logging.INFO)
            record.levelname = logging.getLevelName(record.levelno)
            record.status = exc.code
            record.error = type(exc).__name__
        return True


def server_logger() -> logging.Logger:
    """The logger aiohttp's request handler should use (the filter is installed once)."""
    logger = logging.getLogger(NAME)
    if not any(isinstance(f, RedactParserErrors) for f in logger.filters):
        logger.addFilter(RedactParserErrors())
    return logger
