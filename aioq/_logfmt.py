"""Log set-up for the command line: the text format, and ``--log-format json``
(one JSON object per line; lines logged inside a task carry its ``job_id``,
``task``, ``queue`` and ``attempt``). Standard library logging only."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from ._core.context import CURRENT_JOB

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s"


class JobFields(logging.Filter):
    """Copies the running job (a context variable the worker sets in each
    executor, and that threads of sync tasks inherit) onto each record, at the
    moment it is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = CURRENT_JOB.get()
        if job is not None:
            record.job_id = job.job_id
            record.task = job.task
            record.queue = job.queue
            record.attempt = job.attempt
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "pid", "message", [job_id, task, queue, attempt],
    [exc]}``, one per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in ("job_id", "task", "queue", "attempt"):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger once, for a command's process."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.addFilter(JobFields())
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
