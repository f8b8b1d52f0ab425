"""Structured logging: ``log(logger, "event", feed_id=..., article_id=...)``.

Records carry their fields in ``record.fields`` (for JSON handlers) and render
as ``event key=value ...`` for humans.  ``MEDIAMON_LOG_JSON=true`` (``Settings.log_json``,
read by the CLI at start-up, which passes it to :func:`configure_logging`) gives one JSON
object per line instead.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_ROOT = "mediamon"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{_ROOT}.{name.rsplit('.', 1)[-1]}")


def log(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return
    logger.log(level, event, extra={"fields": fields, "event": event})


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        parts = [f"{record.levelname.lower()} {record.name} {record.getMessage()}"]
        parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in fields.items()]
        out = " ".join(parts)
        if record.exc_info:
            out += "\n" + self.formatException(record.exc_info)
        return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {"ts": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name,
             "event": record.getMessage(), **(getattr(record, "fields", {}) or {})}
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, ensure_ascii=False, default=str)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream current when
    logging was configured (an embedding program, or a test runner, may swap and close it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(level: int = logging.WARNING, json_lines: bool = False) -> None:
    root = logging.getLogger(_ROOT)
    root.setLevel(level)
    handler = _CurrentStderrHandler()
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root.handlers[:] = [handler]
    root.propagate = False
