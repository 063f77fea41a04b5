"""Client errors in the log: one line, never a traceback.

BentoML 1.4.39 logs every exception raised while it handles a request at
ERROR with its traceback (``bentoml._internal.server.http_app.log_exception``),
client errors included: a fuzz run of 13,860 bad requests wrote 30.6 MB, a
cheap way to fill a disk. ``install()`` adds a filter to that logger that
turns the record of a client error (one BentoML answers with a 4xx) into one
INFO line naming the method, path, status and the fields at fault. Server
errors keep their ERROR record and traceback.

Usage: ``install()`` once, at import of the service module.
"""

from __future__ import annotations

import logging

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
CLIENT_ERROR_LINE = "%s %s -> %d (%s)"


def client_error_status(error: BaseException) -> int | None:
    """The 4xx status BentoML answers this exception with, or None for a server error."""
    if isinstance(error, ValidationError):
        return 400
    if isinstance(error, BentoMLException) and 400 <= error.error_code.value < 500:
        return error.error_code.value
    return None


def client_error_fields(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return ", ".join(".".join(map(str, detail["loc"])) or "body" for detail in error.errors())
    return type(error).__name__


class ClientErrorsOnOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = client_error_status(error) if error is not None else None
        if status is None:
            return True
        path, method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.msg, record.args = CLIENT_ERROR_LINE, (method, path, status, client_error_fields(error))
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def log_client_error(method: str, path: str, status: int, error: BaseException) -> None:
    """The same one line for a client error answered outside BentoML's route (``service.http.direct_route``)."""
    logging.getLogger(BENTOML_REQUEST_LOGGER).info(CLIENT_ERROR_LINE, method, path, status, client_error_fields(error))


def install() -> None:
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorsOnOneLine) for f in logger.filters):
        logger.addFilter(ClientErrorsOnOneLine())
