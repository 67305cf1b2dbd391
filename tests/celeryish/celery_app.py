from __future__ import annotations

import os

import aioq

celery = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-celeryish"),
    include=["tests.celeryish.tasks"],
)
