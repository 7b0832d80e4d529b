"""deploy/docker-compose.yml as written, run for real: five node containers and a coordinator,
driven from the host with pakr's own CLI (a thin shell over the SDK) at the addresses the
manifest names, exactly as deploy/README.md tells an operator to.

The cluster is set up by the project's own commands (the `init` service runs
deploy/compose/init.sh: ``pakr node init``, ``pakr manifest create``, ...); the test reads what
init publishes (the manifest, the tenant key, the operator key it prints) and hard-codes no
internals, so changes to what a node directory holds reach it through those commands.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_live.dockerctl import (
    NODE_UID,
    compose,
    container,
    docker,
    inspect,
    project_leftovers,
    wait_healthy,
)

NODES = [f"node{i}" for i in range(1, 6)]
LONG_RUNNING = [*NODES, "coordinator"]
START_TIMEOUT = 240.0
PAKR = str(Path(sys.executable).parent / "pakr")
EXIT_INVALID_PASSWORD = 3


@dataclass
class Cluster:
    manifest: Path
    token_key: Path
    operator_key: str

    def cli(self, command: str, *args: str, password: str | None = None) -> Any:
        argv = [PAKR, command, "--manifest", str(self.manifest), "--token-key",
                str(self.token_key), "--operator-key", self.operator_key, *args]  # fmt: skip
        if password is not None:
            argv.append("--password-stdin")
        start = time.monotonic()
        done = subprocess.run(
            argv,
            input=None if password is None else password + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        done.seconds = time.monotonic() - start  # type: ignore[attr-defined]
        return done

    def status(self, user: str) -> dict[str, Any]:
        done = self.cli("status", "--user", user, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert isinstance(report, dict)
        return report


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, report: dict[str, Any]) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("compose-cluster")
    compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)  # a stale run
    start = time.monotonic()
    try:
        compose("up", "--detach", "--no-build", timeout=START_TIMEOUT)
        wait_healthy(LONG_RUNNING, timeout=START_TIMEOUT)
        report["cluster start (compose up -> 5 nodes + coordinator healthy), s"] = round(
            time.monotonic() - start, 1
        )
        init = container("init")
        state = inspect(init)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0, state
        logs = docker("logs", init)
        found = re.search(r"operator public key \(pin it in clients\): (\S+)", logs)
        assert found, logs
        docker("cp", f"{init}:/out/manifest.json", str(work / "manifest.json"))
        docker("cp", f"{init}:/out/demo.key", str(work / "demo.key"))
        (work / "demo.key").chmod(0o600)
        yield Cluster(work / "manifest.json", work / "demo.key", found.group(1))
    finally:
        compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)
        leftovers = project_leftovers()
        assert not any(leftovers.values()), f"compose down left {leftovers}"


def test_every_service_is_health_checked_and_healthy(
    cluster: Cluster, report: dict[str, Any]
) -> None:
    for service in LONG_RUNNING:
        config = inspect(container(service))["Config"]
        assert config.get("Healthcheck", {}).get("Test"), f"{service} has no health check"
        assert inspect(container(service))["State"]["Health"]["Status"] == "healthy"
    # A pakr process's own cold start (interpreter, imports) in a running container, without
    # the storage driver's cost of creating a container.
    timings = []
    for _ in range(3):
        start = time.monotonic()
        docker("exec", container("node1"), "pakr", "--help")
        timings.append(time.monotonic() - start)
    report["pakr process start in a running container (docker exec pakr --help), s"] = round(
        min(timings), 2
    )
    # Nothing the CLI or the probes ran is left in the node's small /tmp.
    leftover = docker("exec", container("node1"), "ls", "-A", "/tmp").split()
    assert leftover == [], leftover
    # The one-shot init service is done, and a second `up` does not re-initialise anything.
    manifest_before = cluster.manifest.read_bytes()
    compose("up", "--detach", "--no-build", "init", timeout=120)
    deadline = time.monotonic() + 60
    while inspect(container("init"))["State"]["Status"] != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert "already initialised" in docker("logs", "--tail", "5", container("init"))
    again = cluster.manifest.parent / "again.json"
    docker("cp", f"{container('init')}:/out/manifest.json", str(again))
    assert again.read_bytes() == manifest_before


def _processes(cid: str) -> list[tuple[int, int, str]]:
    """(uid, gid, command) of every process in the container, as the host's ps sees them."""
    rows = docker("top", cid, "-eo", "pid,uid,gid,args").splitlines()[1:]
    out = []
    for row in rows:
        _, uid, gid, args = row.split(None, 3)
        out.append((int(uid), int(gid), args))
    return out


def test_containers_run_unprivileged_read_only_with_private_volumes(cluster: Cluster) -> None:
    volumes_by_service: dict[str, set[str]] = {}
    for service in LONG_RUNNING:
        cid = container(service)
        info = inspect(cid)
        host = info["HostConfig"]
        processes = _processes(cid)
        assert processes
        assert all((uid, gid) == (NODE_UID, NODE_UID) for uid, gid, _ in processes), processes
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] or "ALL" in host["CapDrop"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        status = docker("exec", cid, "cat", "/proc/1/status")
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        # A write to the root file system fails; /tmp (tmpfs) and the node's volume accept one.
        denied = docker("exec", cid, "sh", "-c", "touch /opt/x 2>&1; echo $?", check=False)
        assert "Read-only file system" in denied, denied
        volumes_by_service[service] = {m["Name"] for m in info["Mounts"] if m["Type"] == "volume"}
    for i, service in enumerate(NODES, start=1):
        cid = container(service)
        own = f"/var/lib/pakr/node{i}"
        # The volume is the node's alone: mode 0700, owned by the pakr user, seen by no one else.
        mode = docker("exec", cid, "stat", "-c", "%a %u %g", own).split()
        assert mode == ["700", str(NODE_UID), str(NODE_UID)], mode
        assert (
            docker("exec", cid, "sh", "-c", f"touch {own}/.w && rm {own}/.w; echo ok").strip()
            == "ok"
        )
        (volume,) = volumes_by_service[service]
        others = [s for s, names in volumes_by_service.items() if volume in names and s != service]
        assert others == [], f"{volume} is also mounted by {others}"
        for j in range(1, 6):
            if j != i:  # another node's directory in this container is the image's empty one
                listing = docker("exec", cid, "ls", "-A", f"/var/lib/pakr/node{j}")
                assert listing.strip() == "", listing
    # The coordinator mounts nothing it can write, and never the operator key.
    coordinator = inspect(container("coordinator"))
    assert all(not m["RW"] for m in coordinator["Mounts"]), coordinator["Mounts"]
    assert not any(m["Destination"].endswith("/keys") for m in coordinator["Mounts"])


def _reachable(status: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {n["index"]: n for n in status["nodes"] if n["reachable"]}


def test_register_recover_kill_a_node_recover_restart(
    cluster: Cluster, report: dict[str, Any]
) -> None:
    user = "alice-" + secrets.token_hex(4)
    password = "correct horse " + secrets.token_hex(4)
    done = cluster.cli("register", "--user", user, "--generate", "32", password=password)
    assert done.returncode == 0, done.stdout + done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    assert len(bytes.fromhex(secret)) == 32
    report["register through the containers (CLI wall time), s"] = round(done.seconds, 2)

    done = cluster.cli("recover", "--user", user, "--hex", password=password)
    assert done.returncode == 0 and done.stdout.strip() == secret, done.stdout + done.stderr
    report["recover through the containers, 5 of 5 up (CLI wall time), s"] = round(done.seconds, 2)

    # A wrong guess is counted by the nodes it reached; pick one of them to kill, so the count
    # must survive a SIGKILL of its container (it lives on the node's volume).
    wrong = cluster.cli("recover", "--user", user, "--hex", password="wrong " + password)
    assert wrong.returncode == EXIT_INVALID_PASSWORD, wrong.stdout + wrong.stderr
    before = _reachable(cluster.status(user))
    assert len(before) == 5
    full = max(n["guesses_remaining"] for n in before.values())
    spent = [i for i, n in before.items() if n["guesses_remaining"] < full]
    assert spent, before
    victim_index = spent[0]
    victim = f"node{victim_index}"
    docker("kill", container(victim))
    assert inspect(container(victim))["State"]["Running"] is False

    done = cluster.cli("recover", "--user", user, "--hex", password=password)
    assert done.returncode == 0 and done.stdout.strip() == secret, done.stdout + done.stderr
    report["recover with one node container killed (4 of 5, CLI wall time), s"] = round(
        done.seconds, 2
    )
    during = cluster.status(user)
    assert victim_index not in _reachable(during) and len(_reachable(during)) == 4

    start = time.monotonic()
    compose("start", victim, timeout=120)
    wait_healthy([victim], timeout=120)
    report["killed node container restart -> healthy, s"] = round(time.monotonic() - start, 1)
    after = _reachable(cluster.status(user))
    assert len(after) == 5
    # The count the killed node had is still there (a correct recovery may reset it to full).
    assert after[victim_index]["guesses_remaining"] in (
        before[victim_index]["guesses_remaining"],
        full,
    )
    done = cluster.cli("recover", "--user", user, "--hex", password=password)
    assert done.returncode == 0 and done.stdout.strip() == secret, done.stdout + done.stderr
    timings = []
    for _ in range(3):
        done = cluster.cli("recover", "--user", user, "--hex", password=password)
        assert done.returncode == 0 and done.stdout.strip() == secret
        timings.append(done.seconds)
    report["recover through the containers after restart, best of 3 (CLI wall time), s"] = round(
        min(timings), 2
    )
