#!/usr/bin/env python3
"""Benchmark aioq against its peers on one private Redis. See benchmarks/README.md.

    .venv/bin/python benchmarks/run.py                  # everything, 3 repetitions
    .venv/bin/python benchmarks/run.py --smoke          # aioq only, tiny N, < 30 s
    .venv/bin/python benchmarks/run.py --systems aioq,taskiq --reps 1

Each peer gets its own virtualenv under benchmarks/.venvs/<name>; its client side
runs as ``benchmarks/driver.py`` with that venv's python, its workers with the
commands its adapter (benchmarks/systems/<name>_.py) gives. Systems are
interleaved within each scenario and repetition, so drift hits all alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
VENVS = BENCH / ".venvs"
sys.path.insert(0, str(ROOT))

from benchmarks import chart  # noqa: E402
from benchmarks.systems import SYSTEMS, load  # noqa: E402

FULL = {
    "A_n": 20_000,
    "B_n": 20_000,
    "B_c": 100,
    # a drain's deadline (s): peers drained B_io at ~150/s on the loaded 2-core
    # machine, over the driver's old fixed 120 s (a stall still ends it after 20 s)
    "B_timeout": 600,
    "C_n": 5_000,
    "C_c": 500,
    "C_sleep": 0.05,
    "D_n": 500,
    "F_n": 100,
    "F_sleep": 1.0,
    "F_vt": 5.0,
    "M_queues": 1000,
    "M_n": 20_000,
    "M_rt_n": 300,
    "M_idle_queues": 10_000,
    "M_idle_window": 10.0,
}
SMOKE = {
    "A_n": 300,
    # 2,000, not 300: worker CPU is counted in 10 ms clock ticks, and 300 no-ops
    # drained within one tick often enough to make B_w1_worker_us 0 (a flaky smoke test)
    "B_n": 2000,
    "B_c": 100,
    "B_timeout": 120,
    "C_n": 200,
    "C_c": 100,
    "C_sleep": 0.05,
    "D_n": 20,
    "F_n": 10,
    "F_sleep": 0.5,
    "F_vt": 1.0,
    "M_queues": 20,
    "M_n": 200,
    "M_rt_n": 10,
    "M_idle_queues": 50,
    "M_idle_window": 0.5,
}
# Per-system overrides of N for slow peers (recorded in the JSON and the README).
SLOW: dict[str, dict[str, int]] = {}


# --------------------------------------------------------------------------- redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A private redis-server (flushed between runs), or a given URL in smoke mode
    (then only keys under our own prefix are ever touched, and deleted after)."""

    def __init__(self, url: str | None, prefix: str) -> None:
        import redis

        self.prefix = prefix
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: str | None = None
        if url is None:
            port = free_port()
            self.dir = tempfile.mkdtemp(prefix="aioq-bench-redis-")
            self.proc = subprocess.Popen(
                [
                    *("redis-server", "--bind", "127.0.0.1", "--port", str(port)),
                    *("--save", "", "--appendonly", "no", "--dir", self.dir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"redis://127.0.0.1:{port}/0"
        self.url = url
        self.client = redis.Redis.from_url(url)
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                if self.client.ping():
                    break
            time.sleep(0.05)
        info = self.client.info("server")
        self.version = str(info["redis_version"])
        self.host = self.client.connection_pool.connection_kwargs.get("host", "127.0.0.1")
        self.port = int(self.client.connection_pool.connection_kwargs.get("port", 6379))

    def cpu(self) -> float:
        """Seconds of CPU the server used so far (INFO ``used_cpu_user`` + ``sys``)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    @property
    def private(self) -> bool:
        return self.proc is not None

    def clean(self) -> None:
        if self.private:
            self.client.flushall()
            return
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            self.client.delete(*keys[i : i + 500])

    def stop(self) -> None:
        self.clean()
        self.client.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
    return out


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU of one process so far (``/proc/PID/stat``), None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def status_kb(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Worker:
    """A system's worker command in its own session; RSS sampled every 50 ms, the
    CPU time of its process tree every 10 ms."""

    cmd: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)
    started: float = field(init=False)
    peak_rss_kb: int = 0
    cpu: list[tuple[float, float]] = field(default_factory=list)
    """(monotonic time, CPU seconds of every process of the tree so far)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _cpu_by_pid: dict[int, float] = field(default_factory=dict)

    def start(self) -> Worker:
        self.started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
            )
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        i = 0
        while not self._stop.wait(0.01):
            pids = descendants(self.proc.pid)
            for p in pids:
                seconds = cpu_seconds(p)
                if seconds is not None:  # a process that ended keeps its last figure
                    self._cpu_by_pid[p] = seconds
            self.cpu.append((time.monotonic(), sum(self._cpu_by_pid.values())))
            i += 1
            if i % 5 == 0:
                rss = sum(status_kb(p, "VmRSS") for p in pids)
                self.peak_rss_kb = max(self.peak_rss_kb, rss)

    def cpu_at(self, t: float) -> float:
        """CPU seconds of the tree at time ``t`` (the last sample before it)."""
        before = [c for at, c in list(self.cpu) if at <= t]
        return before[-1] if before else 0.0

    def hwm_kb(self) -> int:
        return sum(status_kb(p, "VmHWM") for p in descendants(self.proc.pid))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker exited {self.proc.returncode}: {tail}")

    def kill(self) -> None:
        self._stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the session
        self.proc.wait()


# --------------------------------------------------------------------------- venvs


def venv_python(name: str, packages: list[str] | None, log: Callable[[str], None]) -> str:
    """The python that runs ``name``: the project's, or benchmarks/.venvs/<name>."""
    if packages is None:
        return sys.executable
    venv = VENVS / name
    stamp = venv / ".bench-packages.json"
    python = str(venv / "bin" / "python")
    if stamp.exists() and json.loads(stamp.read_text()) == packages:
        return python
    log(f"creating {venv} with {' '.join(packages)}")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *packages, "redis", "uvloop"], check=True)
    stamp.write_text(json.dumps(packages))
    return python


def versions(python: str) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return dict(sorted(json.loads(out.stdout).items()))


def compile_checkout(python: str) -> None:
    """Byte-compile aioq and benchmarks/ in place. Peers' packages are compiled by
    pip; the checkout is not when PYTHONDONTWRITEBYTECODE is set (as for every
    worker here), and each aioq worker start would compile aioq's modules (~0.1 s
    on this machine)."""
    cmd = [python, "-m", "compileall", "-q", "-x", r"\.venvs", "aioq", "benchmarks"]
    subprocess.run(cmd, cwd=ROOT, check=True)


# ------------------------------------------------------------------------ harness


class Harness:
    def __init__(self, args: argparse.Namespace, redis: Redis, tmp: Path) -> None:
        self.args = args
        self.redis = redis
        self.tmp = tmp
        self.p = dict(SMOKE if args.smoke else FULL)
        for item in args.set:
            key, _, value = item.partition("=")
            if key not in self.p:
                raise SystemExit(f"--set: unknown parameter {key!r} (one of {', '.join(self.p)})")
            self.p[key] = type(self.p[key])(float(value))
        self.pythons: dict[str, str] = {}

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def env(self, system: str, concurrency: int = 100, queues: int = 0) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
        if queues:  # scenario M: the worker consumes q0..q(N-1), the client spreads over them
            names = ",".join(f"q{i}" for i in range(queues))
            env.update(BENCH_QUEUES=str(queues), AIOQ_QUEUES=names)
        env.update(
            BENCH_REDIS_URL=self.redis.url,
            BENCH_PREFIX=self.redis.prefix,
            BENCH_VT=str(self.p["F_vt"]),
            BENCH_CONCURRENCY=str(concurrency),
            # this checkout first, then the caller's path (e.g. where an extra is installed)
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def n(self, system: str, key: str) -> int:
        return SLOW.get(system, {}).get(key, self.p[key])

    def worker(self, system: str, workers: int, concurrency: int, queues: int = 0) -> Worker:
        mod = load(system)
        cmd = mod.worker_cmd(self.pythons[system], workers, concurrency)
        log = self.tmp / f"{system}-worker.log"
        return Worker(cmd, self.env(system, concurrency, queues), log)

    def driver(
        self,
        system: str,
        params: dict[str, Any],
        on_phase: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 900.0,
        queues: int = 0,
    ) -> dict[str, Any]:
        cmd = [self.pythons[system], str(BENCH / "driver.py"), system, json.dumps(params)]
        errlog = self.tmp / f"{system}-driver.log"
        with open(errlog, "ab") as err:
            proc = subprocess.Popen(
                cmd,
                env=self.env(system, queues=queues),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert proc.stdout is not None and proc.stdin is not None
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        result: dict[str, Any] | None = None
        try:
            for line in proc.stdout:
                msg = json.loads(line)
                if "phase" in msg:
                    if on_phase is not None:
                        on_phase(msg)
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                elif "result" in msg:
                    result = msg["result"]
                    result["redis_cpu_at_result"] = self.redis.cpu()
        except BaseException:
            proc.kill()  # interrupted: never leave a driver waiting on its stdin
            raise
        finally:
            timer.cancel()
            proc.wait()
        if result is None or proc.returncode != 0:
            tail = errlog.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"driver {system} {params['scenario']} failed: {tail}")
        return result

    # ---------------------------------------------------------------- scenarios

    def a_one(self, system: str) -> dict[str, float]:
        n = self.n(system, "A_n")
        r = self.driver(system, {"scenario": "enqueue_one", "n": n, "concurrency": 32})
        return {"A_one_per_s": n / r["seconds"]}

    def a_batch(self, system: str) -> dict[str, float]:
        if not load(system).BATCH:
            return {}
        n = self.n(system, "A_n")
        r = self.driver(system, {"scenario": "enqueue_batch", "n": n})
        return {"A_batch_per_s": n / r["seconds"]}

    def _drain(
        self, system: str, workers: int, task: str = "noop", queues: int = 0, n: int = 0
    ) -> tuple[dict[str, Any], Worker]:
        n = n or self.n(system, "B_n")
        holder: dict[str, Any] = {}

        def start(_: dict[str, Any]) -> None:
            holder["redis_cpu_enqueued"] = self.redis.cpu()
            holder["w"] = self.worker(system, workers, self.p["B_c"], queues).start()

        try:
            before = self.redis.cpu()
            params = {"scenario": "drain", "n": n, "task": task, "timeout": self.p["B_timeout"]}
            r = self.driver(system, params, start, queues=queues)
            w = holder["w"]
            r["hwm_kb"] = w.hwm_kb()
            r["n"] = n
            r["redis_cpu_s"] = r["redis_cpu_at_result"] - before
            r["redis_drain_cpu_s"] = r["redis_cpu_at_result"] - holder["redis_cpu_enqueued"]
            first_left = r.get("first_left", 0) - r.get("stuck", 0)
            if first_left > 0 and r["done"] > r["first_done"]:
                spent = w.cpu_at(r["done"]) - w.cpu_at(r["first_done"])
                r["worker_cpu_per_task_s"] = spent / first_left
            return r, w
        finally:
            if "w" in holder:
                holder["w"].stop()

    def b1(self, system: str) -> dict[str, float]:
        r, w = self._drain(system, 1)
        done = r["n"] - r.get("stuck", 0)  # jobs that never finished are left out, and flagged
        # A tiny run (--smoke) can finish within one 10 ms poll of its first result.
        steady = r["done"] - r["first_done"]
        return {
            "B_w1_per_s": done / (r["done"] - w.started),
            "B_w1_first_result_s": r["first_done"] - w.started,
            **({"B_w1_steady_per_s": done / steady} if steady > 0 else {}),
            **self._cpu("B_w1", r),
            "E_peak_rss_mb": w.peak_rss_kb / 1024,
            "E_hwm_mb": r["hwm_kb"] / 1024,
            **({"B_w1_stuck_jobs": r["stuck"]} if r.get("stuck") else {}),
        }

    @staticmethod
    def _cpu(prefix: str, r: dict[str, Any]) -> dict[str, float]:
        """Redis CPU per task (enqueue + drain, and the drain alone) and the worker
        tree's CPU per task after its first result (start-up left out), in µs."""
        out = {
            f"{prefix}_redis_us": 1e6 * r["redis_cpu_s"] / r["n"],
            f"{prefix}_redis_drain_us": 1e6 * r["redis_drain_cpu_s"] / r["n"],
        }
        if "worker_cpu_per_task_s" in r:
            out[f"{prefix}_worker_us"] = 1e6 * r["worker_cpu_per_task_s"]
        return out

    def b_io(self, system: str) -> dict[str, float]:
        """B with a task that does one INCR through its own redis-py client."""
        return self._io(system, "io", "B_io")

    def b_io_shared(self, system: str) -> dict[str, float]:
        """B with a task that does one INCR through a client its worker process
        made at start-up, by the system's own mechanism (aioq ``ctx.state``)."""
        return self._io(system, "io_shared", "B_io_shared")

    def _io(self, system: str, task: str, prefix: str) -> dict[str, float]:
        r, w = self._drain(system, 1, task=task)
        done = r["n"] - r.get("stuck", 0)
        # Every finished task did its INCR (more: a redelivered one ran twice).
        incrs = int(self.redis.client.get(f"{self.redis.prefix}:io") or 0)
        if incrs < done:
            raise RuntimeError(f"{system} {prefix}: {done} jobs finished, {incrs} INCRs")
        return {
            f"{prefix}_per_s": done / (r["done"] - w.started),
            **self._cpu(prefix, r),
            **({f"{prefix}_stuck_jobs": r["stuck"]} if r.get("stuck") else {}),
        }

    def m(self, system: str) -> dict[str, float]:
        """One worker on many queues: drain and round trip on 1 and ``M_queues``
        queues, and the Redis CPU an idle worker costs on 1 and ``M_idle_queues``."""
        if not getattr(load(system), "MANY_QUEUES", False):
            return {}
        out: dict[str, float] = {}
        for q in (1, self.p["M_queues"]):
            r, w = self._drain(system, 1, queues=q, n=self.p["M_n"])
            out[f"M_drain_q{q}_per_s"] = (r["n"] - r.get("stuck", 0)) / (r["done"] - w.started)
            # Start-up apart from the steady state: spawn -> first result, and the
            # rate over the jobs left once the first result was seen.
            out[f"M_drain_q{q}_first_s"] = r["first_done"] - w.started
            left = r.get("first_left", 0) - r.get("stuck", 0)
            if left > 0 and r["done"] > r["first_done"]:
                out[f"M_drain_q{q}_steady_per_s"] = left / (r["done"] - r["first_done"])
            out[f"M_drain_q{q}_redis_us"] = 1e6 * r["redis_drain_cpu_s"] / r["n"]
            if "worker_cpu_per_task_s" in r:
                out[f"M_drain_q{q}_worker_us"] = 1e6 * r["worker_cpu_per_task_s"]
            self.redis.clean()
            out[f"M_rt_q{q}_p50_ms"] = self._roundtrip(system, self.p["M_rt_n"], q)["D_p50_ms"]
            self.redis.clean()
        # The ratio within one repetition (the two drains a minute apart at most):
        # its median over repetitions is steadier than the ratio of the medians.
        q = self.p["M_queues"]
        out[f"M_drain_q{q}_ratio_pct"] = 100 * out[f"M_drain_q{q}_per_s"] / out["M_drain_q1_per_s"]
        for q in (1, self.p["M_idle_queues"]):
            out.update(self._idle(system, q))
            self.redis.clean()
        return out

    def _idle(self, system: str, queues: int) -> dict[str, float]:
        """Redis CPU (% of one core) while a worker on ``queues`` queues has nothing to do."""
        w = self.worker(system, 1, 100, queues).start()
        got: dict[str, float] = {}

        def measure(_: dict[str, Any]) -> None:
            time.sleep(4 * self.p["M_idle_window"] / 10)  # start-up work settles
            t0, c0, w0 = time.monotonic(), self.redis.cpu(), w.cpu_at(time.monotonic())
            time.sleep(self.p["M_idle_window"])
            t1, c1, w1 = time.monotonic(), self.redis.cpu(), w.cpu_at(time.monotonic())
            got[f"M_idle_q{queues}_redis_pct"] = 100 * (c1 - c0) / (t1 - t0)
            got[f"M_idle_q{queues}_worker_pct"] = 100 * (w1 - w0) / (t1 - t0)

        try:
            self.driver(system, {"scenario": "idle", "n": 0}, measure, queues=queues)
            w.check_alive()
        finally:
            w.stop()
        return got

    def b2(self, system: str) -> dict[str, float]:
        if not load(system).MULTIPROC:
            return {}
        r, w = self._drain(system, 2)
        done = r["n"] - r.get("stuck", 0)
        return {
            "B_w2_per_s": done / (r["done"] - w.started),
            **({"B_w2_stuck_jobs": r["stuck"]} if r.get("stuck") else {}),
        }

    def c(self, system: str) -> dict[str, float]:
        if "C" in getattr(load(system), "SKIP", set()):
            return {}
        w = self.worker(system, 1, self.p["C_c"]).start()
        try:
            params = {
                "scenario": "burst",
                "n": self.n(system, "C_n"),
                "task": "sleep",
                "args": [self.p["C_sleep"]],
            }
            r = self.driver(system, params)
            w.check_alive()
        finally:
            w.stop()
        return {
            "C_seconds": r["seconds"],
            "C_enqueue_seconds": r["enqueue_seconds"],
            **({"C_stuck_jobs": r["stuck"]} if r.get("stuck") else {}),
        }

    def d(self, system: str) -> dict[str, float]:
        if "D" in getattr(load(system), "SKIP", set()):
            return {}
        return self._roundtrip(system, self.n(system, "D_n"))

    def _roundtrip(self, system: str, n: int, queues: int = 0) -> dict[str, float]:
        w = self.worker(system, 1, 100, queues).start()
        try:
            r = self.driver(system, {"scenario": "roundtrip", "n": n}, queues=queues)
        finally:
            w.stop()
        lat = sorted(r["latencies"])

        def pct(q: float) -> float:
            return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]

        return {"D_p50_ms": pct(0.50), "D_p95_ms": pct(0.95), "D_p99_ms": pct(0.99)}

    def f(self, system: str) -> dict[str, float]:
        if not load(system).RECOVERY:
            return {}
        first = self.worker(system, 1, 100).start()
        holder: dict[str, Any] = {}

        def kill_and_replace(_: dict[str, Any]) -> None:
            time.sleep(0.3)  # let the first worker start every task
            first.kill()
            holder["killed"] = time.monotonic()
            holder["w"] = self.worker(system, 1, 100).start()

        params = {
            "scenario": "recovery",
            "n": self.p["F_n"],
            "task": "sleep",
            "args": [self.p["F_sleep"]],
        }
        try:
            r = self.driver(system, params, kill_and_replace)
        finally:
            first.stop()
            if "w" in holder:
                holder["w"].stop()
        return {"F_seconds": r["done"] - holder["killed"], "F_visibility_timeout_s": self.p["F_vt"]}

    def redis_benchmark(self) -> dict[str, float]:
        base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.redis.port), "-q"]
        out = {}
        runs = {
            "xadd_P16_per_s": [*base, "-P", "16", "-n", "200000", "XADD", "s", "*", "f", "v"],
            "set_P16_per_s": [*base, "-t", "set", "-P", "16", "-n", "200000"],
            "xadd_P1_per_s": [*base, "-n", "50000", "XADD", "s", "*", "f", "v"],
        }
        for key, cmd in runs.items():
            text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rates = re.findall(r"([\d.]+) requests per second", text)
            out[key] = float(rates[-1])
        return out


SCENARIOS: list[tuple[str, str]] = [
    ("A_one", "a_one"),
    ("A_batch", "a_batch"),
    ("B_w1", "b1"),
    ("B_w2", "b2"),
    ("B_io", "b_io"),
    ("B_io_shared", "b_io_shared"),
    ("C", "c"),
    ("D", "d"),
    ("F", "f"),
    ("M", "m"),
]


# ------------------------------------------------------------------------ report

METRICS = [
    ("A_one_per_s", "A enqueue one-by-one (x32), /s", True),
    ("A_batch_per_s", "A enqueue batch API, /s", True),
    ("B_w1_per_s", "B drain 1 process, /s", True),
    ("B_w2_per_s", "B drain 2 processes, /s", True),
    ("B_w1_steady_per_s", "B drain 1 process after 1st result, /s", True),
    ("B_w1_first_result_s", "startup: spawn -> first result (B), s", False),
    ("B_w1_redis_us", "B Redis CPU per task (enqueue+drain), us", False),
    ("B_w1_redis_drain_us", "B Redis CPU per task (drain only), us", False),
    ("B_w1_worker_us", "B worker CPU per task, us", False),
    ("B_io_per_s", "B_io drain, task does 1 INCR, /s", True),
    ("B_io_redis_us", "B_io Redis CPU per task, us", False),
    ("B_io_worker_us", "B_io worker CPU per task, us", False),
    ("B_io_shared_per_s", "B_io_shared drain, INCR via ctx client, /s", True),
    ("B_io_shared_redis_us", "B_io_shared Redis CPU per task, us", False),
    ("B_io_shared_worker_us", "B_io_shared worker CPU per task, us", False),
    ("C_seconds", "C 5k x sleep(0.05) @500, s (ideal 0.5)", False),
    ("D_p50_ms", "D round trip p50, ms", False),
    ("D_p95_ms", "D round trip p95, ms", False),
    ("D_p99_ms", "D round trip p99, ms", False),
    ("E_peak_rss_mb", "E worker peak RSS in B, MB", False),
    ("E_hwm_mb", "E worker VmHWM sum in B, MB", False),
    ("F_seconds", "F recovery after SIGKILL, s", False),
]


def many_queue_metrics(p: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Scenario M's rows, named after the queue counts of the run."""
    q, idle = p["M_queues"], p["M_idle_queues"]
    return [
        ("M_drain_q1_per_s", "M drain, 1 queue, /s", True),
        (f"M_drain_q{q}_per_s", f"M drain, {q:,} queues, /s", True),
        (f"M_drain_q{q}_ratio_pct", f"M drain, {q:,} / 1 queue, same rep, %", True),
        ("M_drain_q1_steady_per_s", "M drain after 1st result, 1 queue, /s", True),
        (f"M_drain_q{q}_steady_per_s", f"M drain after 1st result, {q:,} queues, /s", True),
        ("M_drain_q1_first_s", "M spawn -> first result, 1 queue, s", False),
        (f"M_drain_q{q}_first_s", f"M spawn -> first result, {q:,} queues, s", False),
        ("M_drain_q1_worker_us", "M worker CPU per task after 1st, 1 queue, us", False),
        (f"M_drain_q{q}_worker_us", f"M worker CPU per task after 1st, {q:,} q, us", False),
        ("M_drain_q1_redis_us", "M Redis CPU per task, 1 queue, us", False),
        (f"M_drain_q{q}_redis_us", f"M Redis CPU per task, {q:,} queues, us", False),
        ("M_rt_q1_p50_ms", "M round trip p50, 1 queue, ms", False),
        (f"M_rt_q{q}_p50_ms", f"M round trip p50, {q:,} queues, ms", False),
        ("M_idle_q1_redis_pct", "M idle worker, 1 queue: Redis % of a core", False),
        (f"M_idle_q{idle}_redis_pct", f"M idle worker, {idle:,} queues: Redis % core", False),
        (f"M_idle_q{idle}_worker_pct", f"M idle worker, {idle:,} queues: worker % core", False),
    ]


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def table(
    medians: dict[str, dict[str, float]],
    systems: list[str],
    metrics: list[tuple[str, str, bool]] = METRICS,
) -> str:
    peers = [s for s in systems if s not in ("aioq", "raw")]
    head = ["metric", *systems, *(f"aioq/{p}" for p in ["raw", *peers] if p in systems)]
    rows = [head]
    for key, label, _ in metrics:
        vals = [medians.get(s, {}).get(key) for s in systems]
        if all(v is None for v in vals):
            continue
        a = medians.get("aioq", {}).get(key)
        ratios = []
        for p in ["raw", *peers]:
            if p not in systems:
                continue
            v = medians.get(p, {}).get(key)
            ratios.append(f"{a / v:.2f}" if a is not None and v else "-")
        rows.append([label, *(fmt(v) for v in vals), *ratios])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = status_kb_meminfo()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def status_kb_meminfo() -> int:
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def git_head() -> str:
    """The commit aioq was measured at (``+dirty`` when aioq/ had local changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "aioq"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


@contextlib.contextmanager
def private_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aioq-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_all(
    h: Harness,
    systems: list[str],
    reps: int,
    wanted: list[str],
    raw: dict[str, dict[str, list[float]]],
    errors: list[str],
) -> dict[str, list[float]]:
    """Every repetition; within one, each scenario for every system in turn."""
    redis = h.redis
    bench: dict[str, list[float]] = {}
    for rep in range(reps):
        if redis.private and "raw" in systems:
            redis.clean()
            for k, v in h.redis_benchmark().items():
                bench.setdefault(k, []).append(v)
        for scen, method in SCENARIOS:
            if scen not in wanted:
                continue
            for s in systems:
                redis.clean()
                h.log(f"rep {rep + 1}/{reps} {scen} {s}")
                try:
                    got = getattr(h, method)(s)
                except Exception as exc:  # a peer failing must not end the run
                    errors.append(f"rep {rep + 1} {scen} {s}: {exc}")
                    h.log(f"FAILED {scen} {s}: {str(exc)[-600:]}")
                    continue
                if got:
                    h.log(f"  {', '.join(f'{k}={fmt(v)}' for k, v in got.items())}")
                for k, v in got.items():
                    raw[s].setdefault(k, []).append(v)
    return bench


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwind: stop workers, drivers and the private Redis


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="aioq only, tiny N, 1 repetition")
    ap.add_argument(
        "--systems", default=None, help="comma-separated subset of " + ",".join(SYSTEMS)
    )
    ap.add_argument(
        "--scenarios",
        default=None,
        help="comma-separated subset of " + ",".join(s for s, _ in SCENARIOS),
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=N",
        help="override a parameter, e.g. --set M_queues=300 (recorded in the JSON)",
    )
    ap.add_argument("--out", default=str(BENCH / "results" / "latest.json"))
    args = ap.parse_args(argv)
    systems = args.systems.split(",") if args.systems else (["aioq"] if args.smoke else SYSTEMS)
    reps = 1 if args.smoke else args.reps
    wanted = args.scenarios.split(",") if args.scenarios else [s for s, _ in SCENARIOS]

    load_before = os.getloadavg()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    url = os.environ.get("AIOQ_REDIS_URL") if args.smoke else None
    if url is None and shutil.which("redis-server") is None:
        print("benchmarks need redis-server on PATH", file=sys.stderr)
        return 2
    redis = Redis(url, prefix)
    raw: dict[str, dict[str, list[float]]] = {s: {} for s in systems}
    bench: dict[str, list[float]] = {}
    errors: list[str] = []
    with private_tmp() as tmp:
        h = Harness(args, redis, tmp)
        try:
            for s in systems:
                h.pythons[s] = venv_python(s, load(s).PACKAGES, h.log)
            compile_checkout(sys.executable)
            bench = run_all(h, systems, reps, wanted, raw, errors)
        except KeyboardInterrupt:
            # Ctrl-C / SIGTERM: report what the repetitions so far measured (on a
            # busy machine three repetitions of everything can take over an hour).
            errors.append("interrupted: the figures are of the repetitions completed")
            h.log("interrupted: reporting what was measured so far")
        finally:
            redis.stop()

    medians = {s: {k: statistics.median(v) for k, v in m.items()} for s, m in raw.items()}
    out = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {**machine(), "redis": redis.version},
        "aioq_commit": git_head(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "params": h.p,
        "reduced_n": SLOW,
        "repetitions": reps,
        "systems": systems,
        "versions": {s: versions(h.pythons[s]) for s in systems if s in h.pythons},
        "redis_benchmark": {k: statistics.median(v) for k, v in bench.items()},
        "medians": medians,
        "runs": raw,
        "errors": errors,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"medians of {reps} repetition(s); ratio columns are aioq value / peer value")
    print("(for /s rows above 1 favours aioq; for s, ms and MB rows below 1 does)\n")
    print(table(medians, systems, METRICS + many_queue_metrics(h.p)))
    if out["redis_benchmark"]:
        print()
        for k, v in out["redis_benchmark"].items():
            print(f"redis-benchmark {k}: {v:,.0f}")
    if errors:
        print("\nerrors:\n  " + "\n  ".join(e[:300] for e in errors))
    print(f"\nJSON: {args.out}")
    drawn = chart.draw(medians, systems, Path(args.out).with_suffix(".png"))
    print(
        f"chart: {drawn}"
        if drawn
        else "chart: none (nothing to draw, or no matplotlib: the bench extra)"
    )
    return 1 if args.smoke and errors else 0


if __name__ == "__main__":
    sys.exit(main())
