#!/usr/bin/env python3
"""Scale soak: a million no-ops through ``-w 2``, Redis memory, a 100,000-member chord.

    .venv/bin/python benchmarks/soak.py                    # 1,000,000 jobs, chord of 100,000
    .venv/bin/python benchmarks/soak.py --n 20000 --chord 5000 --result-ttl 5

Starts its own ``redis-server`` (127.0.0.1, free port, no persistence) so memory
figures start from an empty server, and stops it at the end. Steps:

1. enqueue ``--n`` no-ops with ``kiq_many`` in batches of ``--batch``: time, and
   Redis bytes per queued job (``used_memory`` delta ÷ N: stream entry + record);
2. spawn ``aioq worker -w 2 -c 100``: time from spawn until the stream is empty
   (every result written), Redis' own ``used_memory_peak``;
3. with the worker idle, wait until every job record expired (``result_ttl``
   after its job ended): how long, ``used_memory`` against the empty-server
   baseline, and bytes per stored result (the memory the expiry gave back ÷ the
   records counted when the drain ended);
4. on the same worker, a chord of ``--chord`` ``add`` members and a ``tsum``
   callback: time for ``kiq()`` to return, and until the callback's result arrived.

Prints a summary and writes everything as JSON (``--out``). No figure is asserted:
``tests/integration/test_bench_smoke.py`` runs it at tiny N for completeness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def memory(redis: Any) -> dict[str, int]:
    """INFO memory's totals, MEMORY STATS' split (data, client buffers, script
    caches) and the key count."""
    info = redis.info("memory")
    stats = redis.memory_stats()
    return {
        "used_memory": int(info["used_memory"]),
        "used_memory_peak": int(info["used_memory_peak"]),
        "used_memory_rss": int(info["used_memory_rss"]),
        "dataset": int(stats["dataset.bytes"]),
        "clients": int(stats["clients.normal"]),
        "scripts": int(stats.get("lua.caches", 0)),
        "keys": int(redis.dbsize()),
    }


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, tmp: Path, tasks: Any) -> None:
        import redis

        self.t = tasks
        self.args = args
        self.url = url
        self.tmp = tmp
        self.sync = redis.Redis.from_url(url)
        self.out: dict[str, Any] = {}

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def worker(self) -> Any:
        from benchmarks.run import Worker

        cmd = [
            *(sys.executable, "-m", "aioq", "worker", "benchmarks.soak_app:app"),
            *("-w", str(self.args.workers), "-c", "100", "--log-level", "warning"),
        ]
        env = {
            **os.environ,
            "SOAK_REDIS_URL": self.url,
            "SOAK_RESULT_TTL": str(self.args.result_ttl),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
            ),
        }
        return Worker(cmd, env, self.tmp / "worker.log").start()

    async def enqueue(self) -> None:
        n, batch = self.args.n, self.args.batch
        base = memory(self.sync)
        self.info_base = self.sync.info("memory")
        self.out["baseline"] = base
        self.log(f"enqueue {n:,} in batches of {batch:,}")
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            k = min(batch, n - sent)
            # the Job handles are dropped: the stream is the oracle
            await self.t.noop.kiq_many([()] * k)
            sent += k
        seconds = time.perf_counter() - t0
        after = memory(self.sync)
        self.out["enqueued"] = after
        self.out["enqueue_s"] = seconds
        self.out["enqueue_per_s"] = n / seconds
        self.out["bytes_per_queued_job"] = (after["used_memory"] - base["used_memory"]) / n
        self.log(
            f"  {seconds:.2f} s ({n / seconds:,.0f}/s), "
            f"{self.out['bytes_per_queued_job']:.0f} B per queued job, {after['keys']:,} keys"
        )

    def drain(self, w: Any) -> None:
        """Wait until the stream is empty: the worker writes each result before it
        acknowledges and deletes the entry."""
        n = self.args.n
        first = 0.0
        while True:
            left = int(self.sync.xlen(self.t.STREAM))
            now = time.monotonic()
            if left < n and not first:
                first = now
            if left == 0:
                break
            w.check_alive()
            if now - w.started > self.args.timeout:
                raise TimeoutError(f"{left:,} of {n:,} jobs left after {self.args.timeout} s")
            time.sleep(0.05)
        after = memory(self.sync)
        seconds = now - w.started
        # DBSIZE also counts the stream and the worker's registry: count the records
        match = f"{self.t.PREFIX}:job:*"
        records = sum(1 for _ in self.sync.scan_iter(match=match, count=10_000))
        self.out.update(
            drained=after,
            drain_s=seconds,
            drain_per_s=n / seconds,
            drain_first_result_s=first - w.started,
            records_after_drain=records,
            worker_peak_rss_mb=w.peak_rss_kb / 1024,
            peak_used_memory=after["used_memory_peak"],
        )
        self.log(
            f"drain -w {self.args.workers}: {seconds:.2f} s from spawn ({n / seconds:,.0f}/s), "
            f"Redis used_memory_peak {after['used_memory_peak'] / 2**20:.1f} MB"
        )

    def expire(self) -> None:
        """Wait until every job record has expired (``result_ttl`` after its job
        ended); bytes per stored result = the memory that expiry gave back ÷ the
        records it removed."""
        base, drained = self.out["baseline"], self.out["drained"]
        t0 = time.monotonic()
        deadline = t0 + self.args.result_ttl + self.args.timeout
        while True:
            now = memory(self.sync)
            if now["keys"] < 1000 and not list(self.sync.scan_iter(match=f"{self.t.PREFIX}:job:*")):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{now['keys']:,} keys left after {deadline - t0:.0f} s")
            time.sleep(0.2 if self.args.result_ttl < 5 else 1.0)
        seconds = time.monotonic() - t0
        now = memory(self.sync)  # after SCAN reclaimed the last expired keys (DBSIZE counts them)
        records = self.out["records_after_drain"]
        left = {
            k.decode(): int(self.sync.memory_usage(k) or 0)
            for k in sorted(self.sync.scan_iter(count=1000))
        }
        self.out["info_memory_baseline"] = self.info_base
        self.out["info_memory_expired"] = self.sync.info("memory")
        self.out.update(
            expired=now,
            expired_after_s=seconds,
            bytes_per_stored_result=(drained["used_memory"] - now["used_memory"]) / max(records, 1),
            memory_left_bytes=now["used_memory"] - base["used_memory"],
            dataset_left_bytes=now["dataset"] - base["dataset"],
            keys_left=left,
        )
        self.log(
            f"{records:,} records, {self.out['bytes_per_stored_result']:.0f} B each, expired "
            f"{seconds:.1f} s after the drain (result_ttl {self.args.result_ttl:g} s): "
            f"used_memory {now['used_memory'] / 2**20:.2f} MB vs {base['used_memory'] / 2**20:.2f}"
            f" MB before the first job (dataset {self.out['dataset_left_bytes']:+,} B); "
            f"keys left: {left}"
        )

    async def chord(self) -> None:
        m = self.args.chord
        t0 = time.perf_counter()
        job = await self.t.aioq.chord((self.t.add.s(i, 0) for i in range(m)), self.t.tsum.s()).kiq()
        t1 = time.perf_counter()
        total = await job.result(timeout=self.args.timeout)
        t2 = time.perf_counter()
        if total != sum(range(m)):
            raise AssertionError(f"chord callback returned {total}, expected {sum(range(m))}")
        self.out.update(chord_n=m, chord_enqueue_s=t1 - t0, chord_done_s=t2 - t0)
        self.log(f"chord of {m:,}: kiq() {t1 - t0:.2f} s, callback result {t2 - t0:.2f} s")


async def run(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    from benchmarks import soak_app  # imported once the environment names the private Redis

    soak = Soak(args, url, tmp, soak_app)
    try:
        await soak_app.app.ping()  # the client's connection counts in the baseline
        await soak.enqueue()
        w = soak.worker()  # one worker: drain, expiry (idle), chord
        try:
            soak.drain(w)
            soak.expire()
            if args.chord:
                await soak.chord()
            w.check_alive()
        finally:
            w.kill()  # nothing is measured after: no need to wait for a graceful stop
    finally:
        await soak.t.app.aclose()
        soak.sync.close()
    return soak.out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import Redis, compile_checkout, machine, private_tmp

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="no-op jobs to enqueue and drain")
    ap.add_argument("--batch", type=int, default=10_000, help="calls per kiq_many")
    ap.add_argument("--chord", type=int, default=100_000, help="chord members (0: no chord)")
    ap.add_argument("--workers", type=int, default=2, help="aioq worker -w")
    ap.add_argument(
        "--result-ttl", type=float, default=60.0, help="the app's result_ttl, s (records expire)"
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="per phase, s")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    compile_checkout(sys.executable)
    redis = Redis(None, "soak")
    os.environ.update(SOAK_REDIS_URL=redis.url, SOAK_RESULT_TTL=str(args.result_ttl))
    try:
        with private_tmp() as tmp:
            out = asyncio.run(run(args, redis.url, tmp))
    finally:
        redis.stop()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {**machine(), "redis": redis.version},
        "aioq_commit": commit,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "params": vars(args),
        **out,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
