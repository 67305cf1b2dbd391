"""``python -m tests.chaos.shortsweep worker …``: the real ``aioq`` command, with the
consumer sweep's bounds shortened (seconds instead of minutes) so the chaos suite
can watch dead consumers being removed."""

from __future__ import annotations

import sys

from aioq import cli
from aioq._worker import lease

lease.CONSUMER_IDLE_MIN = 1.0
lease.CONSUMER_IDLE_LEASES = 1
lease.SWEEP_EVERY = 0.5

if __name__ == "__main__":
    sys.exit(cli.main())
