"""End to end on real processes: ``pakr cluster up`` driven by the CLI and the SDK.

One detached 3-of-5 cluster (with a coordinator) is shared by this module; every test uses its
own user so they do not disturb each other, and every test that stops a node starts it again.
Cluster start-ups are few on purpose (each costs seconds): this shared one, one re-run on the
same directory, one foreground ``cluster up`` stopped by SIGTERM, and the demo's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster, stop_by_pid_files
from pakr.proto.errors import ConfigError, InvalidPassword
from pakr.proto.manifest import OperatorKey
from pakr.proto.v1 import coordinator_pb2 as cpb
from pakr.proto.v1 import coordinator_pb2_grpc as cpb_grpc
from tests.cluster.cluster_helpers import last_json, pakr_cli, user_asking

pytestmark = pytest.mark.timeout(180)

MAX_GUESSES = 5


@dataclass
class Running:
    dir: Path
    info: dict[str, object]
    operator_key: str

    @property
    def manifest(self) -> Path:
        return Path(str(self.info["manifest"]))

    @property
    def tenant_key(self) -> Path:
        return Path(str(self.info["tenant_key"]))

    def client(self, **kwargs: object) -> pakr.Client:
        return pakr.Client.from_manifest(
            self.manifest,
            tenant="dev",
            token_provider=pakr.dev_token_provider(self.tenant_key),
            operator_key=self.operator_key,
            deadline=3.0,
            **kwargs,  # type: ignore[arg-type]
        )

    def cluster(self) -> LocalCluster:
        return LocalCluster.open(self.dir)

    def user_asking(self, prefix: str, *, ask: set[int]) -> str:
        """A user id whose recoveries ask nodes ``ask`` first (see ``user_asking``)."""
        return user_asking(self.cluster().manifest(), "dev", prefix, ask=ask)


def _up(directory: Path, *extra: str) -> dict[str, object]:
    done = pakr_cli("cluster", "up", "--dir", str(directory), "--detach", *extra, check=True)
    info = last_json(done.stdout)
    assert isinstance(info, dict)
    return info


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("story") / "cluster"
    try:
        info = _up(directory, "--nodes", "5", "--threshold", "3", "--coordinator")
        operator = OperatorKey.load(directory / "operator.key").public_key_text
        assert info["operator_key"] == operator
        yield Running(directory, info, operator)
    finally:
        pakr_cli("cluster", "down", "--dir", str(directory))
        stop_by_pid_files(directory, timeout=5)


def _wait_reachable(client: pakr.Client, user: str, count: int, timeout: float = 15.0) -> None:
    """Until ``count`` nodes answer (a restarted node is used once the client reconnects)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            report = client.status(user)
            if sum(1 for n in report.nodes if n.reachable) >= count:
                return
        except pakr.ClusterUnavailable:
            pass
        assert time.monotonic() < deadline, f"fewer than {count} nodes reachable"
        time.sleep(0.2)


def test_status_reports_every_node_serving(running: Running) -> None:
    done = pakr_cli("cluster", "status", "--dir", str(running.dir), check=True)
    report = json.loads(done.stdout)
    assert report["serving"] == 5 and report["can_recover"] and report["threshold"] == 3
    assert all(node["pid"] for node in report["nodes"])
    assert report["coordinator"]["pid"]
    node = LocalCluster.open(running.dir).node(3)
    probe = pakr_cli("probe", "--address", node.address, "--cert", str(node.tls_cert))
    assert probe.returncode == 0 and last_json(probe.stdout)["serving"] is True
    # Pinning the wrong certificate fails the handshake.
    other = LocalCluster.open(running.dir).node(1).tls_cert
    probe = pakr_cli("probe", "--address", node.address, "--cert", str(other))
    assert probe.returncode == 1 and last_json(probe.stdout)["serving"] is False


def test_node_killed_mid_recovery_costs_a_guess_but_not_the_secret(running: Running) -> None:
    cluster = running.cluster()
    secret = os.urandom(32)
    user = running.user_asking("crash-mid-recover", ask={2})
    with running.client() as client:
        client.register(user, "pw-1", secret, max_guesses=MAX_GUESSES)
        # Node 2 (one of the t nodes this user's recoveries ask) dies with SIGKILL right after
        # durably counting the guess, before replying: the client asks a spare node instead.
        cluster.kill_node(2)
        cluster.start_node(2, env={"PAKR_CRASH_AT": "recover2.after_commit"})
        _wait_reachable(client, user, 5)
        assert client.recover(user, "pw-1") == secret
        assert cluster.wait_exit(2, timeout=10) is not None
        assert cluster.node_pid(2) is None
        cluster.start_node(2)
        _wait_reachable(client, user, 5)
        report = client.status(user)
        counts = {n.index: n.guesses_remaining for n in report.nodes}
        # The crashed node counted the guess and never saw the unlock: a crash never un-counts.
        assert counts[2] == MAX_GUESSES - 1
        assert all(counts[i] == MAX_GUESSES for i in (1, 3, 4, 5))
        assert client.recover(user, "pw-1") == secret


def test_restarted_node_keeps_users_and_counts(running: Running) -> None:
    secret = os.urandom(16)
    user = running.user_asking("restart-keeps", ask={4})
    with running.client() as client:
        client.register(user, "pw-2", secret, max_guesses=MAX_GUESSES)
        with pytest.raises(InvalidPassword) as wrong:
            client.recover(user, "not-pw-2")
        assert wrong.value.guesses_remaining == MAX_GUESSES - 1
        before = pakr_cli("cluster", "status", "--dir", str(running.dir), check=True)
        pid_before = json.loads(before.stdout)["nodes"][3]["pid"]
        killed = pakr_cli("cluster", "kill-node", "--dir", str(running.dir), "--node", "4")
        assert killed.returncode == 0 and last_json(killed.stdout)["killed"] is True
        started = pakr_cli("cluster", "start-node", "--dir", str(running.dir), "--node", "4")
        assert started.returncode == 0, started.stderr
        assert last_json(started.stdout)["pid"] != pid_before
        _wait_reachable(client, user, 5)
        node4 = next(n for n in client.status(user).nodes if n.index == 4)
        assert node4.registered and node4.guesses_remaining == MAX_GUESSES - 1
        # Only node 4 plus two others: its share is still good.
        cluster = running.cluster()
        cluster.kill_node(1)
        cluster.kill_node(2)
        try:
            assert client.recover(user, "pw-2") == secret
        finally:
            cluster.start_node(1)
            cluster.start_node(2)


def test_coordinator_down_does_not_affect_recovery(running: Running, tmp_path: Path) -> None:
    cluster = running.cluster()
    address = cluster.coordinator_address
    assert address is not None
    cert = cluster.coordinator_cert_path.read_bytes()
    channel = grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(root_certificates=cert),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    with channel:
        stub = cpb_grpc.CoordinatorStub(channel)
        health = stub.ClusterHealth(cpb.ClusterHealthRequest(), timeout=10)
        assert health.can_recover and len(health.nodes) == 5
        assert all(n.serving for n in health.nodes), [n.error for n in health.nodes]
        served = stub.GetManifest(cpb.GetManifestRequest(), timeout=5).manifest
        assert served == running.manifest.read_bytes()
    cert_path = str(cluster.coordinator_cert_path)
    done = pakr_cli("coordinator", "health", "--address", address, "--cert", cert_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["serving"] == 5
    fetched = tmp_path / "fetched.json"
    done = pakr_cli(
        "coordinator", "fetch-manifest", "--address", address, "--cert", cert_path,
        "--operator-key", running.operator_key, "--out", str(fetched),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(fetched.read_text()) == json.loads(running.manifest.read_text())
    done = pakr_cli(
        "coordinator", "fetch-manifest", "--address", address, "--cert", cert_path,
        "--operator-key", OperatorKey.generate().public_key_text, "--out", str(fetched) + "2",
    )  # fmt: skip
    assert done.returncode == 2 and "different operator key" in done.stderr
    secret = os.urandom(24)
    with running.client() as client:
        client.register("coordinator-down", "pw-3", secret)
        assert cluster.stop_coordinator(signal.SIGKILL)
        assert cluster.coordinator_pid() is None
        done = pakr_cli("coordinator", "health", "--address", address, "--cert", cert_path)
        assert done.returncode == 5 and "did not answer" in done.stderr
        try:
            assert client.recover("coordinator-down", "pw-3") == secret
            client.register("coordinator-down", "pw-4", secret, if_exists="replace")
            assert client.recover("coordinator-down", "pw-4") == secret
        finally:
            cluster.start_coordinator()


def test_tampered_manifest_refused_by_cli_and_sdk(running: Running, tmp_path: Path) -> None:
    tampered = tmp_path / "manifest.json"
    document = json.loads(running.manifest.read_text())
    document["manifest"]["nodes"][0]["address"] = "127.0.0.1:1"
    tampered.write_text(json.dumps(document))
    done = pakr_cli("manifest", "verify", str(tampered), "--operator-key", running.operator_key)
    assert done.returncode == 2 and "signature is invalid" in done.stderr
    with pytest.raises(ConfigError, match="signature"):
        running.client().close()  # the genuine one loads
        pakr.Client.from_manifest(
            tampered,
            tenant="dev",
            token_provider=pakr.dev_token_provider(running.tenant_key),
            operator_key=running.operator_key,
        )
    with pytest.raises(ConfigError, match="no operator key pinned"):
        pakr.Client.from_manifest(
            running.manifest,
            tenant="dev",
            token_provider=pakr.dev_token_provider(running.tenant_key),
        )
    # Re-signed by another key: fine on its own, refused once the operator is pinned.
    from pakr.proto.manifest import parse_manifest, sign_manifest

    forged = sign_manifest(parse_manifest(document["manifest"]), OperatorKey.generate())
    tampered.write_text(json.dumps(forged))
    assert pakr_cli("manifest", "verify", str(tampered)).returncode == 0
    done = pakr_cli("manifest", "verify", str(tampered), "--operator-key", running.operator_key)
    assert done.returncode == 2 and "different operator key" in done.stderr
    with pytest.raises(ConfigError, match="different operator key"):
        pakr.Client.from_manifest(
            tampered,
            tenant="dev",
            token_provider=pakr.dev_token_provider(running.tenant_key),
            operator_key=running.operator_key,
        )
    # The CLI user commands refuse it too (exit 2: config).
    done = pakr_cli(
        "status", "--manifest", str(tampered), "--user", "x",
        "--token-key", str(running.tenant_key), "--operator-key", running.operator_key,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    # Without a pin (not a manifest `pakr cluster up` wrote) the CLI refuses before reading it.
    done = pakr_cli(
        "status", "--manifest", str(tampered), "--user", "x", "--token-key", str(running.tenant_key)
    )
    assert done.returncode == 2 and "not pinned" in done.stderr
    # The forgery in place of the real manifest: the pin `cluster up` recorded refuses it.
    genuine = running.manifest.read_bytes()
    try:
        running.manifest.write_text(json.dumps(forged))
        done = pakr_cli(
            "status", "--manifest", str(running.manifest), "--user", "x",
            "--token-key", str(running.tenant_key),
        )  # fmt: skip
        assert done.returncode == 2 and "different operator key" in done.stderr
    finally:
        running.manifest.write_bytes(genuine)


def test_readme_commands_need_no_pin_flag(running: Running) -> None:
    """`pakr cluster up` pinned its operator key for its manifest: no --operator-key needed."""
    done = pakr_cli(
        "status", "--manifest", str(running.manifest), "--user", "nobody-yet",
        "--token-key", str(running.tenant_key),
    )  # fmt: skip
    assert done.returncode == 4, done.stderr  # reached the nodes: not registered


def test_cli_refuses_a_manifest_rollback(running: Running, tmp_path: Path) -> None:
    """The CLI remembers the highest serial per operator key; an older manifest is refused."""
    from pakr.proto.manifest import parse_manifest, sign_manifest

    current = parse_manifest(json.loads(running.manifest.read_text())["manifest"])
    operator = OperatorKey.load(running.dir / "operator.key")
    newer = tmp_path / "newer.json"
    newer.write_text(
        json.dumps(sign_manifest(replace(current, serial=current.serial + 1), operator))
    )
    env = {"PAKR_STATE_DIR": str(tmp_path / "state")}
    args = ["--user", "nobody-yet", "--token-key", str(running.tenant_key)]
    args += ["--operator-key", running.operator_key]
    done = pakr_cli("status", "--manifest", str(running.manifest), *args, env=env)
    assert done.returncode == 4, done.stderr
    done = pakr_cli("status", "--manifest", str(newer), *args, env=env)
    assert done.returncode == 4, done.stderr
    done = pakr_cli("status", "--manifest", str(running.manifest), *args, env=env)
    assert done.returncode == 2 and "rollback" in done.stderr
    done = pakr_cli("status", "--manifest", str(newer), *args, "--min-serial", "99", env=env)
    assert done.returncode == 2 and "rollback" in done.stderr


def test_cluster_down_then_up_again_reuses_keys_and_data(running: Running) -> None:
    secret = os.urandom(32)
    with running.client() as client:
        client.register("survives-restart", "pw-5", secret)
    manifest_before = running.manifest.read_bytes()
    done = pakr_cli("cluster", "down", "--dir", str(running.dir), check=True)
    assert last_json(done.stdout)["stopped"] == 6  # five nodes and the coordinator
    assert all(pid is None for pid in running.cluster().running().values())
    info = _up(running.dir)
    assert info["manifest"] == str(running.manifest)
    assert running.manifest.read_bytes() == manifest_before  # same nodes, same signed manifest
    with running.client() as client:
        assert client.recover("survives-restart", "pw-5") == secret
    assert running.cluster().coordinator_pid() is not None


def test_foreground_cluster_up_stops_children_on_sigterm(cluster_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pakr.coordinator", "cluster", "up", "--dir", str(cluster_dir),
         "--nodes", "3", "--threshold", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        assert Path(str(info["manifest"])).exists()
        pids = [pid for pid in LocalCluster.open(cluster_dir).running().values()]
        assert len(pids) == 3 and all(pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for pid in pids:
            assert pid is not None
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _free_base_port() -> int:
    """A base port P with P+1..P+5 and P+101..P+105 free right now."""
    from pakr.coordinator.localcluster.supervisor import port_is_free

    for base in range(20000, 60000, 997):
        if all(port_is_free("127.0.0.1", base + i) for i in (*range(1, 6), *range(101, 106))):
            return base
    raise AssertionError("no free port range")


def test_demo_story() -> None:
    base = _free_base_port()
    done = subprocess.run(
        [sys.executable, "-m", "pakr.coordinator", "demo", "--base-port", str(base)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every step behaved as stated" in done.stdout
    assert "ClusterUnavailable" in done.stdout
    assert "4 guess(es) remaining" in done.stdout
    assert f"node 1  127.0.0.1:{base + 1}  id" in done.stdout  # --base-port honoured
    assert "connection refused (is the node running?)" in done.stdout  # short reasons
    assert shutil.which("true")  # sanity: the environment can spawn processes
