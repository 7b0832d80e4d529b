"""Issue 17 against real node processes: what a user and an operator meet in their first hour.

Each test drives the CLI (or the SDK) as a person would and checks the exit code and the
exact first line of what they read. One 2-of-3 cluster is shared by the module; tests that
stop nodes start them again, and the ``cluster up`` tests use their own directories.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pakr
from pakr.coordinator.cli import main
from pakr.coordinator.localcluster import LocalCluster
from tests.cluster.cluster_helpers import pakr_cli

pytestmark = pytest.mark.timeout(180)

ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def three(module_local_cluster: ClusterFactory) -> LocalCluster:
    return module_local_cluster(nodes=3, threshold=2)


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """``pakr ARGS`` in this process → (exit code, stdout, stderr); ``tty=True`` makes stdout
    a terminal (human output)."""

    def call(args: list[str], stdin: str = "", *, tty: bool = False) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        monkeypatch.setattr(sys.stdout, "isatty", lambda: tty, raising=False)
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, err

    return call


def common(cluster: LocalCluster) -> list[str]:
    return [
        "--manifest", str(cluster.manifest_path), "--token-key", str(cluster.tenant_key_path),
        "--operator-key", cluster.operator_public_key(),
    ]  # fmt: skip


def client_for(cluster: LocalCluster, **kwargs: Any) -> pakr.Client:
    return pakr.Client.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        **kwargs,
    )


class nodes_down:  # noqa: N801 - reads as a phrase
    def __init__(self, cluster: LocalCluster, *indices: int) -> None:
        self.cluster, self.indices = cluster, indices

    def __enter__(self) -> None:
        for index in self.indices:
            self.cluster.kill_node(index)

    def __exit__(self, *exc: object) -> None:
        for index in self.indices:
            self.cluster.start_node(index)


# -- item 3: cluster unavailable, one short reason per node, the next step ---------------------


def test_unavailable_is_short_per_node_with_next_step(three: LocalCluster, run: Any) -> None:
    args = [*common(three), "--user", "uma"]
    assert run(["register", *args, "--generate", "8", "--password-stdin"], "pw\n")[0] == 0
    with nodes_down(three, 1, 2), client_for(three, deadline=2) as client:
        code, _, err = run(["recover", *args, "--password-stdin", "--deadline", "2"], "pw\n")
        lines = err.splitlines()
        assert code == 5
        assert lines[0] == "pakr: cluster unavailable: 1 node(s) answered, 2 needed"
        names = {n.index: n.ref.name for n in three.manifest().nodes}
        assert lines[1:3] == [
            f"  {names[1]}: connection refused (is the node running?)",
            f"  {names[2]}: connection refused (is the node running?)",
        ]
        assert lines[3] == (
            "pakr: next: check that the nodes run and are reachable (`pakr cluster status"
            f" --dir {three.dir}`); --verbose shows each node's full error"
        )
        assert all(len(line) < 100 for line in lines[:3])
        code, _, err = run(["recover", *args, "--password-stdin", "--verbose"], "pw\n")
        assert code == 5 and "Connection refused" in err.splitlines()[2]
        # The SDK: short reasons and the full detail as attributes.
        with pytest.raises(pakr.ClusterUnavailable) as info:
            client.recover("uma", "pw")
        error = info.value
        assert error.summary == "cluster unavailable: 1 node(s) answered, 2 needed"
        assert error.reasons[names[1]] == "connection refused (is the node running?)"
        assert "Connection refused" in error.details[names[1]]
        assert (error.answered, error.needed) == (1, 2)
        # item 14: `cluster status` exits 5 when the cluster cannot recover.
        code, out, _ = run(["cluster", "status", "--dir", str(three.dir)], tty=True)
        assert code == 5
        assert (
            out.splitlines()[0] == f"1 of 3 nodes serving, 2 needed: CANNOT recover ({three.dir})"
        )
    code, out, _ = run(["cluster", "status", "--dir", str(three.dir), "--json"])
    assert code == 0 and json.loads(out)["can_recover"] is True


# -- item 4: concurrent recoveries of one user --------------------------------------------------


def test_concurrent_recoveries_of_one_user_all_succeed(three: LocalCluster) -> None:
    with client_for(three) as client:
        client.register("vic", "pw", b"secret")
        results: list[object] = []

        def recover() -> None:
            try:
                results.append(client.recover("vic", "pw"))
            except pakr.PakrError as exc:
                results.append(exc)

        threads = [threading.Thread(target=recover) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert results == [b"secret"] * 3


def test_a_recovery_racing_another_client_is_a_retryable_conflict(three: LocalCluster) -> None:
    """Two clients (two processes, say) recover one user at once: each node keeps one open
    attempt per user, so one may lose; it gets a Conflict saying to try again."""
    with client_for(three) as first, client_for(three) as second:
        first.register("wes", "pw", b"secret")
        outcomes: list[object] = []
        barrier = threading.Barrier(2)

        def go(client: pakr.Client) -> None:
            barrier.wait()
            try:
                outcomes.append(client.recover("wes", "pw"))
            except pakr.PakrError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=go, args=(c,)) for c in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for outcome in outcomes:
            assert outcome == b"secret" or isinstance(outcome, pakr.Conflict), outcome
        assert first.recover("wes", "pw") == b"secret"  # a retry works


# -- item 5: Ctrl-C -----------------------------------------------------------------------------


def test_ctrl_c_while_the_cli_loads_prints_one_line() -> None:
    """SIGINT right after the entry module is loaded, while the rest of the CLI loads."""
    program = (
        "import os, signal; import pakr.coordinator.entry as entry;"
        " os.kill(os.getpid(), signal.SIGINT); entry.run()"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, "status"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (130, "\npakr: interrupted\n")


@pytest.mark.parametrize("after", [0.5, 1.0])
def test_ctrl_c_prints_no_traceback(three: LocalCluster, after: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pakr.coordinator", "recover", *common(three), "--user", "x",
         "--password-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err)
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] == "pakr: interrupted"


# -- items 10, 11: register refuses a registered user; delete of an unknown user ----------------


def test_register_refuses_a_registered_user_unless_replace(three: LocalCluster, run: Any) -> None:
    args = [*common(three), "--user", "ann", "--password-stdin", "--secret-stdin"]
    code, _, err = run(["register", *args], "0102\npw\n")
    assert code == 0 and err.splitlines()[0] == "registered a 2-byte secret for 'ann'"
    with client_for(three) as client:
        version = client.status("ann").version
        assert version is not None
        code, _, err = run(["register", *args], "0304\npw2\n")
        assert code == 2
        assert err.splitlines()[0] == (
            f"pakr: 'ann' already has a secret (version {version[:12]}…); nothing was changed."
            " To replace it (the old secret is then lost) pass --replace (SDK:"
            ' if_exists="replace")'
        )
        assert client.recover("ann", "pw") == b"\x01\x02"  # untouched
        code, out, err = run(["register", *args, "--replace", "--json"], "0304\npw2\n")
        assert code == 0
        assert err.splitlines()[0] == (
            f"registered a 2-byte secret for 'ann', replacing the earlier secret (version"
            f" {version[:12]}…)"
        )
        assert json.loads(out)["replaced"] == version
        assert client.recover("ann", "pw2") == b"\x03\x04"
        # The SDK (another user: each node rate-limits every user's requests).
        client.register("ann2", "pw", b"one")
        with pytest.raises(pakr.AlreadyRegistered) as info:
            client.register("ann2", "pw3", b"x")
        assert info.value.version == client.status("ann2").version
        result = client.register("ann2", "pw3", b"x", if_exists="replace")
        assert result.replaced == info.value.version and result.version != result.replaced
        # A password change is not affected by the guard.
        client.change_password("ann2", "pw3", "pw4")
        assert client.recover("ann2", "pw4") == b"x"


def test_delete_of_an_unknown_user_is_not_registered(three: LocalCluster, run: Any) -> None:
    args = [*common(three), "--user", "ghost"]
    code, _, err = run(["delete", *args])
    assert code == 4
    assert err.splitlines()[0] == (
        "pakr: no secret is registered for 'ghost' (never registered, or already deleted);"
        " nothing was deleted"
    )
    assert run(["register", *args, "--generate", "4", "--password-stdin"], "pw\n")[0] == 0
    code, _, err = run(["delete", *args])
    assert (code, err.splitlines()[0]) == (0, "deleted the secret of 'ghost'")
    assert run(["delete", *args])[0] == 4


# -- item 16: the audit log ---------------------------------------------------------------------


def test_audit_cli_and_sdk(three: LocalCluster, run: Any) -> None:
    args = [*common(three), "--user", "aud"]
    pw = "--password-stdin"
    assert run(["register", *args, "--generate", "4", "--max-guesses", "1", pw], "pw\n")[0] == 0
    assert run(["recover", *args, pw, "--hex"], "pw\n")[0] == 0
    assert run(["recover", *args, pw], "wrong\n")[0] == 3  # the only guess: locked out
    assert run(["recover", *args, pw], "pw\n")[0] == 8  # LockedOut: its own exit code
    # The SDK asks no node once no guess is left; a client that still tries (here by hand) is
    # refused, and the node audits that.
    import os

    from pakr.proto.errors import NodeRefusal
    from pakr.proto.group import Element
    from pakr.proto.messages import Recover2, UserRef

    with client_for(three) as client:
        user = UserRef(three.tenant, "aud")
        for node in three.manifest().nodes:  # a node the recoveries asked: no guess left
            transport = client.async_client.transport(node.node_id)
            token = pakr.dev_token_provider(three.tenant_key_path)("aud", node.id_hex)
            state = client._loop.run(transport.recover1(user, token, timeout=5))
            if state.committed is not None and state.committed.guesses_remaining == 0:
                break
        else:
            raise AssertionError("no node counted the wrong guess")
        request = Recover2(state.committed.version, os.urandom(16), Element.generator())
        call = transport.recover2(user, token, request, timeout=5)
        with pytest.raises(NodeRefusal) as refusal:
            client._loop.run(call)
        assert refusal.value.kind.name in ("NO_GUESSES", "LOCKED"), refusal.value
    code, out, _ = run(["audit", *args, "--json", "--all"])
    assert code == 0
    events = json.loads(out)["events"]
    ops = {e["op"] for e in events}
    # ("locked" follows once the last guess's grace period has passed: not waited for here.)
    assert {"registered", "guess_used", "share_released", "refused"} <= ops, ops
    refused = [e["outcome"] for e in events if e["op"] == "refused"]
    assert refused in (["no_guesses (Recover2)"], ["locked (Recover2)"])
    assert {e["user_id"] for e in events} == {"aud"}
    code, out, _ = run(["audit", *args, "--limit", "3"], tty=True)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["time", "(UTC)", "node", "user", "event", "outcome"]
    assert lines[-1].startswith("cursor: ") and lines[-1].endswith(
        "(more: pass --cursor to continue)"
    )
    # The SDK pages through the same events with the cursor, and reads the whole tenant.
    with client_for(three) as client:
        paged: list[pakr.AuditEvent] = []
        cursor = None
        for _ in range(100):
            page = client.audit("aud", cursor=cursor, limit=4)
            paged.extend(page.events)
            cursor = page.cursor
            if not page.more:
                break
        assert [(e.node, e.id) for e in paged] == [(e["node"], e["id"]) for e in events]
        tenant = client.audit(limit=1000)  # the whole tenant: every user's events
        assert "aud" in {e.user_id for e in tenant.events}
        assert {(e.node, e.id) for e in paged} <= {(e.node, e.id) for e in tenant.events}
        assert client.audit("aud", cursor=cursor).events == ()


# -- items 6-9: `pakr cluster up` behaves like a tool ---------------------------------------


def test_cluster_up_progress_ports_key_and_already_running(cluster_dir: Path) -> None:
    shape = ["--nodes", "3", "--threshold", "2"]
    done = pakr_cli("cluster", "up", "--dir", str(cluster_dir), *shape, "--detach", check=True)
    err = done.stderr.splitlines()
    # item 9: progress while starting, metrics ports, the operator key kept in cluster.json
    assert [line.split(" (")[0] for line in err[:3]] == [
        "pakr: node 1/3 serving",
        "pakr: node 2/3 serving",
        "pakr: node 3/3 serving",
    ]
    assert err[3] == f"pakr: 2-of-3 cluster up in {cluster_dir.resolve()}"
    info = json.loads(done.stdout)
    state = json.loads((cluster_dir / "cluster.json").read_text())
    assert state["operator_key"] == info["operator_key"]
    metrics = [line for line in err if line.startswith("  metrics:")]
    ports = [a.rpartition(":")[2] for a in info["metrics"].values()]
    assert metrics and all(f"#{i + 1}:{p}" in metrics[0] for i, p in enumerate(ports))
    pids = info["pids"]

    # item 6: in the foreground on a running cluster: say so, leave it alone, exit at once.
    done = pakr_cli("cluster", "up", "--dir", str(cluster_dir), timeout=30)
    assert done.returncode == 0
    listed = ", ".join(str(pids[k]) for k in sorted(pids))
    assert done.stderr.splitlines()[0] == (
        f"pakr: the cluster in {cluster_dir.resolve()} is already running (pids {listed});"
        " leaving it alone"
    )
    assert {str(i): p for i, p in LocalCluster.open(cluster_dir).running().items()} == pids

    # item 7: --base-port cannot move an existing cluster: refused, the flag named.
    done = pakr_cli("cluster", "up", "--dir", str(cluster_dir), "--base-port", "47000")
    node_ports = ", ".join(a.rpartition(":")[2] for a in info["nodes"].values())
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        f"pakr: {cluster_dir} already holds a cluster on ports {node_ports}; --base-port 47000"
        " cannot move it: omit --base-port, or use a fresh --dir"
    )
    # ... and a stopped node whose port another program took is named, with what to do.
    pakr_cli("cluster", "kill-node", "--dir", str(cluster_dir), "--node", "2", check=True)
    host, _, port = info["nodes"]["2"].rpartition(":")
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        done = pakr_cli("cluster", "up", "--dir", str(cluster_dir), "--detach")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "pakr: nodes 1, 3 already running; left alone"
    assert done.stderr.splitlines()[1] == (
        f"pakr: port {port} of node 2 ({host}:{port}) is taken by another program: stop it,"
        " or create a new cluster in a fresh --dir (optionally with --base-port)"
    )
    assert LocalCluster.open(cluster_dir).node_pid(1) == pids["1"]  # the others left alone


def _held_port() -> Iterator[tuple[socket.socket, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock, sock.getsockname()[1]
    sock.close()


def test_refused_shapes_leave_nothing_behind(tmp_path: Path) -> None:
    # item 8: a refused shape creates nothing, and says which thresholds would do.
    fresh = tmp_path / "fresh"
    done = pakr_cli("cluster", "up", "--dir", str(fresh), "--threshold", "1", "--detach")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "pakr: cluster threshold 1 must exceed half of the 5 nodes (so at most one version"
        " can be held by t nodes): use 3..5"
    )
    assert not fresh.exists()
    # A failure half-way through creating removes what it made, and keeps what was there.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    done = pakr_cli(
        "cluster", "up", "--dir", str(existing), "--nodes", "3", "--tenant", "no:colon",
        "--detach",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    # item 7: a taken --base-port port is refused before anything is created.
    for sock, port in _held_port():
        base = port - 1
        done = pakr_cli(
            "cluster", "up", "--dir", str(fresh), "--nodes", "3", "--threshold", "2",
            "--base-port", str(base), "--detach",
        )  # fmt: skip
        assert done.returncode == 2
        assert done.stderr.splitlines()[0] == (
            f"pakr: port {port} (node 1) is in use: pick another --base-port, or omit it to"
            " use free ports"
        )
        assert not fresh.exists()
        del sock


# -- item 18: the README's first steps, in the order a reader takes them -----------------------


def test_readme_cluster_then_snippet_prints_what_it_recovered(
    three: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert readme.index("pakr cluster up --dir cluster") < readme.index("```python")
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("cluster/manifest.json", str(three.manifest_path))
    snippet = snippet.replace("cluster/tenants/dev.key", str(three.tenant_key_path))
    snippet = snippet.replace("cluster/operator.pub", str(three.dir / "operator.pub"))
    snippet = snippet.replace('"alice"', '"readme-alice"')
    exec(compile(snippet, "README.md", "exec"), {})  # the README's own code
    assert capsys.readouterr().out == "recovered " + "01" * 32 + "\n"
