"""Which errors a worker rides out: every transient state of a single node, a
failover and a Redis Cluster resharding is an outage, never a worker exit."""

from __future__ import annotations

import pytest
from redis import exceptions as rex

from aioq._transport.connection import OUTAGE_ERRORS, REDIS_ERRORS, NoReplicasError, outage_text


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (rex.ReadOnlyError("You can't write against a read only replica."), "READONLY"),
        (rex.MasterDownError("Link with MASTER is down"), "MASTERDOWN"),
        (rex.ClusterDownError("The cluster is down"), "CLUSTERDOWN"),
        (rex.TryAgainError("Multiple keys request during rehashing of slot"), "TRYAGAIN"),
        (rex.MovedError("3999 127.0.0.1:6381"), "MOVED"),
        (rex.AskError("3999 127.0.0.1:6381"), "ASK"),
        (rex.SlotNotCoveredError("Command # 1 (GET) of pipeline: slot 12182"), "CLUSTERDOWN"),
        (rex.ClusterError("TTL exhausted."), ""),
        (rex.BusyLoadingError("Redis is loading the dataset in memory"), "LOADING"),
        (rex.ConnectionError("Connection refused"), ""),
        (NoReplicasError("Not enough good replicas to write."), "NOREPLICAS"),
    ],
)
def test_cluster_and_failover_errors_are_outages(error: BaseException, code: str) -> None:
    assert isinstance(error, OUTAGE_ERRORS)
    assert isinstance(error, REDIS_ERRORS)  # what every background loop catches
    assert outage_text(error).startswith(code)


def test_a_plain_error_reply_is_not_an_outage() -> None:
    assert not isinstance(rex.ResponseError("WRONGTYPE Operation against a key"), OUTAGE_ERRORS)
    assert not isinstance(rex.ClusterCrossSlotError("CROSSSLOT"), OUTAGE_ERRORS)
