"""Riding out a Redis outage while awaiting a result (``results.wait_outcome``)."""

from __future__ import annotations

import asyncio


class Outage:
    """Backoff while Redis is unreachable: re-raises the error once it lasted
    ``patience`` seconds, raises ``TimeoutError`` once the caller's deadline passed."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.since: float | None = None
        self.delay = 0.05

    async def pause(self, error: BaseException, until: float | None) -> None:
        now = asyncio.get_running_loop().time()
        if self.since is None:
            self.since = now
        if now - self.since >= self.patience:
            raise error
        sleep = self.delay
        if until is not None:
            if now >= until:
                raise TimeoutError(f"Redis unreachable: {error}") from error
            sleep = min(sleep, until - now)
        await asyncio.sleep(sleep)
        self.delay = min(self.delay * 2, 1.0)

    def over(self) -> None:
        self.since = None
        self.delay = 0.05
