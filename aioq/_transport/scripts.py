"""Lua scripts: one ``.lua`` file per atomic command, loaded once, called by SHA.

Scripts share code through ``lua/include/*.lua`` fragments: a line
``-- #include name.lua`` is replaced by that fragment when the script is loaded
(the "is the job final?" check and the fencing checks live there once), and
``codes.lua``, written from ``types.CODES``, names every status code. A
script that starts with a ``#!lua`` shebang keeps it first: such scripts are
refused as a whole when Redis is out of memory, never left half done.

Scripts are sent with EVALSHA. After a Redis restart or ``SCRIPT FLUSH`` the
cache is empty and every script fails with NOSCRIPT together, so a pipeline
that saw NOSCRIPT anywhere is re-run whole once the scripts are loaded again:
every operation we put in such a pipeline is idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zlib
from importlib import resources
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from .cluster import execute_pipeline, is_cluster
from .connection import bounded
from .types import lua_codes

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from .lanes import Lanes

__all__ = ["SCRIPTS", "Commands", "Scripts", "run_pipeline", "run_scripts"]


class Script:
    """One script, its expanded source kept zlib-compressed: the sources are
    ~0.2 MB expanded, ~0.04 MB compressed, and a process sends them only when
    Redis lacks them (issue 14, worker memory). Kept, not re-read from the file:
    a process upgraded on disk under it still reloads the scripts it knows by SHA."""

    __slots__ = ("_packed", "name", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        data = source.encode()
        self.sha = hashlib.sha1(data).hexdigest()
        self._packed = zlib.compress(data)

    @property
    def source(self) -> str:
        return zlib.decompress(self._packed).decode()


_INCLUDE = re.compile(r"^-- #include (\S+)$", re.MULTILINE)


def expand(source: str, fragments: dict[str, str]) -> str:
    """Replace every ``-- #include name.lua`` line with that fragment."""

    def fragment(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fragments:
            raise LookupError(f"unknown Lua include {name!r}")
        return fragments[name].rstrip("\n")

    return _INCLUDE.sub(fragment, source)


class Scripts:
    """The loaded ``lua/*.lua`` files, addressable by file stem."""

    def __init__(self) -> None:
        folder = resources.files(__package__).joinpath("lua")
        fragments = {
            entry.name: entry.read_text("utf-8")
            for entry in folder.joinpath("include").iterdir()
            if entry.name.endswith(".lua")
        }
        fragments["codes.lua"] = lua_codes()  # shared with Python: types.CODES
        self._by_name = {
            entry.name.removesuffix(".lua"): Script(
                entry.name, expand(entry.read_text("utf-8"), fragments)
            )
            for entry in folder.iterdir()
            if entry.name.endswith(".lua")
        }

    def __getitem__(self, name: str) -> Script:
        return self._by_name[name]

    async def load_all(self, redis: Redis) -> None:
        """SCRIPT LOAD every script; on a cluster, on every primary (redis-py sends
        SCRIPT LOAD to all of them). Redis does not replicate its script cache, so
        a replica promoted by a failover has none: NOSCRIPT then brings us here."""
        sources = [s.source for s in self._by_name.values()]
        if is_cluster(redis):
            await asyncio.gather(*(redis.script_load(source) for source in sources))
            return
        pipe = redis.pipeline(transaction=False)
        for source in sources:
            pipe.script_load(source)
        await pipe.execute()

    def queue(self, pipe: Pipeline | Commands, name: str, keys: list[str], args: list[Any]) -> None:
        """Append one EVALSHA of script ``name`` to ``pipe`` (as a raw command: a
        cluster pipeline refuses ``evalsha()`` but routes a raw EVALSHA by its keys)."""
        pipe.execute_command("EVALSHA", self._by_name[name].sha, len(keys), *keys, *args)

    async def call(self, redis: Redis, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script now, loading the scripts first if Redis lost them."""
        sha = self._by_name[name].sha
        async with bounded():
            try:
                return await redis.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.load_all(redis)
                return await redis.evalsha(sha, len(keys), *keys, *args)


SCRIPTS = Scripts()


async def run_pipeline(redis: Redis, build: Callable[[Pipeline], None]) -> list[Any]:
    """Build and execute a non-transactional pipeline; replies may be exceptions.

    When any reply is NOSCRIPT the scripts are loaded and the pipeline is
    rebuilt and executed once more.
    """
    for _ in range(2):
        pipe = redis.pipeline(transaction=False)
        build(pipe)
        async with bounded():
            replies: list[Any] = await execute_pipeline(pipe, raise_on_error=False)
        if not any(isinstance(r, NoScriptError) for r in replies):
            return replies
        await SCRIPTS.load_all(redis)
    return replies


class Commands:
    """Raw commands collected for ``Lanes.run``: what a pipeline would be given."""

    def __init__(self) -> None:
        self.stack: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.stack.append(args)


async def run_scripts(redis: Redis, lanes: Lanes, build: Callable[[Commands], None]) -> list[Any]:
    """``run_pipeline`` for script calls, on a kept connection (``lanes.py``): the
    per-message hot paths. Replies are raw; an error reply is its exception. On a
    cluster ``lanes`` runs them in a cluster pipeline (routed by their keys)."""
    for _ in range(2):
        commands = Commands()
        build(commands)
        async with bounded():
            replies = await lanes.run(commands.stack)
        if not any(isinstance(r, NoScriptError) for r in replies):
            return replies
        await SCRIPTS.load_all(redis)
    return replies
