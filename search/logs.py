"""Log output: one JSON object per line, or plain text; and the request id of the running RPC.

Importing this module configures nothing. The entry point (``search/cli.py``)
calls ``configure_logging`` once; library code only uses
``logging.getLogger(__name__)``. The gRPC edge sets ``request_id`` for each
RPC, so every record logged while that RPC runs (an internal error's
traceback included) carries its id in JSON output.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TextIO

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The id of the RPC being served in this task; None outside any RPC.
request_id: ContextVar[str | None] = ContextVar("semsearch_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    Keys: ``ts`` (UTC, ISO-8601 with milliseconds), ``level``, ``logger``,
    ``msg`` (the %-formatted message), every ``extra=`` field, ``request_id``
    while an RPC runs, ``exc`` (the formatted traceback) when the record has
    exception info and ``stack`` with stack info. Values JSON cannot encode
    are written as their ``str()``; newlines stay escaped inside strings, so a
    traceback never splits the line.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=timezone.utc)
        entry: dict[str, Any] = {
            "ts": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):
    """The handler ``configure_logging`` installs: a subclass so a second call can find and replace it."""


def configure_logging(level: str | int, fmt: str = "json", *, stream: TextIO | None = None) -> logging.Handler:
    """Send records at ``level`` and above to ``stream`` (default stderr) as ``fmt`` ("json" or "text").

    Installs one handler on the root logger, replacing the one an earlier call
    installed and leaving other handlers alone. Returns the handler. Raises
    ValueError for an unknown format or level name.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(level, str):
        name = level.upper()
        if not isinstance(logging.getLevelName(name), int):
            raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
        level = logging.getLevelName(name)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it narrates CPU feature probing at INFO
    return handler
