"""LocalCluster's process handling: pid files, recycled-pid guard, reuse, the fixture itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

from pakr.coordinator.localcluster import (
    ClusterStartError,
    LocalCluster,
    free_ports,
    pid_from_file,
    stop_by_pid_files,
)
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import load_manifest


def _sleeper(marker: Path) -> subprocess.Popen[bytes]:
    # The marker appears in the command line, like a node's --config path does.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time, sys; time.sleep(60)", str(marker)],
        start_new_session=True,
    )
    # Until exec completes, /proc/<pid>/cmdline is still pytest's.
    deadline = time.monotonic() + 10
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    while str(marker).encode() not in cmdline.read_bytes():
        assert time.monotonic() < deadline, "the sleeper did not start"
        time.sleep(0.01)
    return proc


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(1024 <= p < 65536 for p in ports)


def test_pid_file_trusted_only_for_the_process_it_names(tmp_path: Path) -> None:
    marker = tmp_path / "nodes" / "node1" / "node.toml"
    marker.parent.mkdir(parents=True)
    proc = _sleeper(marker)
    try:
        pid_file = marker.parent / "node.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert pid_from_file(pid_file, str(marker)) == proc.pid
        # Same pid, different marker: a recycled pid must never be signalled.
        assert pid_from_file(pid_file, str(tmp_path / "other")) is None
        pid_file.write_text("garbage")
        assert pid_from_file(pid_file, str(marker)) is None
        pid_file.write_text(f"{proc.pid}\n")
        # stop_by_pid_files only kills processes whose command line names the directory.
        assert stop_by_pid_files(tmp_path / "nodes", timeout=5) == 1
        assert proc.wait(timeout=5) == -signal.SIGTERM
        assert not pid_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_open_refuses_a_directory_without_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no local cluster"):
        LocalCluster.open(tmp_path)


def test_fixture_cluster_lifecycle(local_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cluster: LocalCluster = local_cluster(nodes=1, threshold=1)
    manifest = load_manifest(cluster.manifest_path, operator_key=cluster.operator_public_key())
    assert manifest.dev and manifest.threshold == 1 and len(manifest.nodes) == 1
    assert manifest.argon2.memory_kib == 19456
    assert manifest.nodes[0].address == cluster.node(1).address
    assert (cluster.node_dirs[0] / "node.toml").exists()
    assert cluster.tenant_key_path.stat().st_mode & 0o077 == 0
    pid = cluster.node_pid(1)
    assert pid is not None and Path(cluster.node(1).pid_file).read_text().strip() == str(pid)

    # Another handle on the same directory (as `pakr cluster ...` would open it) sees it.
    other = LocalCluster.open(cluster.dir)
    assert other.node_pid(1) == pid
    assert other.kill_node(1) is True
    assert cluster.node_pid(1) is None
    assert other.kill_node(1) is False
    with pytest.raises(ConfigError, match=r"nodes 1\.\.1"):
        cluster.node(2)

    new_pid = cluster.start_node(1)
    assert new_pid != pid
    # Same directory, different shape: refused rather than silently reshaped.
    with pytest.raises(ConfigError, match="already holds a 1-of-1"):
        LocalCluster(cluster.dir, nodes=3, threshold=2).create()
    # Same shape: reuses everything (same node id, same manifest file).
    before = cluster.manifest_path.read_bytes()
    again = LocalCluster(cluster.dir, nodes=1, threshold=1).create()
    assert again.node(1).node_id == cluster.node(1).node_id
    assert cluster.manifest_path.read_bytes() == before
    # A node that cannot start is reported with its log, not waited on forever.
    cluster.kill_node(1)
    config = cluster.node(1).config
    doc = tomllib.loads(config.read_text())
    doc["node"]["bogus"] = 1
    config.write_text(tomli_w.dumps(doc))
    started = time.monotonic()
    with pytest.raises(ClusterStartError, match="bogus"):
        cluster.start_node(1)
    assert time.monotonic() - started < 30


def test_cluster_directory_can_be_moved_and_resumed(local_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    cluster: LocalCluster = local_cluster(nodes=1, threshold=1, with_coordinator=True)
    node_id = cluster.node(1).node_id
    cluster.stop()
    assert cluster.node_pid(1) is None and cluster.coordinator_pid() is None
    moved = tmp_path / "moved"
    shutil.move(str(cluster.dir), moved)
    resumed = LocalCluster.open(moved)
    try:
        resumed.start()
        assert resumed.node(1).node_id == node_id
        assert resumed.node(1).config.is_relative_to(moved)
        assert resumed.coordinator_pid() is not None
        # An interrupted create (node dir present, cluster.json gone) is picked up, not redone.
        resumed.stop()
        (moved / "cluster.json").unlink()
        again = LocalCluster(moved, nodes=1, threshold=1).create()
        assert again.node(1).node_id == node_id
    finally:
        resumed.stop()
        stop_by_pid_files(moved, timeout=5)
