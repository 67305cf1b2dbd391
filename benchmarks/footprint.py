#!/usr/bin/env python3
"""Worker memory and start-up time, aioq next to every peer. See benchmarks/README.md.

    .venv/bin/python benchmarks/footprint.py                        # all systems, 5 reps
    .venv/bin/python benchmarks/footprint.py --systems aioq,arq --reps 3 --n 5000

Uses ``run.py``'s harness (private Redis, one venv per peer, the adapters in
``benchmarks/systems/``), interleaving the systems in every repetition:

* **start-up**: one no-op is enqueued, then the worker process is spawned; the time
  from the spawn until its result is visible (the driver polls every 10 ms), with
  ``-c 100``. What autoscaling from zero waits for: interpreter, imports, connecting,
  the framework's own start-up work, one task.
* **RSS idle**: the summed ``VmRSS`` of the worker's process tree 1 s after it ran
  one task, with nothing else to do;
* **RSS after a drain**: the same worker then drains ``--n`` pre-enqueued no-ops;
  RSS 0.5 s after the last result, and the tree's peak during the drain.

aioq runs in ``benchmarks/.venvs/aioq-core`` (its core dependencies only, built on
first use) unless ``--aioq-venv project``: in the project's venv, with the dev
extras, redis-py 8 also imports the OpenTelemetry SDK (about 2 MB). Also, for scale:
a bare ``python -c pass`` and ``python -c "import aioq"`` (start time and RSS) in
aioq's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import run  # noqa: E402
from benchmarks.systems import SYSTEMS, load  # noqa: E402

CORE = ["redis[hiredis]", "anyio", "msgspec", "cronsim"]
"""aioq's own dependencies (pyproject's ``dependencies``; ``venv_python`` adds
uvloop): the checkout itself is imported from PYTHONPATH."""

METRICS = [
    ("startup_s", "start-up: spawn -> first result, s", False),
    ("rss_idle_mb", "worker RSS idle (after 1 task), MB", False),
    ("rss_drained_mb", "worker RSS after draining N, MB", False),
    ("rss_peak_mb", "worker peak RSS during the drain, MB", False),
]


def tree_rss_kb(pid: int) -> int:
    return sum(run.status_kb(p, "VmRSS") for p in run.descendants(pid))


def startup(h: run.Harness, system: str) -> float:
    holder: dict[str, Any] = {}

    def spawn(_: dict[str, Any]) -> None:
        holder["w"] = h.worker(system, 1, 100).start()

    try:
        r = h.driver(system, {"scenario": "drain", "n": 1}, spawn, timeout=120)
    finally:
        if "w" in holder:
            holder["w"].stop()
    return float(r["first_done"] - holder["w"].started)


def memory(h: run.Harness, system: str, n: int) -> dict[str, float]:
    w = h.worker(system, 1, 100).start()
    got: dict[str, float] = {}
    try:
        # one job first (the raw loop has no result API for a warm-up round trip)
        h.driver(system, {"scenario": "drain", "n": 1}, lambda _: None)
        time.sleep(1.0)
        got["rss_idle_mb"] = tree_rss_kb(w.proc.pid) / 1024
        w.peak_rss_kb = 0  # the peak of the drain from here
        h.driver(system, {"scenario": "drain", "n": n}, lambda _: None)
        time.sleep(0.5)
        got["rss_drained_mb"] = tree_rss_kb(w.proc.pid) / 1024
        got["rss_peak_mb"] = max(w.peak_rss_kb / 1024, got["rss_drained_mb"])
        w.check_alive()
    finally:
        w.stop()
    return got


def bare_python(python: str, reps: int) -> dict[str, float]:
    """Start time and RSS of the interpreter alone, and after importing aioq."""
    out: dict[str, float] = {}
    for key, code in (("python", "pass"), ("import_aioq", "import aioq")):
        times, rss = [], []
        for _ in range(reps):
            t = time.monotonic()
            proc = subprocess.run(
                [
                    python,
                    "-c",
                    # VmRSS, not ru_maxrss: that one keeps the forking parent's peak
                    f"{code}\nprint(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])",
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            times.append(time.monotonic() - t)
            rss.append(int(proc.stdout) / 1024)
        out[f"{key}_s"] = statistics.median(times)
        out[f"{key}_rss_mb"] = statistics.median(rss)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=20_000, help="no-ops drained for RSS after a drain")
    ap.add_argument(
        "--aioq-venv",
        choices=["core", "project"],
        default="core",
        help="core: aioq's own dependencies only (benchmarks/.venvs/aioq-core, what "
        "`pip install aioq` gives); project: the project's venv with every dev extra",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "footprint.json"))
    args = ap.parse_args(argv)
    systems = args.systems.split(",")
    load_before = os.getloadavg()
    redis = run.Redis(None, f"bench-{uuid.uuid4().hex[:8]}")
    raw: dict[str, dict[str, list[float]]] = {s: {} for s in systems}
    errors: list[str] = []
    with run.private_tmp() as tmp:
        h = run.Harness(argparse.Namespace(smoke=False, set=[]), redis, tmp)
        try:
            for s in systems:
                h.pythons[s] = run.venv_python(s, load(s).PACKAGES, h.log)
            if args.aioq_venv == "core" and "aioq" in systems:
                h.pythons["aioq"] = run.venv_python("aioq-core", CORE, h.log)
            run.compile_checkout(h.pythons.get("aioq", sys.executable))
            for rep in range(args.reps):
                for s in systems:
                    h.log(f"rep {rep + 1}/{args.reps} {s}")
                    try:
                        redis.clean()
                        got = {"startup_s": startup(h, s)}
                        redis.clean()
                        got.update(memory(h, s, args.n))
                    except Exception as exc:  # a peer failing must not end the run
                        errors.append(f"rep {rep + 1} {s}: {exc}")
                        h.log(f"FAILED {s}: {str(exc)[-600:]}")
                        continue
                    h.log("  " + ", ".join(f"{k}={run.fmt(v)}" for k, v in got.items()))
                    for k, v in got.items():
                        raw[s].setdefault(k, []).append(v)
        finally:
            redis.stop()
    bare = bare_python(h.pythons.get("aioq", sys.executable), args.reps)
    medians = {s: {k: statistics.median(v) for k, v in m.items()} for s, m in raw.items()}
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {**run.machine(), "redis": redis.version},
        "aioq_commit": run.git_head(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "params": vars(args),
        "bare_python": bare,
        "medians": medians,
        "runs": raw,
        "errors": errors,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"medians of {args.reps} repetition(s); ratio columns are aioq value / peer value\n")
    print(run.table(medians, systems, METRICS))
    peers = [s for s in systems if s not in ("aioq", "raw") and "rss_idle_mb" in medians[s]]
    if "aioq" in medians and peers:
        for key in ("rss_idle_mb", "rss_drained_mb", "startup_s"):
            best = min(peers, key=lambda s: medians[s][key])
            a, b = medians["aioq"].get(key), medians[best][key]
            if a is not None:
                print(f"{key}: aioq {a:.3g} vs the leanest peer {best} {b:.3g} ({a / b:.2f}x)")
    print("\n" + ", ".join(f"{k}={v:.3g}" for k, v in bare.items()))
    if errors:
        print("\nerrors:\n  " + "\n  ".join(e[:300] for e in errors))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
