#!/usr/bin/env python3
"""Where an aioq worker's start-up time goes: spawn → imports → ready → first task.

    .venv/bin/python benchmarks/startup_phases.py [--reps 7] [--python PY]

On a private redis-server: one job is enqueued, then ``PY -m aioq worker
benchmarks.startup_phases:app -c 100 --log-level info`` is spawned. Times are
``time.monotonic()`` (shared by every process): the app module notes when its
import finished (``import aioq`` and the CLI included), the worker's "consuming
queue" log line marks the end of the start-up checks (connect, server check,
script load, consumer group), the task notes when it ran, and the parent sees its
result. Prints the median of each phase, then ``-X importtime``'s self times
summed per top-level package (the imports' own split).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
IMPORTED = time.monotonic()  # for the worker: aioq and the CLI are imported before us

import aioq  # noqa: E402

app = aioq.App(os.environ.get("STARTUP_REDIS_URL"), prefix="startup")


@app.task(name="startup.stamp")
async def stamp() -> dict[str, float]:
    return {"imported": IMPORTED, "ran": time.monotonic()}


def once(python: str, url: str) -> dict[str, float]:
    # this module under its package name, so its app reads STARTUP_REDIS_URL (main sets it)
    from benchmarks import startup_phases as mod

    async def send() -> aioq.Job[dict[str, float]]:
        return await mod.stamp.kiq()

    async def wait(job: aioq.Job[dict[str, float]]) -> dict[str, float]:
        return await job.result(timeout=60)

    loop = asyncio.new_event_loop()
    try:
        job = loop.run_until_complete(send())
        env = {**os.environ, "STARTUP_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
        cmd = [python, "-m", "aioq", "worker", "benchmarks.startup_phases:app", "-c", "100"]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [*cmd, "--log-level", "info"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        ready: list[float] = []

        def watch() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "consuming queue" in line and not ready:
                    ready.append(time.monotonic())

        threading.Thread(target=watch, daemon=True).start()
        got = loop.run_until_complete(wait(job))
        t1 = time.monotonic()
        proc.terminate()
        proc.wait(30)
    finally:
        loop.run_until_complete(mod.app.aclose())
        loop.close()
    return {
        "imports_s": got["imported"] - t0,
        "checks_s": ready[0] - got["imported"] if ready else float("nan"),
        "to_first_task_s": got["ran"] - (ready[0] if ready else got["imported"]),
        "result_seen_s": t1 - got["ran"],
        "total_s": t1 - t0,
    }


def import_costs(python: str, reps: int) -> dict[str, float]:
    """``-X importtime`` of the worker's imports (``aioq.cli`` and this module),
    self time summed per top-level package, median over ``reps`` runs, in s."""
    code = "import aioq.cli, aioq._workercli, benchmarks.startup_phases"
    runs: list[dict[str, float]] = []
    for _ in range(reps):
        err = subprocess.run(
            [python, "-X", "importtime", "-c", code],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        per: dict[str, float] = {}
        for line in err.splitlines()[1:]:
            if not line.startswith("import time:"):
                continue
            self_us, _, name = line.removeprefix("import time:").split("|")
            top = name.strip().split(".")[0]
            per[top] = per.get(top, 0.0) + int(self_us) / 1e6
        runs.append(per)
    tops = {k for r in runs for k in r}
    costs = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in tops}
    return dict(sorted(costs.items(), key=lambda kv: -kv[1]))


def main() -> int:
    from benchmarks.run import Redis, compile_checkout

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--python", default=sys.executable, help="the worker's interpreter")
    args = ap.parse_args()
    compile_checkout(args.python)
    redis = Redis(None, "startup")
    os.environ["STARTUP_REDIS_URL"] = redis.url
    try:
        runs = [once(args.python, redis.url) for _ in range(args.reps)]
    finally:
        redis.stop()
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    imports = import_costs(args.python, args.reps)
    report = {"python": args.python, "loadavg": os.getloadavg(), "medians": medians}
    print(json.dumps(report | {"imports": dict(list(imports.items())[:15])}))
    for k, v in medians.items():
        print(f"{k:18s} {1000 * v:7.1f} ms")
    total = sum(imports.values())
    print(f"\nimports (-X importtime, self time per top-level package), {1000 * total:.0f} ms:")
    for k, v in list(imports.items())[:15]:
        print(f"  {k:22s} {1000 * v:6.1f} ms  {100 * v / total:4.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
