"""Run a worker command with an inspection thread (``benchmarks/rss_breakdown.py``).

    <venv>/bin/python benchmarks/rss_probe.py -m aioq worker app:app ...

Runs the module like ``python -m`` would. A daemon thread waits for the file named
by ``RSS_PROBE_TRIGGER``, then writes JSON to ``RSS_PROBE_OUT``: module count,
gc objects, threads, asyncio tasks, glibc ``mallinfo2``, pymalloc's arena count,
and (with ``RSS_PROBE_TRACEMALLOC=N``, tracing from before the first import,
N frames) the traced Python allocations by file and by line. With
``RSS_PROBE_RELEASE=1`` it then runs ``gc.collect()`` and ``malloc_trim(0)`` and
reports ``VmRSS`` before and after each. Inspection only: the thread and
tracemalloc cost memory themselves, so RSS is compared without this launcher.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_FRAMES = int(os.environ.get("RSS_PROBE_TRACEMALLOC") or 0)
if _FRAMES:
    import tracemalloc

    tracemalloc.start(_FRAMES)

_IMPORTS: list[tuple[str, int, int, int]] = []
"""(module, depth, cumulative bytes, self bytes) per import, in order of completion:
``-X importtime`` for traced memory (``RSS_PROBE_IMPORTMEM=1``, with tracemalloc)."""


class _Measured:
    """A loader wrapper: traced memory around ``create_module`` + ``exec_module``."""

    stack: list[list[int]] = []

    def __init__(self, inner: object, name: str) -> None:
        self._inner = inner
        self._name = name

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    def _timed(self, fn: object, *args: object) -> object:
        start = tracemalloc.get_traced_memory()[0]
        self.stack.append([0])
        try:
            return fn(*args)  # type: ignore[operator]
        finally:
            children = self.stack.pop()[0]
            total = tracemalloc.get_traced_memory()[0] - start
            if self.stack:
                self.stack[-1][0] += total
            _IMPORTS.append((self._name, len(self.stack), total, total - children))

    def create_module(self, spec: object) -> object:
        return self._timed(self._inner.create_module, spec)  # type: ignore[attr-defined]

    def exec_module(self, module: object) -> object:
        return self._timed(self._inner.exec_module, module)  # type: ignore[attr-defined]


class _Finder:
    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> object:
        for finder in sys.meta_path:
            if finder is _Finder:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Measured(spec.loader, name)
                return spec
        return None


if _FRAMES and os.environ.get("RSS_PROBE_IMPORTMEM"):
    sys.meta_path.insert(0, _Finder)  # type: ignore[arg-type]


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _mallinfo() -> dict[str, int]:
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    got = libc.mallinfo2()
    return {name: int(getattr(got, name)) for name, _ in MallInfo2._fields_}


def _pymalloc() -> dict[str, int]:
    """Arena figures from ``sys._debugmallocstats()`` (written to C stderr)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key = key.strip().lstrip("#").strip()
        if key in (
            "arenas allocated current",
            "bytes in allocated blocks",
            "bytes in available blocks",
            "bytes in # arenas",
            "Total",
        ) or key.startswith("bytes in"):
            try:
                out[key] = int(value.strip().replace(",", ""))
            except ValueError:
                pass
    return out


def _report() -> dict[str, object]:
    import asyncio
    import gc

    got: dict[str, object] = {
        "rss_kb": _rss_kb(),
        "modules": len(sys.modules),
        "module_names": sorted(sys.modules),
        "gc_objects": len(gc.get_objects()),
        "gc_frozen": gc.get_freeze_count(),
        "threads": [t.name for t in threading.enumerate()],
        "asyncio_tasks": len(getattr(asyncio.tasks, "_all_tasks", ())),
        "mallinfo2": _mallinfo(),
        "pymalloc": _pymalloc(),
    }
    if _FRAMES:
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, __file__)])
        got["traced_kb"] = tracemalloc.get_traced_memory()[0] / 1024
        got["tracemalloc_overhead_kb"] = tracemalloc.get_tracemalloc_memory() / 1024
        got["by_file"] = [
            (str(s.traceback[0].filename), s.size, s.count) for s in snap.statistics("filename")
        ]
        got["by_line"] = [
            (f"{s.traceback[0].filename}:{s.traceback[0].lineno}", s.size, s.count)
            for s in snap.statistics("lineno")[:200]
        ]
        if _FRAMES > 1:  # where the allocations outside imports come from
            got["by_traceback"] = [
                (s.size, s.count, [f"{f.filename}:{f.lineno}" for f in s.traceback])
                for s in snap.statistics("traceback")
                if not any("importlib._bootstrap" in f.filename for f in s.traceback)
            ][:300]
        got["imports"] = _IMPORTS
        tracemalloc.stop()
    if os.environ.get("RSS_PROBE_RELEASE"):
        import ctypes

        steps = {"before": _rss_kb()}
        gc.collect()
        steps["gc.collect"] = _rss_kb()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        steps["malloc_trim(0)"] = _rss_kb()
        got["release"] = steps
        got["mallinfo2_after"] = _mallinfo()
    return got


def _watch(trigger: str, out: str) -> None:
    import json

    while not os.path.exists(trigger):
        time.sleep(0.05)
    got = _report()
    with open(out + ".tmp", "w") as f:
        json.dump(got, f)
    os.replace(out + ".tmp", out)


def main() -> None:
    import runpy

    if len(sys.argv) < 3 or sys.argv[1] != "-m":
        raise SystemExit("usage: rss_probe.py -m MODULE [ARGS...]")
    module = sys.argv[2]
    trigger, out = os.environ.get("RSS_PROBE_TRIGGER"), os.environ.get("RSS_PROBE_OUT")
    if trigger and out:
        threading.Thread(target=_watch, args=(trigger, out), daemon=True).start()
    sys.argv = [module, *sys.argv[3:]]
    sys.path[0] = os.getcwd()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
