"""Log formatting: one JSON object per line (default) or readable text, configured at the entry point.

Every record keeps its dotted event name as `event` and its `extra` fields as top-level keys. Extra
fields whose name suggests a credential are replaced by "[redacted]" (a safety net: the code never
passes one).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from m365connect.settings import Settings

REDACTED = "[redacted]"
_SENSITIVE_WORDS = ("secret", "password", "authorization", "api_key", "apikey", "token", "cookie")
# Attributes every LogRecord has: anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# uvicorn repeats its message with terminal colours: not for a log line.
_DROPPED = frozenset({"color_message"})
# Libraries whose chatter drowns ours; httpx (one line per Microsoft request, with the mailbox address in
# Graph filters) only shows at DEBUG.
_QUIET_LIBRARIES = ("httpcore", "hpack", "aiosqlite", "asyncio")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra` fields, credentials redacted."""
    return {
        key: REDACTED if any(word in key.lower() for word in _SENSITIVE_WORDS) else value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and key not in _DROPPED and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "event", …extra fields, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger event key=value …` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus a traceback when there is one)."""
        fields = " ".join(f"{key}={value}" for key, value in extra_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name} {record.getMessage()} {fields}"
        if record.exc_info:
            line = f"{line.rstrip()}\n{self.formatException(record.exc_info)}"
        return line.rstrip()


def build_handler(log_format: Literal["json", "text"], *, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stdout by default) with the chosen formatter."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's) through one handler; uvicorn's access log is replaced by
    our `http.request` line. Called once by the command that starts the service."""
    root = logging.getLogger()
    root.handlers[:] = [build_handler(settings.log_format, stream=stream)]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.setLevel(logging.NOTSET)
        server_logger.propagate = True
        server_logger.disabled = name == "uvicorn.access"
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.NOTSET if settings.log_level == "DEBUG" else logging.WARNING)
