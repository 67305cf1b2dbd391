"""The whole Redis keyspace of aioq, in one place.

Keys of one queue share the hash tag ``{queue}`` so they land in one Redis
Cluster slot and a Lua script may touch them together. Job records are keyed
by job id alone (any process can find a job from its id), so they live in
other slots: nothing writes a queue key and a job key in one script. Keys of
one task (its rate limiter and ``max_running`` set) share the hash tag
``{task:NAME}``, for ``admit.lua``.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"
"""The consumer group every worker of a queue reads through."""

PAYLOAD_FIELD = b"m"
"""The single field of a stream entry; its value is the msgpack envelope."""

LEVELS = 10
"""Priority levels 0..9 (9 = most urgent); each has its own stream per queue."""


@dataclass(frozen=True, slots=True)
class Keyspace:
    prefix: str = "aioq"

    def stream(self, queue: str, level: int = 0) -> str:
        """Ready messages of ``queue`` at priority ``level`` (consumer group ``workers``).
        Level 0, the default, has the plain name."""
        base = f"{self.prefix}:{{{queue}}}:stream"
        return f"{base}:{level}" if level else base

    def delayed(self, queue: str, level: int = 0) -> str:
        """Messages of priority ``level`` waiting for their due time (sorted set,
        score = due ms)."""
        base = f"{self.prefix}:{{{queue}}}:delayed"
        return f"{base}:{level}" if level else base

    def due(self) -> str:
        """The due-index hint: sorted set of queue → earliest time (ms, Redis clock)
        its delayed sets need a look, 0 = at once. App-wide, so in a slot of its
        own: written next to the queue scripts, never inside them (due.lua)."""
        return f"{self.prefix}:due"

    def level_streams(self, queue: str) -> list[str]:
        """The streams of every priority level of ``queue``, most urgent first."""
        return [self.stream(queue, level) for level in reversed(range(LEVELS))]

    def level_delayed(self, queue: str) -> list[str]:
        """The delayed sets of every priority level of ``queue``, most urgent first."""
        return [self.delayed(queue, level) for level in reversed(range(LEVELS))]

    def schedule(self, queue: str, name: str) -> str:
        """State of the periodic schedule ``name`` (hash: last fire time and job),
        in the slot of the queue its jobs go to."""
        return f"{self.prefix}:{{{queue}}}:schedule:{name}"

    def unique(self, queue: str, key: str) -> str:
        """Lock making one job with this key (job id or task + arguments) unique."""
        return f"{self.prefix}:{{{queue}}}:unique:{key}"

    def rate(self, task: str) -> str:
        """Rate limiter state of ``task`` (hash), shared by every worker.

        Keys of one task share the hash tag ``{task:NAME}`` (``admit.lua`` takes
        this key and ``running`` together, so they must be in one Cluster slot)."""
        return f"{self.prefix}:{{task:{task}}}:rate"

    def running(self, task: str) -> str:
        """Jobs of ``task`` running anywhere (sorted set, score = lease expiry ms),
        in the slot of the task's ``rate`` key."""
        return f"{self.prefix}:{{task:{task}}}:running"

    def dead(self, queue: str) -> str:
        """Dead letters of ``queue``: the original payload plus why it died."""
        return f"{self.prefix}:{{{queue}}}:dead"

    def events(self, queue: str) -> str:
        """Lifecycle events of ``queue``'s jobs (stream capped ~``events_maxlen``),
        in the queue's slot so the scripts of its transitions write them."""
        return f"{self.prefix}:{{{queue}}}:events"

    def runtime_schedules(self) -> str:
        """Schedules added at run time (hash: name → msgpack ``Schedule``)."""
        return f"{self.prefix}:schedules"

    def once(self, queue: str, job_id: str) -> str:
        """Marker that a workflow follow-up job was already sent to ``queue``."""
        return f"{self.prefix}:{{{queue}}}:once:{job_id}"

    def barrier(self, group_id: str) -> str:
        """A group's member results, by index (hash with a TTL)."""
        return f"{self.prefix}:barrier:{group_id}"

    def job(self, job_id: str) -> str:
        """The record of one job (a hash with a TTL once final)."""
        return f"{self.prefix}:job:{job_id}"

    def done_channel(self, job_id: str) -> str:
        """Pub/sub channel on which a job's outcome is published once."""
        return f"{self.prefix}:done:{job_id}"

    def reply_channel(self, client: str) -> str:
        """One client's own pub/sub channel for the outcomes of the jobs it sent
        (``replies.py``); ``client`` is random per client and event loop."""
        return f"{self.prefix}:reply:{client}"

    def progress_channel(self, job_id: str) -> str:
        """Pub/sub channel of a job's progress reports."""
        return f"{self.prefix}:progress:{job_id}"

    def abort_channel(self) -> str:
        """Pub/sub channel on which job ids to abort are announced to workers."""
        return f"{self.prefix}:abort"

    def worker(self, worker_id: str) -> str:
        """A live worker's registry entry (hash with a TTL a few heartbeats long):
        host, pid, queues, counters; rewritten by its heartbeat, gone when it stops."""
        return f"{self.prefix}:worker:{worker_id}"

    def workers(self) -> str:
        """Ids of workers that registered (set); entries whose hash expired are
        pruned by readers."""
        return f"{self.prefix}:workers"

    def queue_keys(self, queue: str) -> tuple[str, ...]:
        """Every key of one queue (for cleanup and the one-slot check)."""
        return (
            *self.level_streams(queue),
            *self.level_delayed(queue),
            self.dead(queue),
            self.events(queue),
        )
