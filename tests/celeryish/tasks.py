from __future__ import annotations

from tests.celeryish.celery_app import celery


@celery.task(name="celeryish.add")
def add(x: int, y: int) -> int:
    return x + y
