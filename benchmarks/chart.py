"""The benchmark chart: aioq against its peers, one panel per scenario.

``run.py`` calls :func:`draw` at the end of a run when matplotlib is installed
(``pip install -e '.[bench]'``); without it the run only says so. Each panel shows
one metric's median per system, the raw redis-py ceiling as a line where it was
measured, and marks with an arrow whether higher or lower is better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS: list[tuple[str, str, bool]] = [
    ("B_w1_per_s", "drain, 1 process (tasks/s)", True),
    ("B_io_per_s", "drain, each task one INCR (tasks/s)", True),
    ("A_one_per_s", "enqueue one-by-one (/s)", True),
    ("D_p50_ms", "round trip p50 (ms)", False),
    ("C_seconds", "5k x sleep(0.05) @500 (s)", False),
    ("B_w1_redis_us", "Redis CPU per task (µs)", False),
    ("B_w1_worker_us", "worker CPU per task (µs)", False),
    ("E_peak_rss_mb", "worker peak RSS (MB)", False),
]
COLORS = {"aioq": "#d62728", "raw": "#7f7f7f"}


def draw(medians: dict[str, dict[str, float]], systems: list[str], out: Path) -> Path | None:
    """Write the chart to ``out`` (PNG or SVG by suffix); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [p for p in PANELS if any(p[0] in medians.get(s, {}) for s in systems)]
    if not panels:
        return None
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title, higher) in zip(axes.flat, panels, strict=False):
        names = [s for s in systems if s != "raw" and key in medians.get(s, {})]
        values = [medians[s][key] for s in names]
        colors = [COLORS.get(s, "#1f77b4") for s in names]
        ax.bar(names, values, color=colors)
        raw = medians.get("raw", {}).get(key)
        if raw:
            ax.axhline(raw, color=COLORS["raw"], linestyle="--", linewidth=1)
            ax.text(len(names) - 0.5, raw, " raw", va="bottom", ha="right", fontsize=8)
        ax.set_title(f"{title} {'↑' if higher else '↓'} better", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("aioq (red) and its peers; dashed: raw redis-py loop", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def draw_from_json(path: Path, out: Path) -> Path | None:
    import json

    data: dict[str, Any] = json.loads(path.read_text())
    return draw(data["medians"], data["systems"], out)


if __name__ == "__main__":
    import sys

    print(draw_from_json(Path(sys.argv[1]), Path(sys.argv[2])))
