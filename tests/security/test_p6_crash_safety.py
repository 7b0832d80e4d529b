"""Property 6 (docs/protocol.md §8): no single crash, at any point of Register/Recover/Delete,
loses a committed secret.

The crash-point campaign (kill -9 at before/after commit of Register2, Register3, Recover2,
Recover3 and Delete, then restart and check) is ``tests/faults/test_crash_campaign.py``; the
pure-model cases of an interrupted password change (old password stays in force; the 2/2
split of Juicebox recovers the new one) are in ``tests/unit/test_protocol_roundtrip.py``.
This module adds the harshest single event for durability: every node of the cluster loses
power (SIGKILL, no shutdown) the moment the SDK reports success; what it reported must be
on disk everywhere it counted.
"""

from __future__ import annotations

import signal

import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster
from tests.security.sec_live import client_for, guess_counts

pytestmark = [pytest.mark.timeout(180), pytest.mark.cluster(nodes=3, threshold=2)]


def power_loss(cluster: LocalCluster) -> None:
    """SIGKILL every node at once, then start them all again."""
    for node in cluster.nodes:
        cluster.kill_node(node.index, signal.SIGKILL, wait=False)
    for node in cluster.nodes:
        cluster.wait_exit(node.index, timeout=10)
    for node in cluster.nodes:
        cluster.start_node(node.index, wait=False)
    cluster.wait_healthy()


def test_acknowledged_operations_survive_a_cluster_wide_power_loss(cluster: LocalCluster) -> None:
    with client_for(cluster) as c:
        c.register("durable", "first", b"first secret")
    power_loss(cluster)
    with client_for(cluster) as c:
        assert c.recover("durable", "first") == b"first secret"
        c.change_password("durable", "first", "second")
    power_loss(cluster)
    with client_for(cluster) as c:
        assert c.recover("durable", "second") == b"first secret"
        with pytest.raises(pakr.InvalidPassword):
            c.recover("durable", "first")
    before = guess_counts(cluster, "durable")
    # the wrong guess above was counted by the t nodes asked …
    t, n = cluster.threshold, len(before)
    assert sorted(before.values()) == [0] * (n - t) + [1] * t
    power_loss(cluster)
    assert guess_counts(cluster, "durable") == before  # … and stays counted
    with client_for(cluster) as c:
        c.delete("durable")
    power_loss(cluster)
    with client_for(cluster) as c, pytest.raises(pakr.NotRegistered):
        c.recover("durable", "second")
