"""The benchmark harness runs end to end (``benchmarks/run.py --smoke``).

No timing assertions: only that it exits 0 and reports every aioq scenario with
positive numbers. It uses the suite's Redis under its own key prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = [
    "A_one_per_s",
    "A_batch_per_s",
    "B_w1_per_s",
    "B_w2_per_s",
    "B_w1_redis_us",
    "B_w1_redis_drain_us",
    "B_w1_worker_us",
    "B_io_per_s",
    "B_io_redis_us",
    "B_io_shared_per_s",
    "B_io_shared_redis_us",
    "B_io_shared_worker_us",
    "C_seconds",
    "D_p50_ms",
    "D_p99_ms",
    "E_peak_rss_mb",
    "F_seconds",
    "M_drain_q1_per_s",
    "M_drain_q20_per_s",
    "M_rt_q1_p50_ms",
    "M_rt_q20_p50_ms",
    "M_idle_q1_redis_pct",
    "M_idle_q50_redis_pct",
]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_smoke(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {**os.environ, "AIOQ_REDIS_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,  # every scenario at tiny N: ~35 s, minutes on a loaded machine
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    aioq = report["medians"]["aioq"]
    for key in EXPECTED:
        assert aioq.get(key, 0) > 0, (key, aioq)
    assert report["errors"] == []
    # The chart is drawn when matplotlib (the bench extra) is installed.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_soak_smoke(tmp_path: Path) -> None:
    """``benchmarks/soak.py`` at tiny N (its own private redis-server): every
    figure present, every job record expired again, the chord's sum checked."""
    out = tmp_path / "soak.json"
    n = 200
    proc = subprocess.run(
        [
            *(sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--quiet"),
            *("--n", str(n), "--batch", "64", "--chord", "50", "--result-ttl", "2"),
            *("--timeout", "30", "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    for key in (
        "enqueue_per_s",
        "drain_per_s",
        "drain_first_result_s",
        "bytes_per_queued_job",
        "peak_used_memory",
        "worker_peak_rss_mb",
        "chord_enqueue_s",
        "chord_done_s",
    ):
        assert report[key] > 0, (key, report)
    # What expiry gives back from a few hundred records is within used_memory's own
    # drift (client buffers, allocator): a number at this size, meaningful at 1,000,000.
    assert isinstance(report["bytes_per_stored_result"], float), report
    assert report["enqueued"]["keys"] == n + 1  # a record per job, and the stream
    assert report["records_after_drain"] == n
    assert report["chord_n"] == 50  # soak.py itself checks the callback's sum
    assert not [k for k in report["keys_left"] if ":job:" in k], report["keys_left"]
    assert report["peak_used_memory"] >= report["enqueued"]["used_memory"]


def test_rss_breakdown_smoke(tmp_path: Path) -> None:
    """benchmarks/rss_breakdown.py reads a running worker from outside and inside
    (its own private redis-server, the project's python; figures not checked)."""
    out = tmp_path / "rss.json"
    subprocess.run(
        [
            *(sys.executable, str(ROOT / "benchmarks" / "rss_breakdown.py")),
            *("--systems", "aioq", "--aioq-venv", "project", "--reps", "1", "--layers"),
            *("--tracemalloc", "3", "--importmem", "--release", "--out", str(out)),
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    report = json.loads(out.read_text())
    plain = report["plain"]["aioq"][0]
    assert plain["status"]["VmRSS"] > 0 and plain["cats"]
    probe = report["probed"]["aioq"]["probe"]
    assert "aioq._worker.worker" in probe["module_names"]
    assert probe["traced_kb"] > 0 and probe["imports"] and probe["by_traceback"]
    assert set(probe["release"]) == {"before", "gc.collect", "malloc_trim(0)"}
    assert [row[0] for row in report["layers"]["aioq"]][:2] == ["python -c pass", "asyncio, ssl"]
