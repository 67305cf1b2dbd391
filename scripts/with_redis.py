#!/usr/bin/env python3
"""Run a command with a Redis to talk to, exported as ``AIOQ_REDIS_URL``.

    python scripts/with_redis.py -- pytest tests/

1. ``AIOQ_REDIS_URL`` set and answering PING: use it (the user pointed us there).
2. Else start a private ``redis-server`` on a free loopback port in a temp dir
   (no persistence), run the command, stop the server and delete the dir.
3. Else exit with a message saying how to install Redis.

Never touches a Redis the user did not name. Standard library only: it runs
before any virtualenv exists. The server logic lives in ``aioq/testing/redis.py``
(shared with the tests and the pytest plugin), loaded here by path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def _load_shared() -> Any:
    """``aioq/testing/redis.py``, loaded by path: importing the ``aioq`` package
    would need its dependencies, and this script runs before they exist."""
    path = Path(__file__).resolve().parent.parent / "aioq" / "testing" / "redis.py"
    spec = importlib.util.spec_from_file_location("aioq_testing_redis", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _load_shared()
INSTALL_HINT: str = _shared.INSTALL_HINT
PrivateRedis = _shared.PrivateRedis
reachable = _shared.reachable
free_port = _shared.free_port
_ping = _shared._ping


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: with_redis.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    url = env.get("AIOQ_REDIS_URL")
    server: PrivateRedis | None = None
    if url and reachable(url):
        print(f"[with_redis] using AIOQ_REDIS_URL={url}", file=sys.stderr)
    else:
        if url:
            print(
                f"[with_redis] AIOQ_REDIS_URL={url} does not answer; starting a private "
                "redis-server instead",
                file=sys.stderr,
            )
        binary = shutil.which("redis-server")
        if binary is None:
            print(INSTALL_HINT, file=sys.stderr)
            return 1
        server = PrivateRedis(binary)
        server.start()
        env["AIOQ_REDIS_URL"] = server.url
        env["AIOQ_PRIVATE_REDIS"] = "1"
        env["AIOQ_REDIS_SERVER"] = binary
        print(f"[with_redis] started a private redis-server at {server.url}", file=sys.stderr)
    proc = subprocess.Popen(argv, env=env)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
