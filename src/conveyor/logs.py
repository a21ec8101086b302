"""Structured logging: one JSON object per line, carrying pipeline and run ids.

`bind(pipeline=..., run=...)` sets context for the current task (contextvars), so
every log line emitted while handling that pipeline/run carries the ids.

The text format (CONVEYOR_LOG_FORMAT=text) carries the same fields: time, level, service and
logger lead the line, then the message, then every bound and `extra=` field as `key=value`
(logfmt: a value with spaces, quotes, `=` or control characters is double-quoted with JSON
escapes), then the traceback on the lines that follow.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("conveyor_log_context", default={})  # noqa: B039

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Attach fields (e.g. pipeline, run) to every record logged inside the block.

    `run` is always logged as the run's full resource name (`pipelines/{p}/runs/{r}`), whichever
    service logs it, so one query finds a run's lines everywhere; a bare run id is expanded with
    the bound pipeline.
    """
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v}}
    run, pipeline = merged.get("run"), merged.get("pipeline")
    if run and pipeline and not run.startswith("pipelines/"):
        merged["run"] = f"pipelines/{pipeline}/runs/{run}"
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


Plain = str | int | float | bool | None


def _fields(record: logging.LogRecord) -> dict[str, Plain]:
    """The bound context and the record's `extra=` fields; both formats carry exactly these."""
    fields: dict[str, Plain] = dict(_context.get())
    for key, value in vars(record).items():
        if key not in _RESERVED and not key.startswith("_"):
            fields[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
    return fields


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def logfmt_value(value: Plain) -> str:
    """A value as logfmt writes it: bare when unambiguous, else a JSON string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value and not any(c.isspace() or c in '"=\\' or not c.isprintable() for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())
        # The traceback follows the fields, so they stay on the line that names the event.
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def configure(service: str, level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries are chatty at INFO/DEBUG; their warnings still show.
    for noisy in ("kubernetes", "urllib3", "aiohttp.access", "alembic", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
