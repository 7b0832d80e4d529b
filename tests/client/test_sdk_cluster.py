"""The SDK against real node processes (3-of-5 and 2-of-3 local clusters over pinned TLS).

One cluster per shape is shared by the module (start-ups cost seconds); tests use distinct
user ids and restart any node they stop, so they do not disturb each other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster

ClusterFactory = Callable[..., LocalCluster]  # module_local_cluster (tests/conftest.py)

SECRET = bytes(range(64))

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def five(module_local_cluster: ClusterFactory) -> LocalCluster:
    return module_local_cluster(nodes=5, threshold=3)


@pytest.fixture(scope="module")
def three(module_local_cluster: ClusterFactory) -> LocalCluster:
    return module_local_cluster(nodes=3, threshold=2)


def client_for(cluster: LocalCluster, **kwargs: Any) -> pakr.Client:
    return pakr.Client.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        **kwargs,
    )


def async_client_for(cluster: LocalCluster, **kwargs: Any) -> pakr.AsyncClient:
    return pakr.AsyncClient.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        **kwargs,
    )


class nodes_down:  # noqa: N801 - reads as a phrase: `with nodes_down(cluster, 1, 2):`
    """Kill nodes for the block, restart them after (even when the block fails)."""

    def __init__(self, cluster: LocalCluster, *indices: int) -> None:
        self.cluster = cluster
        self.indices = indices

    def __enter__(self) -> None:
        for index in self.indices:
            self.cluster.kill_node(index)

    def __exit__(self, *exc: object) -> None:
        for index in self.indices:
            self.cluster.start_node(index)


def test_sync_face_register_recover_change_delete(five: LocalCluster) -> None:
    with client_for(five) as client:
        client.register("sync-alice", "correct horse", SECRET)
        assert client.recover("sync-alice", "correct horse") == SECRET
        client.change_password("sync-alice", "correct horse", "battery staple")
        assert client.recover("sync-alice", "battery staple") == SECRET
        with pytest.raises(pakr.InvalidPassword):
            client.recover("sync-alice", "correct horse")
        client.delete("sync-alice")
        with pytest.raises(pakr.NotRegistered):
            client.recover("sync-alice", "battery staple")


async def test_async_face_register_recover(five: LocalCluster) -> None:
    async with async_client_for(five) as client:
        await client.register("async-bob", "pw", SECRET[:16])
        assert await client.recover("async-bob", "pw") == SECRET[:16]
    with client_for(five) as sync_client:  # the other face reads what this one wrote
        assert sync_client.recover("async-bob", "pw") == SECRET[:16]


# Counting and lockout, t-of-n with nodes down, a forged evaluation named, 2-of-3: SDK
# decisions that need no node processes, tested with pakr.testing in tests/client/test_testing.py.


CliRunner = Callable[[list[str], str], tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run ``pakr ARGS`` in this process with ``stdin`` (fast); → (exit code, out, err)."""
    import io
    import sys

    from pakr.coordinator.cli import main

    def run(args: list[str], stdin: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_cli_process(args: list[str], stdin: str) -> tuple[int, str, str]:
    """Run the real ``pakr`` entry point as a child process."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pakr.coordinator", *args],
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_cli_exit_codes(five: LocalCluster, cli: CliRunner, tmp_path: Any) -> None:
    common = ["--manifest", str(five.manifest_path), "--token-key", str(five.tenant_key_path)]
    common += ["--operator-key", five.operator_public_key()]
    user = ["--user", "gina"]
    code, out, err = run_cli_process(
        ["register", *common, *user, "--generate", "32", "--max-guesses", "5", "--password-stdin"],
        "pw one\n",
    )
    assert code == 0, err
    secret_hex = out.strip()
    assert len(bytes.fromhex(secret_hex)) == 32
    code, out, err = cli(["recover", *common, *user, "--hex", "--password-stdin"], "pw one\n")
    assert (code, out.strip()) == (0, secret_hex), err
    code, out, err = cli(["recover", *common, *user, "--password-stdin"], "nope\n")
    assert code == 3 and "4 guess(es) remaining" in err
    assert "nope" not in err + out
    code, out, _ = cli(["status", *common, *user, "--json"], "")
    assert code == 0 and '"guesses_remaining": 4' in out
    code, _, err = cli(["change-password", *common, *user, "--password-stdin"], "pw one\npw two\n")
    assert code == 0, err
    target = tmp_path / "secret.bin"
    code, _, err = cli(
        ["recover", *common, *user, "--out", str(target), "--password-stdin"], "pw two\n"
    )
    assert code == 0, err
    assert target.read_bytes().hex() == secret_hex
    assert target.stat().st_mode & 0o777 == 0o600
    code, _, _ = cli(["delete", *common, *user], "")
    assert code == 0
    code, _, _ = cli(["recover", *common, *user, "--password-stdin"], "pw two\n")
    assert code == 4
    code, _, _ = cli(["status", *common, *user], "")
    assert code == 4
    code, _, err = cli(["recover", *common, *user], "")  # no TTY, no stdin flag
    assert code == 2 and "--password-stdin" in err
    stranger = tmp_path / "other.key"
    from pakr.proto.tokens import TenantKey

    TenantKey.generate(five.tenant, number=9).save(stranger)
    code, _, err = cli(
        ["status", *common[:2], *common[4:], "--token-key", str(stranger), *user], ""
    )
    assert code == 6, err
    with nodes_down(five, 1, 2, 3):
        code, _, err = cli(["status", *common, *user, "--deadline", "1"], "")
        assert code == 5, err


def test_cli_token_cmd_and_token_issue(five: LocalCluster, cli: CliRunner, tmp_path: Any) -> None:
    import sys

    script = tmp_path / "mint.py"
    script.write_text(
        "import os, sys\n"
        "from pakr.proto.tokens import TenantKey, issue_token\n"
        "key = TenantKey.load(sys.argv[1])\n"
        "print(issue_token(key, user_id=os.environ['PAKR_USER_ID'],"
        " audience=sys.argv[2]))\n"
    )
    cmd = f"{sys.executable} {script} {five.tenant_key_path} {{audience}}"
    common = ["--manifest", str(five.manifest_path), "--tenant", five.tenant, "--token-cmd", cmd]
    common += ["--operator-key", five.operator_public_key()]
    with client_for(five) as client:
        client.register("hank", "pw", b"\x00\xff")
    # Recover1 only (one token per node): the command's tokens were accepted by every node.
    code, out, err = cli(["status", *common, "--user", "hank", "--json"], "")
    assert code == 0, err
    report = json.loads(out)
    assert (report["registered"], report["guesses_remaining"]) == (True, 10)
    code, out, err = cli(
        ["token", "issue", "--tenant-key", str(five.tenant_key_path), "--user", "hank",
         "--manifest", str(five.manifest_path)],
        ""
    )  # fmt: skip
    assert code == 0, err
    assert len(out.strip().splitlines()) == 5
    failing = ["--manifest", str(five.manifest_path), "--tenant", five.tenant]
    failing += ["--operator-key", five.operator_public_key()]
    code, _, err = cli(["status", *failing, "--token-cmd", "false", "--user", "hank"], "")
    assert code == 6 and "token-cmd" in err


def _repinned(
    cluster: LocalCluster, pins: Mapping[int, tuple[str | None, bytes | None]]
) -> dict[str, Any]:
    """The cluster's manifest with some nodes' TLS pins replaced, re-signed by its operator."""
    from pakr.proto.manifest import OperatorKey, sign_manifest

    manifest = cluster.manifest()
    nodes = tuple(
        replace(node, tls_cert_pem=pins[node.index][0], tls_cert_sha256=pins[node.index][1])
        if node.index in pins
        else node
        for node in manifest.nodes
    )
    operator = OperatorKey.load(cluster.operator_key_path)
    return sign_manifest(replace(manifest, nodes=nodes, serial=manifest.serial + 1), operator)


def _client_from_document(cluster: LocalCluster, document: dict[str, Any]) -> pakr.Client:
    return pakr.Client.from_manifest(
        document,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        deadline=2.0,
    )


def test_tls_pinned_by_certificate_hash(five: LocalCluster) -> None:
    from pakr.proto.manifest import cert_fingerprint

    with client_for(five) as client:
        client.register("ivy", "pw", SECRET)
    manifest = five.manifest()
    by_hash = {n.index: (None, cert_fingerprint(n.tls_cert_pem or "")) for n in manifest.nodes}
    with _client_from_document(five, _repinned(five, by_hash)) as client:
        assert client.recover("ivy", "pw") == SECRET
    wrong = {i: (None, bytes(32)) for i in (1, 2, 3)}
    with (
        _client_from_document(five, _repinned(five, {**by_hash, **wrong})) as client,
        pytest.raises(pakr.ClusterUnavailable) as info,
    ):
        client.recover("ivy", "pw")
    assert str(info.value).endswith(
        "TLS handshake failed (certificate not the one the manifest pins?))"
    )
    assert any("does not match the manifest's pin" in d for d in info.value.details.values())


def test_a_node_with_another_certificate_is_refused(five: LocalCluster, tmp_path: Any) -> None:
    from pakr.node.tls import write_certificate

    write_certificate(
        tmp_path / "c.crt", tmp_path / "c.key", common_name="impostor", hosts=["127.0.0.1"]
    )
    impostor_pem = (tmp_path / "c.crt").read_text()
    with client_for(five) as client:
        client.register("jack", "pw", SECRET)
    document = _repinned(five, {1: (impostor_pem, None)})
    with _client_from_document(five, document) as client:
        report = client.status("jack")
        assert client.recover("jack", "pw") == SECRET  # 4 of 5 nodes still verify
    first = next(node for node in report.nodes if node.index == 1)
    assert not first.reachable and first.error is not None
    assert all(node.reachable for node in report.nodes if node.index != 1)


def test_change_password_interrupted_by_node_crashes_keeps_the_old_password(
    three: LocalCluster,
) -> None:
    with client_for(three, deadline=2.0) as client:
        client.register("kim", "old", SECRET)
        crash = {"PAKR_CRASH_AT": "register3.before_commit"}
        try:
            for index in (1, 2):  # these two die when asked to commit the new version
                three.kill_node(index)
                three.start_node(index, env=crash)
            with pytest.raises(pakr.CommitIncomplete, match="call register again"):
                client.change_password("kim", "old", "new")
            for index in (1, 2):
                three.wait_exit(index)
        finally:
            for index in (1, 2):
                three.kill_node(index)
                three.start_node(index)
        assert client.recover("kim", "old") == SECRET  # old version still committed on 1, 2
        client.change_password("kim", "old", "new")  # calling again is safe
        assert client.recover("kim", "new") == SECRET
        with pytest.raises(pakr.InvalidPassword):
            client.recover("kim", "old")


def test_nothing_secret_in_logs_reprs_or_errors(
    five: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    password = "hunter2-very-secret-password"
    provider = pakr.dev_token_provider(five.tenant_key_path)
    with caplog.at_level(logging.DEBUG):
        with client_for(five) as client:
            client.register("leak-check", password, SECRET)
            try:
                client.recover("leak-check", password + "x")
            except pakr.InvalidPassword as exc:
                message = str(exc) + repr(exc)
            assert client.recover("leak-check", password) == SECRET
            shown = repr(client) + repr(client.async_client) + repr(provider)
        token = provider("leak-check", five.manifest().nodes[0].id_hex)
    text = caplog.text + message + shown
    for needle in (password, SECRET.hex(), token.split(".")[2], "private_key"):
        assert needle not in text
