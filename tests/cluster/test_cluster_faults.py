"""Faults on a Redis Cluster, counted (``benchmarks/cluster_fault_run.py`` runs them; the
benchmark ``benchmarks/cluster_faults.py`` runs the same at 10,000 events).

Each test starts a cluster of its own (3 masters + 3 replicas): it kills a master or
moves a slot, which must not disturb the session-wide cluster other tests share. Only
counts are asserted, never timings.

They run in ``make pytest-cluster`` (``ORDERFLOW_TEST_CLUSTER=1``); the plain run skips
them: they are about the cluster, need no session server, and running them in both
passes would only double their minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.cluster_fault_run import FaultCounts, FaultRun
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.pytest_plugin import cluster_mode, server_kind

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not cluster_mode(),
        reason="cluster fault tests run in make pytest-cluster (their own cluster)",
    ),
]
EVENTS = 3000


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(server_kind()) as cluster:
        yield cluster


def assert_accounted(counts: FaultCounts) -> None:
    """Every event was sent once and acknowledged; each acknowledged one is handled,
    lost with the failed master, or survived unhandled: nothing else, nothing twice."""
    assert counts.sent == counts.acknowledged == EVENTS
    assert counts.handled + counts.lost + counts.survived_unhandled == counts.acknowledged
    assert counts.handled_twice == 0
    assert counts.dead_letters == 0


async def test_a_master_killed_mid_run_loses_only_unreplicated_writes_and_nothing_twice(
    own_cluster: LocalCluster,
) -> None:
    counts = await FaultRun(own_cluster, fault="kill-master", events=EVENTS).run()
    print(counts.as_dict())  # the figures, in the test's output when it fails
    assert_accounted(counts)
    assert counts.affected_partitions  # the victim owned partitions being written
    # Producers and the consumer followed the promoted replica: writes to and effects
    # on the killed master's partitions resumed after the kill.
    assert counts.writes_resumed_s is not None and counts.handling_resumed_s is not None
    assert counts.send_retries > 0  # sends did fail meanwhile, and were re-sent
    # What asynchronous replication may lose: writes acknowledged by the master in its
    # last milliseconds. On one machine that is at most a few batches, never 1 % of the run.
    assert counts.lost + counts.survived_unhandled < EVENTS // 100


async def test_a_master_killed_while_sends_wait_for_its_replica_loses_no_acknowledged_event(
    own_cluster: LocalCluster,
) -> None:
    """``send(replicas=1)``: a send returns only once the replica has the entry, and
    that replica is the one promoted, so no acknowledged event can be lost."""
    run = FaultRun(own_cluster, fault="kill-master", events=EVENTS, replicas=1)
    counts = await run.run()
    print(counts.as_dict())
    assert_accounted(counts)
    assert counts.lost == 0
    assert counts.writes_resumed_s is not None and counts.handling_resumed_s is not None


async def test_a_partition_migrated_mid_run_loses_nothing_and_handles_nothing_twice(
    own_cluster: LocalCluster,
) -> None:
    counts = await FaultRun(own_cluster, fault="migrate-slot", events=EVENTS).run()
    print(counts.as_dict())
    assert_accounted(counts)
    assert (counts.lost, counts.survived_unhandled, counts.handled) == (0, 0, EVENTS)
    # MIGRATE moved the stream (with its consumer group), its marks and its effects.
    assert counts.group_moved is True
    assert counts.moved_keys >= 3
