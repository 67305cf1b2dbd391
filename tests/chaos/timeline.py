"""What a private Sentinel deployment's logs say happened, in seconds from a fault.

The sentinels log every step of a failover (``+sdown``, ``+odown``,
``+failover-*``, ``+promoted-slave``, ``+switch-master``, ``+convert-to-slave``…)
and the data nodes every change of role and every sync; read back after a chaos
run they tell which failovers happened and when, including the ones nobody asked
for (a primary stalled past ``down-after-milliseconds`` on a busy host)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["Event", "events", "render"]

_LINE = re.compile(r"^\d+:([XMSC]) (\d+ \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3}) [.\-*#] (.*)$")

SENTINEL_EVENTS = (
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+new-epoch",
    "+try-failover",
    "+vote-for-leader",
    "+elected-leader",
    "+failover-state",
    "+selected-slave",
    "+promoted-slave",
    "+failover-end",
    "-failover-abort",
    "+switch-master",
    "+convert-to-slave",
    "+fix-slave-config",
    "+slave-reconf",
    "+role-change",
    "+reboot",
)
"""The sentinels' log lines worth a line in a timeline (not ``+sentinel`` chatter)."""

NODE_EVENTS = (
    "MASTER MODE enabled",
    "Connecting to MASTER",
    "Before turning into a replica",
    "Discarding previously cached master state",
    "Full resync",
    "Partial resynchronization",
    "MASTER <-> REPLICA sync: Finished",
    "MASTER <-> REPLICA sync: Flushing old data",
    "Connection with master lost",
    "Connection with replica",
    "Synchronization with replica",
    "Ready to accept connections",
)
"""The data nodes' log lines that mark a role change or a (re)sync."""


@dataclass(frozen=True)
class Event:
    at: float
    """Seconds after the fault (wall clock: the logs' own timestamps)."""
    source: str
    """``sentinel 41001`` or ``node 41000``."""
    text: str


def _parse(path: Path, source: str, kinds: tuple[str, ...], zero: float) -> list[Event]:
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        match = _LINE.match(line)
        if match is None or not any(k in match.group(3) for k in kinds):
            continue
        stamp = datetime.strptime(match.group(2), "%d %b %Y %H:%M:%S.%f").timestamp()
        out.append(Event(round(stamp - zero, 3), source, match.group(3)))
    return out


def events(
    deployment_dir: str, data_ports: list[int], sentinel_ports: list[int], zero: float
) -> list[Event]:
    """Every failover step and role change logged under ``deployment_dir`` (a
    ``PrivateSentinel``'s), in time order, relative to ``zero`` (``time.time()``)."""
    root = Path(deployment_dir)
    out: list[Event] = []
    for port in sentinel_ports:
        out += _parse(root / str(port) / "sentinel.log", f"sentinel {port}", SENTINEL_EVENTS, zero)
    for port in data_ports:
        out += _parse(root / str(port) / "redis.log", f"node {port}", NODE_EVENTS, zero)
    return sorted(out, key=lambda e: e.at)


def render(found: list[Event], since: float = -5.0) -> str:
    return "\n".join(f"  {e.at:+8.3f}s {e.source:>15}: {e.text}" for e in found if e.at >= since)
