"""An App whose tasks nothing imports."""

from __future__ import annotations

import os

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-bare"))
