#!/usr/bin/env python3
"""Where an idle worker's RSS goes: aioq next to arq (issue 14, target 6).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rss_breakdown.py --systems aioq,arq --reps 3
    ... --probe            # also: modules, threads, tasks, mallinfo2, pymalloc arenas
    ... --tracemalloc 25   # also: traced Python allocations by file and line (own run)
    ... --release          # also: VmRSS after gc.collect() and malloc_trim(0) (own run)

Each system's worker is started as ``footprint.py`` starts it (run.py's harness,
private Redis, aioq in ``benchmarks/.venvs/aioq-core``), runs one no-op, and 1 s
later its ``/proc/PID/status`` and ``/proc/PID/smaps`` are read. Every mapping is
put in one category (the malloc heap, thread stacks found from each thread's stack
pointer, glibc thread arenas, other anonymous memory — pymalloc's 1 MiB arenas and
large mallocs —, and file mappings by library); medians over ``--reps``. The
``--probe`` runs start the same command under ``benchmarks/rss_probe.py``, whose
thread reports from inside the process (those figures include the thread and, with
``--tracemalloc``, tracemalloc's own memory: they explain, the plain runs measure).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import footprint, run  # noqa: E402

HEAP_MAX = 64 << 20  # glibc's non-main arenas are 64 MiB-aligned reservations


def smaps(pid: int) -> list[dict[str, Any]]:
    maps: list[dict[str, Any]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split(None, 5)
                start, end = (int(x, 16) for x in parts[0].split("-"))
                path = parts[5].strip() if len(parts) > 5 else ""
                maps.append({"start": start, "end": end, "perm": parts[1], "path": path})
            else:
                key, _, value = line.partition(":")
                fields = value.split()
                if len(fields) == 2 and fields[1] == "kB":
                    maps[-1][key] = int(fields[0])
    return maps


def thread_sps(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread's name and stack pointer (``/proc/PID/task/TID/syscall``)."""
    out: dict[int, tuple[str, int]] = {}
    for tid in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (tid / "comm").read_text().strip()
            fields = (tid / "syscall").read_text().split()
        except OSError:
            continue
        sp = int(fields[-2], 16) if len(fields) >= 3 else 0
        out[int(tid.name)] = (name, sp)
    return out


LIBS = [
    ("python: libpython + executable", r"libpython|/bin/python"),
    ("OpenSSL: libcrypto, libssl, _ssl, _hashlib", r"libcrypto|libssl|/_ssl\.|/_hashlib\."),
    ("uvloop", r"/uvloop/"),
    ("msgspec", r"/msgspec/"),
    ("hiredis", r"/hiredis/"),
    ("libc, libm, ld.so, other system libs", r"^/(usr/)?lib.*\.so"),
    ("Python's lib-dynload (_asyncio, _json, select, ...)", r"lib-dynload"),
    ("other extension modules", r"\.so"),
]


def categorise(pid: int) -> dict[str, dict[str, int]]:
    maps = smaps(pid)
    threads = thread_sps(pid)
    main_tid = pid
    stacks = {
        i
        for tid, (_, sp) in threads.items()
        if tid != main_tid
        for i, m in enumerate(maps)
        if m["start"] <= sp < m["end"]
    }
    cats: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i, m in enumerate(maps):
        path = m["path"]
        if path == "[heap]":
            cat = "malloc heap (brk: main arena)"
        elif path == "[stack]":
            cat = "main thread stack"
        elif i in stacks:
            cat = "other threads' stacks"
        elif not path:
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            arena = (
                m["start"] % HEAP_MAX == 0
                and nxt is not None
                and nxt["start"] == m["end"]
                and nxt["perm"].startswith("---")
                and not path
            )
            cat = (
                "glibc thread arenas" if arena else "anonymous mmap (pymalloc arenas, big mallocs)"
            )
        elif path.startswith("["):
            cat = "kernel ([vdso], [vvar], ...)"
        else:
            cat = next((name for name, pat in LIBS if re.search(pat, path)), "other files")
            cat = f"file: {cat}"
        for key in ("Rss", "Anonymous", "Private_Dirty", "Private_Clean", "Shared_Clean"):
            cats[cat][key] += m.get(key, 0)
        cats[cat]["Size"] += (m["end"] - m["start"]) // 1024
        cats[cat]["mappings"] += 1
    return {k: dict(v) for k, v in cats.items()}


def status(pid: int) -> dict[str, int]:
    keys = ("VmRSS", "RssAnon", "RssFile", "VmSize", "Threads")
    return {k: run.status_kb(pid, k) for k in keys}


def one(
    h: run.Harness,
    system: str,
    probe: dict[str, str] | None,
    tmp: Path,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    h.redis.clean()
    w = h.worker(system, 1, 100)
    w.env.update(env or {})
    trigger = out = None
    if probe is not None:
        trigger, out = tmp / f"{system}.trigger", tmp / f"{system}.json"
        trigger.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        assert w.cmd[1] == "-m", w.cmd
        w.cmd = [w.cmd[0], str(ROOT / "benchmarks" / "rss_probe.py"), *w.cmd[1:]]
        w.env.update(probe, RSS_PROBE_TRIGGER=str(trigger), RSS_PROBE_OUT=str(out))
    w.start()
    try:
        h.driver(system, {"scenario": "drain", "n": 1}, lambda _: None)
        time.sleep(1.0)
        pid = w.proc.pid
        got: dict[str, Any] = {
            "status": status(pid),
            "tree_rss_kb": footprint.tree_rss_kb(pid),
            "processes": len(run.descendants(pid)),
            "threads": sorted(name for name, _ in thread_sps(pid).values()),
            "cats": categorise(pid),
        }
        if trigger is not None and out is not None:
            trigger.touch()
            for _ in range(600):
                if out.exists():
                    break
                time.sleep(0.05)
            got["probe"] = json.loads(out.read_text())
        w.check_alive()
    finally:
        w.stop()
    return got


LAYERS = {
    "aioq": [
        ("asyncio, ssl", "import asyncio, ssl"),
        ("redis.asyncio", "import redis.asyncio"),
        ("uvloop", "import uvloop"),
        ("msgspec", "import msgspec"),
        ("anyio", "import anyio"),
        (
            "anyio's modules aioq uses (abc, lowlevel, streams, to_thread)",
            "import anyio.abc, anyio.lowlevel, anyio.streams.memory, anyio.to_thread",
        ),
        ("import aioq", "import aioq"),
        ("the CLI (aioq.cli, argparse)", "import aioq.cli, aioq._workercli"),
        ("the app module", "import benchmarks.systems.aioq_"),
        (
            "Worker built as `aioq worker` builds it",
            "a = aioq.cli._parser().parse_args(['worker', 'benchmarks.systems.aioq_:app']); "
            "w = aioq._workercli.build_worker(a)",
        ),
        ("anyio's asyncio backend (anyio.run)", "import anyio._backends._asyncio"),
        ("the idna codec (uvloop's getaddrinfo)", "'localhost'.encode('idna')"),
    ],
    "arq": [
        ("asyncio, ssl", "import asyncio, ssl"),
        ("redis.asyncio", "import redis.asyncio"),
        ("arq, its CLI (click)", "import arq, arq.cli, arq.worker"),
        ("the app module", "import benchmarks.systems.arq_"),
    ],
}
"""What ``--layers`` imports step by step in one process (VmRSS after each)."""


def layers(
    python: str, steps: list[tuple[str, str]], env: dict[str, str]
) -> list[tuple[str, int, int]]:
    """(step, VmRSS kB, modules) after each step, in a fresh ``python``."""
    import subprocess

    code = [
        "import sys",
        "def rss():",
        "    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])",
        "print('python -c pass', rss(), len(sys.modules), sep='\t')",
    ]
    for label, stmt in steps:
        code += [stmt, f"print({label!r}, rss(), len(sys.modules), sep='\t')"]
    out = subprocess.run(
        [python, "-c", "\n".join(code)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 2]
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


def median_cats(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    names = sorted({c for r in runs for c in r["cats"]})
    return {
        c: {
            k: statistics.median(r["cats"].get(c, {}).get(k, 0) for r in runs)
            for k in ("Rss", "Anonymous", "Size", "mappings")
        }
        for c in names
    }


Variants = dict[str, tuple[str, str, dict[str, str]]]
"""Column label -> (system, venv name or "" for the default, extra environment)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--systems", default="aioq,arq")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--probe", action="store_true", help="one more run each, inspected from inside")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    ap.add_argument("--release", action="store_true")
    ap.add_argument(
        "--importmem", action="store_true", help="with --tracemalloc: traced memory per import"
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:VENV:K=V,K=V",
        help="one more aioq column: the worker run with benchmarks/.venvs/VENV's python "
        "(empty: aioq-core) and these environment variables, interleaved with the others",
    )
    ap.add_argument("--layers", action="store_true", help="also: VmRSS after each import step")
    ap.add_argument(
        "--aioq-venv",
        choices=["core", "project"],
        default="core",
        help="core: benchmarks/.venvs/aioq-core (as footprint.py); project: this python",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rss_breakdown.json"))
    return ap.parse_args(argv)


def probe_env(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    if args.tracemalloc:
        env["RSS_PROBE_TRACEMALLOC"] = str(args.tracemalloc)
    if args.importmem:
        env["RSS_PROBE_IMPORTMEM"] = "1"
    if args.release:
        env["RSS_PROBE_RELEASE"] = "1"
    return env


def measure(
    h: run.Harness, args: argparse.Namespace, variants: Variants, tmp: Path
) -> dict[str, Any]:
    pythons: dict[str, str] = {}
    for label, (system, venv, _) in variants.items():
        if venv:
            pythons[label] = str(run.VENVS / venv / "bin" / "python")
        elif system == "aioq" and args.aioq_venv == "project":
            pythons[label] = sys.executable
        elif system == "aioq":
            pythons[label] = run.venv_python("aioq-core", footprint.CORE, h.log)
        else:
            pythons[label] = run.venv_python(system, run.load(system).PACKAGES, h.log)
    run.compile_checkout(pythons.get("aioq", sys.executable))

    def run_one(label: str, probe: dict[str, str] | None) -> dict[str, Any]:
        system, _, extra = variants[label]
        h.pythons[system] = pythons[label]
        return one(h, system, probe, tmp, extra)

    layered: dict[str, list[tuple[str, float, int]]] = {}
    for s, (system, _, extra) in variants.items():
        if args.layers and system in LAYERS:
            env = {**h.env(system), **extra}
            steps = LAYERS[system]
            if extra.get("AIOQ_LOOP") == "asyncio":  # uvloop is never imported then
                steps = [st for st in steps if "uvloop" not in st[0]]
            runs = [layers(pythons[s], steps, env) for _ in range(3)]
            layered[s] = [
                (row[0], statistics.median(r[i][1] for r in runs), row[2])
                for i, row in enumerate(runs[0])
            ]
    plain: dict[str, list[dict[str, Any]]] = {s: [] for s in variants}
    for rep in range(args.reps):
        for s in variants:
            got = run_one(s, None)
            h.log(f"rep {rep + 1} {s}: VmRSS {got['status']['VmRSS'] / 1024:.1f} MB")
            plain[s].append(got)
    env = probe_env(args)
    probed = {s: run_one(s, env) for s in variants} if args.probe or env else {}
    return {"plain": plain, "probed": probed, "layers": layered}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants: Variants = {s: (s, "", {}) for s in args.systems.split(",")}
    for spec in args.variant:
        label, venv, pairs = (spec.split(":", 2) + ["", ""])[:3]
        extra = dict(p.split("=", 1) for p in pairs.split(",") if p)
        variants[label] = ("aioq", venv, extra)
    redis = run.Redis(None, f"bench-{uuid.uuid4().hex[:8]}")
    with run.private_tmp() as tmp:
        h = run.Harness(argparse.Namespace(smoke=False, set=[]), redis, tmp)
        try:
            got = measure(h, args, variants, tmp)
        finally:
            redis.stop()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "aioq_commit": run.git_head(),
        "loadavg": os.getloadavg(),
        **got,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print_report(list(variants), got["plain"], got["probed"])
    print_layers(got["layers"], got["plain"])
    print(f"\nJSON: {args.out}")
    return 0


def print_layers(
    layered: dict[str, list[tuple[str, float, int]]], plain: dict[str, list[dict[str, Any]]]
) -> None:
    for s, rows in layered.items():
        print(f"\n{s}: VmRSS after each step (median of 3 processes), MB, +delta, modules")
        prev = 0.0
        for i, (label, kb, mods) in enumerate(rows):
            delta = f"+{(kb - prev) / 1024:.2f}" if i else ""
            print(f"  {label:62} {kb / 1024:6.2f} {delta:>7} {mods:5}")
            prev = kb
        if plain.get(s):
            kb = statistics.median(r["status"]["VmRSS"] for r in plain[s])
            label = "running, idle after one task (plain runs)"
            print(f"  {label:62} {kb / 1024:6.2f} +{(kb - prev) / 1024:.2f}")


def print_report(
    systems: list[str], plain: dict[str, list[dict[str, Any]]], probed: dict[str, dict[str, Any]]
) -> None:
    if all(plain[s] for s in systems):
        print_table(systems, plain)
    print_probed(probed)


def print_table(systems: list[str], plain: dict[str, list[dict[str, Any]]]) -> None:
    cats = {s: median_cats(plain[s]) for s in systems}
    names = sorted(
        {c for s in systems for c in cats[s]},
        key=lambda c: -max(cats[s].get(c, {}).get("Rss", 0) for s in systems),
    )
    width = max(len(n) for n in names)
    print(
        f"medians of {len(plain[systems[0]])} run(s), MB (MiB) of RSS; (anon) = anonymous pages\n"
    )
    print(f"{'':{width}}  " + "  ".join(f"{s:>16}" for s in systems))
    for n in names:
        cells = []
        for s in systems:
            c = cats[s].get(n)
            cells.append(
                f"{c['Rss'] / 1024:7.2f} ({c['Anonymous'] / 1024:5.2f})" if c else " " * 16
            )
        print(f"{n:{width}}  " + "  ".join(f"{x:>16}" for x in cells))
    for key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
        vals = [statistics.median(r["status"][key] for r in plain[s]) for s in systems]
        cells = [f"{v / 1024:7.2f}" if key != "Threads" else f"{v:7.0f}" for v in vals]
        print(f"{key:{width}}  " + "  ".join(f"{x:>16}" for x in cells))
    print("threads: " + "; ".join(f"{s}: {', '.join(plain[s][0]['threads'])}" for s in systems))


def print_probed(probed: dict[str, dict[str, Any]]) -> None:
    for s, p in probed.items():
        pr = p["probe"]
        mi = pr["mallinfo2"]
        pm = pr["pymalloc"]
        print(
            f"\n{s} (probed, VmRSS {p['status']['VmRSS'] / 1024:.1f} MB incl. the probe): "
            f"{pr['modules']} modules, {pr['gc_objects']} gc objects, "
            f"{pr['asyncio_tasks']} asyncio tasks, threads {pr['threads']}"
        )
        print(
            f"  glibc: main arena {mi['arena'] / 2**20:.2f} MB "
            f"(in use {mi['uordblks'] / 2**20:.2f}, free {mi['fordblks'] / 2**20:.2f}), "
            f"mmapped {mi['hblkhd'] / 2**20:.2f} MB in {mi['hblks']} blocks; "
            f"pymalloc: {pm.get('arenas allocated current', 0)} arenas, "
            f"{pm.get('bytes in allocated blocks', 0) / 2**20:.2f} MB in blocks"
        )
        if "release" in pr:
            print(
                "  release: " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in pr["release"].items())
            )
        if "by_file" in pr:
            print(f"  tracemalloc: {pr['traced_kb'] / 1024:.2f} MB traced; top files:")
            for f, size, count in pr["by_file"][:25]:
                print(f"    {size / 1024:8.1f} kB {count:6}  {f[-90:]}")
        if pr.get("imports"):
            print_imports(pr["imports"])
    if "aioq" in probed and "arq" in probed:
        a = set(probed["aioq"]["probe"]["module_names"])
        b = set(probed["arq"]["probe"]["module_names"])
        only = sorted(m for m in a - b if not m.startswith("aioq"))
        print(f"\nmodules only in aioq's worker, not aioq's own ({len(only)}): {' '.join(only)}")
        print(f"\nmodules only in arq's worker ({len(b - a)}): {' '.join(sorted(b - a))}")


def print_imports(imports: list[list[Any]]) -> None:
    """Traced memory per import: self bytes summed per top-level package, the
    biggest modules by self bytes (module bodies and their code; an extension's
    C allocations are not traced)."""
    per_pkg: collections.Counter[str] = collections.Counter()
    for name, _, _, own in imports:
        per_pkg[name.split(".")[0]] += own
    total = sum(per_pkg.values())
    print(
        f"  traced memory of {len(imports)} imports: {total / 2**20:.2f} MB; by top-level package:"
    )
    for pkg, size in per_pkg.most_common(30):
        print(f"    {size / 1024:8.1f} kB  {pkg}")
    print("  biggest modules (self):")
    for name, _depth, cum, own in sorted(imports, key=lambda x: -x[3])[:30]:
        print(f"    {own / 1024:8.1f} kB self {cum / 1024:8.1f} kB cumulative  {name}")


if __name__ == "__main__":
    sys.exit(main())
