"""What a worker process imports (issue 14, worker memory): ``import aioq``, the
CLI's modules and a ``Worker`` built for an app without schedules, metrics or
probes leave the optional parts unloaded. Module presence in ``sys.modules`` of
a fresh interpreter, not a byte count: what each part weighs is measured by
``benchmarks/footprint.py`` (benchmarks/README.md, "Scale and memory").

redis-py's own cluster and Sentinel modules are not checked: ``import redis``
imports both (redis/__init__.py), whatever aioq does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

NOT_FOR_A_PLAIN_WORKER = [
    "aioq.dashboard",  # aioq dashboard
    "aioq.contrib.otel",
    "aioq.contrib.django",
    "aioq._worker.scheduler",  # --scheduler, aioq.Scheduler, app.schedules.*
    "aioq._worker.metrics",  # --metrics-port
    "aioq._worker.httpd",  # --health-port / --metrics-port
    "aioq._worker.supervisor",  # -w N
    "aioq._transport.inspect",  # status, jobs, purge: the read model
    "aioq._transport.deadletters",  # aioq dead …
    "cronsim",  # a cron= schedule
    "zoneinfo",  # a schedule's tz=
    "prometheus_client",
]

WORKER = """
import json, sys
import aioq, aioq.cli, aioq._workercli
app = aioq.App("redis://127.0.0.1:1/0")
@app.task
async def noop() -> None: ...
worker = aioq.Worker(app, concurrency=100)
print(json.dumps(sorted(sys.modules)))
"""


CLI_WORKER = """
import json, sys, types
import aioq, aioq.cli, aioq._workercli
module = types.ModuleType("lean_app")
module.app = app = aioq.App("redis://127.0.0.1:1/0")
@app.task
async def noop() -> None: ...
sys.modules["lean_app"] = module
args = aioq.cli._parser().parse_args(["worker", "lean_app:app", "-c", "100"])
worker = aioq._workercli.build_worker(args)
print(json.dumps(sorted(sys.modules)))
"""
"""What ``aioq worker lean_app:app`` builds, through the command line's own path."""


def last_json(code: str, *argv: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter; the JSON its last line prints."""
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    return json.loads(out.stdout.splitlines()[-1])


def imported(code: str) -> set[str]:
    return set(last_json(code))


def test_a_plain_worker_leaves_the_optional_parts_unloaded() -> None:
    loaded = imported(WORKER)
    assert "aioq._worker.worker" in loaded  # it did get that far
    assert sorted(m for m in NOT_FOR_A_PLAIN_WORKER if m in loaded) == []


def test_a_worker_built_by_the_command_line_leaves_them_unloaded() -> None:
    loaded = imported(CLI_WORKER)
    assert "aioq._worker.worker" in loaded
    assert sorted(m for m in NOT_FOR_A_PLAIN_WORKER if m in loaded) == []


def test_import_aioq_alone_leaves_them_unloaded() -> None:
    loaded = imported("import json, sys, aioq; print(json.dumps(sorted(sys.modules)))")
    assert sorted(m for m in NOT_FOR_A_PLAIN_WORKER if m in loaded) == []


def test_a_schedule_loads_what_it_needs() -> None:
    code = WORKER.replace(
        "worker = ",
        "app.schedule(noop.s(), cron='*/5 * * * *', tz='Asia/Seoul')\n"
        "assert aioq.Scheduler.__name__ == 'Scheduler'\nworker = ",
    )
    loaded = imported(code)
    assert {"cronsim", "zoneinfo", "aioq._worker.scheduler"} <= loaded


LOOP = """
import asyncio, json, os, sys
import aioq.cli, aioq._workercli
args = aioq.cli._parser().parse_args(["worker", "lean_app:app", *sys.argv[1:]])
args = aioq._workercli._worker_options(args)
seen = {}
async def main() -> None:
    seen["loop"] = type(asyncio.get_running_loop()).__module__
aioq._workercli._serve(main, args.loop)
print(json.dumps({"option": args.loop, "loop": seen["loop"], "uvloop": "uvloop" in sys.modules}))
"""
"""``aioq worker --loop``: which event loop ``_serve`` runs, and whether uvloop got imported."""


def served(*flags: str, env: dict[str, str] | None = None) -> dict[str, object]:
    got: dict[str, object] = last_json(LOOP, *flags, env=env)
    return got


def test_loop_asyncio_leaves_uvloop_unloaded() -> None:
    """About 2 MB of RSS (uvloop's module, its pages touched when running, its
    loop's buffer), for 4-18 % more worker CPU per task (benchmarks/README.md,
    "Worker memory, 2026-11-29 evening")."""
    got = served("--loop", "asyncio")
    assert got == {"option": "asyncio", "loop": "asyncio.unix_events", "uvloop": False}
    assert served(env={"AIOQ_LOOP": "asyncio"})["uvloop"] is False


def test_the_default_loop_is_uvloop_when_installed() -> None:
    import importlib.util

    got = served()
    assert got["option"] == "auto"
    if importlib.util.find_spec("uvloop") is not None:
        assert got["loop"] == "uvloop" and got["uvloop"] is True
        assert served("--loop", "uvloop")["loop"] == "uvloop"


BAD_LOOP = """
import json
import aioq.cli
from aioq._workercli import CliError, _worker_options
try:
    _worker_options(aioq.cli._parser().parse_args(["worker", "lean_app:app"]))
except CliError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_a_bad_aioq_loop_is_refused_in_one_line() -> None:
    assert last_json(BAD_LOOP, env={"AIOQ_LOOP": "trio"}) == {
        "error": "--loop must be one of auto, uvloop, asyncio, got 'trio'"
    }
