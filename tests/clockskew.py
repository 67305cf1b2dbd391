"""Test aid: give this process a wrong wall clock.

Imported (first) by the app module a test's worker or scheduler subprocess
loads. ``AIOQ_TEST_CLOCK_OFFSET`` (seconds, may be negative) is added to
``time.time`` and ``time.time_ns``; with ``AIOQ_TEST_CLOCK_FOR`` (seconds) the
offset lasts only that long after import, then the clock is right again (a
clock that jumped and was corrected). Monotonic time is left alone: a wrong
wall clock does not move it.
"""

from __future__ import annotations

import os
import time

OFFSET = float(os.environ.get("AIOQ_TEST_CLOCK_OFFSET") or 0)
LASTS = float(os.environ.get("AIOQ_TEST_CLOCK_FOR") or 0)

if OFFSET:
    _time, _time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _until = _monotonic() + LASTS if LASTS > 0 else float("inf")
    _offset_ns = int(OFFSET * 1_000_000_000)

    def _skewed() -> float:
        return _time() + (OFFSET if _monotonic() < _until else 0.0)

    def _skewed_ns() -> int:
        return _time_ns() + (_offset_ns if _monotonic() < _until else 0)

    time.time = _skewed
    time.time_ns = _skewed_ns
