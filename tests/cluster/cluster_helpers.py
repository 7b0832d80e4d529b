"""Helpers for the cluster tests: fake node directories and running the ``pakr`` CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pakr.coordinator import admin_cli
from pakr.coordinator.cli import exit_code_for
from pakr.node.config import DataKeySource, HpkeKeyFiles, NodeConfig, resolve_storage_url
from pakr.node.hpke_keys import generate_key_files
from pakr.node.tls import write_certificate
from pakr.proto.choice import choose_version
from pakr.proto.errors import PakrError
from pakr.proto.manifest import Manifest
from pakr.proto.messages import UserRef, UserStatus, VersionInfo

CLI_TIMEOUT = 120


def write_node_dir(root: Path, index: int, port: int) -> Path:
    """A node directory as ``pakr node init`` lays it out (config, cert, key, data key)."""
    node_dir = root / f"node{index}"
    (node_dir / "tls").mkdir(parents=True)
    write_certificate(
        node_dir / "tls" / "node.crt",
        node_dir / "tls" / "node.key",
        common_name=f"node{index}",
        hosts=["127.0.0.1"],
    )
    (node_dir / "data.key").write_text(os.urandom(32).hex() + "\n")
    hpke = HpkeKeyFiles(node_dir / "hpke.key", node_dir / "hpke.pub")
    generate_key_files(hpke)
    config = node_dir / "node.toml"
    NodeConfig(
        path=config,
        node_id=os.urandom(16),
        index=index,
        listen=f"127.0.0.1:{port}",
        insecure=False,
        tls_cert=node_dir / "tls" / "node.crt",
        tls_key=node_dir / "tls" / "node.key",
        storage_url=resolve_storage_url("sqlite:///node.db", node_dir),
        data_key=DataKeySource(file=node_dir / "data.key"),
        keys_dir=node_dir / "keys",
        hpke=hpke,
    ).save()
    return config


def run_admin(*argv: str) -> tuple[int, str, str]:
    """Run an operator command in-process (exit code, stdout, stderr), as ``pakr`` would."""
    parser = argparse.ArgumentParser(prog="pakr")
    admin_cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = int(args.func(args) or 0)
        except PakrError as error:
            print(f"pakr: {error}", file=sys.stderr)
            code = exit_code_for(error)
    return code, out.getvalue(), err.getvalue()


def pakr_cli(
    *argv: str,
    check: bool = False,
    timeout: float = CLI_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``pakr`` CLI as a subprocess with this interpreter (``env`` added)."""
    done = subprocess.run(
        [sys.executable, "-m", "pakr.coordinator", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"pakr {' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done


def last_json(text: str) -> Any:
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    raise AssertionError(f"no JSON line in output: {text!r}")


def user_asking(
    manifest: Manifest,
    tenant: str,
    prefix: str,
    *,
    ask: Collection[int] = (),
    spare: Collection[int] = (),
) -> str:
    """A user id whose recoveries ask the nodes with indices ``ask`` for evaluations first,
    and none of ``spare``.

    With equal guess counts the client asks t nodes in an order fixed per user (see
    ``pakr.proto.choice.choose_version``); tests that need a given node in or out of a
    recovery pick the user accordingly, through that same function.
    """
    info = VersionInfo(version=bytes(16), epoch=1, argon2=manifest.argon2, guesses_remaining=10)
    answers = {node.ref: UserStatus(committed=info) for node in manifest.nodes}
    t = manifest.threshold
    for attempt in range(10_000):
        user_id = f"{prefix}-{attempt}"
        choice = choose_version(
            answers,
            {},
            threshold=t,
            node_count=len(manifest.nodes),
            user=UserRef(tenant, user_id),
        )
        first = {node.index for node in choice.nodes[:t]}
        if set(ask) <= first and not first & set(spare):
            return user_id
    raise AssertionError(f"no user id asks {sorted(ask)} and spares {sorted(spare)}")
