"""A reader on one node's database stalls nothing in the cluster, and erasure completes when
it lets go (issue: a backup's long read transaction froze the SQLite writer for 10 s).

A 3-node cluster (threshold 2) of real node processes; a reader holds a read transaction on
node 1's database (what a copy tool or a long report does) while the SDK deletes one user
(an erase on every node) and registers another: both succeed within the SDK's deadlines,
node 1 serving its part. The deleted user's stored ciphertext stays in node 1's files while
the reader's snapshot needs the old pages, and is gone once the reader closes (the
checkpoint retried in the background).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from pakr.coordinator.localcluster import LocalCluster
from tests.client.test_sdk_cluster import client_for

pytestmark = pytest.mark.timeout(180)

ClusterFactory = Callable[..., LocalCluster]


def node_files(cluster: LocalCluster, index: int) -> bytes:
    directory: Any = cluster.node(index).dir
    return b"".join(p.read_bytes() for p in directory.glob("node.db*"))


def stored_ciphertexts(cluster: LocalCluster, index: int, user_id: str) -> list[bytes]:
    conn = sqlite3.connect(f"file:{cluster.node(index).dir / 'node.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT encrypted_secret FROM versions WHERE user_id = ?", (user_id,)
        ).fetchall()
    finally:
        conn.close()
    return [bytes(r[0]) for r in rows if r[0] is not None]


def test_reader_on_a_node_stalls_nothing_and_erasure_follows(
    local_cluster: ClusterFactory,
) -> None:
    cluster = local_cluster(nodes=3, threshold=2)
    with client_for(cluster) as client:
        client.register("leaving", "pw one", b"s" * 32)
        (ciphertext,) = stored_ciphertexts(cluster, 1, "leaving")
        reader = sqlite3.connect(cluster.node(1).dir / "node.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM versions").fetchone()  # holds a snapshot
        try:
            start = time.monotonic()
            client.delete("leaving")  # an erase on every node, node 1 included
            client.register("arriving", "pw two", b"t" * 32)
            took = time.monotonic() - start
            assert stored_ciphertexts(cluster, 1, "leaving") == []  # erased in the database
            assert stored_ciphertexts(cluster, 1, "arriving")  # node 1 took part
            assert ciphertext in node_files(cluster, 1)  # old pages kept for the reader
        finally:
            reader.execute("COMMIT")
            reader.close()
        deadline = time.monotonic() + 30
        while ciphertext in node_files(cluster, 1):
            assert time.monotonic() < deadline, "erased bytes still in node 1's files"
            time.sleep(0.1)
        assert client.recover("arriving", "pw two") == b"t" * 32
    print(f"delete + register with a reader open: {took:.2f} s")
