"""One module per system under test; each follows the interface in ``base.py``.

Adding a system is one file here plus its name in ``SYSTEMS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SYSTEMS = ["aioq", "raw", "taskiq", "saq", "arq", "celery", "dramatiq", "streaq"]
"""Every system, in the order the harness interleaves them."""


def load(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.systems.{name}_")
