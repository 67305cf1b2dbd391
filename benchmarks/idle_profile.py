"""Where an idle worker's Redis CPU goes, per command and per script.

    python scripts/with_redis.py -- .venv/bin/python benchmarks/idle_profile.py \
        [--queues 10000] [--settle 20] [--window 60] [--slowlog 30] [--vt 5]

Starts ``aioq worker benchmarks.systems.aioq_:app`` on queues q0..q(N-1) (as
scenario M of ``run.py`` does, visibility timeout ``--vt``) against the Redis of
``AIOQ_REDIS_URL``, lets start-up settle, then:

1. ``CONFIG RESETSTAT``, ``--window`` seconds, then the Redis CPU (INFO
   ``used_cpu_user + used_cpu_sys``, % of a core), the worker's CPU, and per
   command of ``INFO commandstats`` its calls/s, µs/s and µs/call (a script's
   inner commands are counted under their own names *and* inside ``evalsha``);
2. a second window of ``--slowlog`` seconds with ``slowlog-log-slower-than 0``:
   every command's duration, ``EVALSHA`` split by script (the SHA named through
   aioq's script registry). Slowlog times are the command's execution only, as
   commandstats' are; the protocol work around them is in ``used_cpu`` only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def cpu_of(pid: int) -> float:
    """user + sys seconds of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def script_names() -> dict[str, str]:
    from aioq._transport.scripts import Scripts

    scripts = Scripts()
    return {s.sha: s.name for s in scripts._by_name.values()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queues", type=int, default=10_000)
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--slowlog", type=float, default=30.0)
    ap.add_argument("--vt", type=float, default=5.0)
    ap.add_argument("--timeline", type=float, default=0.0, help="Redis CPU every N s of settle")
    args = ap.parse_args()
    url = os.environ["AIOQ_REDIS_URL"]
    r = redis.Redis.from_url(url)
    r.flushdb()
    env = dict(os.environ)
    env.update(
        BENCH_REDIS_URL=url,
        BENCH_PREFIX="bench",
        BENCH_VT=str(args.vt),
        BENCH_QUEUES=str(args.queues),
        AIOQ_QUEUES=",".join(f"q{i}" for i in range(args.queues)),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    cmd = [sys.executable, "-m", "aioq", "worker", "benchmarks.systems.aioq_:app"]
    cmd += ["-c", "100", "--log-level", "warning"]
    worker = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        if args.timeline:
            start, t, c = time.monotonic(), time.monotonic(), redis_cpu(r)
            while time.monotonic() - start < args.settle:
                time.sleep(args.timeline)
                t2, c2 = time.monotonic(), redis_cpu(r)
                print(f"t={t2 - start:5.1f} s: Redis {100 * (c2 - c) / (t2 - t):6.2f} % of a core")
                t, c = t2, c2
        else:
            time.sleep(args.settle)
        if worker.poll() is not None:
            raise SystemExit(f"worker exited {worker.returncode}")
        r.config_resetstat()
        t0, c0, w0 = time.monotonic(), redis_cpu(r), cpu_of(worker.pid)
        time.sleep(args.window)
        t1, c1, w1 = time.monotonic(), redis_cpu(r), cpu_of(worker.pid)
        stats = r.info("commandstats")
        took = t1 - t0
        print(
            f"{args.queues} queues, VT {args.vt:g} s, {took:.1f} s window: "
            f"Redis {100 * (c1 - c0) / took:.2f} % of a core, "
            f"worker {100 * (w1 - w0) / took:.2f} %"
        )
        print("| command | calls/s | µs/s | µs/call |")
        print("| --- | ---: | ---: | ---: |")
        rows = [
            (name.removeprefix("cmdstat_"), int(v["calls"]), int(v["usec"]))
            for name, v in stats.items()
        ]
        for name, calls, usec in sorted(rows, key=lambda row: -row[2]):
            if name in ("info", "config"):
                continue
            print(f"| {name} | {calls / took:.2f} | {usec / took:.1f} | {usec / calls:.1f} |")
        if args.slowlog > 0:
            names = script_names()
            r.config_set("slowlog-max-len", 1_000_000)
            r.slowlog_reset()
            r.config_set("slowlog-log-slower-than", 0)
            s0 = time.monotonic()
            time.sleep(args.slowlog)
            r.config_set("slowlog-log-slower-than", 10_000)
            s1 = time.monotonic()
            log = r.slowlog_get(1_000_000)
            by: dict[str, list[int]] = {}
            for entry in log:
                argv = entry["command"].split()
                what = argv[0].decode().lower() if argv else "?"
                if what == "evalsha" and len(argv) > 2:
                    nkeys = argv[2].decode()
                    what = f"evalsha {names.get(argv[1].decode(), argv[1].decode()[:8])}"
                    what += f" ({nkeys} keys)" if int(nkeys) > 16 else ""
                if what == "exists" and len(argv) > 2:
                    what = "exists (multi-key)"
                if what in ("config", "slowlog"):
                    continue
                by.setdefault(what, []).append(int(entry["duration"]))
            span = s1 - s0
            print(f"\nslowlog, {span:.1f} s: per command / script (EVALSHA by script)")
            print("| command | calls/s | µs/s | µs/call |")
            print("| --- | ---: | ---: | ---: |")
            for what, us in sorted(by.items(), key=lambda kv: -sum(kv[1])):
                print(
                    f"| {what} | {len(us) / span:.2f} | {sum(us) / span:.1f} | "
                    f"{sum(us) / len(us):.1f} |"
                )
    finally:
        worker.terminate()
        worker.wait(30)


if __name__ == "__main__":
    main()
