"""Thin wrappers over the ``docker`` CLI and a Compose implementation for the live deploy tests.

Everything goes through the command-line tools an operator uses (no Docker SDK), and every
call is bounded in time. Containers are found by Compose's labels, which both Compose v1
(Debian's ``docker-compose``) and the v2 plugin set, so either implementation works.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
IMAGE = os.environ.get("PAKR_DEPLOY_IMAGE", "pakr:latest")
PROJECT = os.environ.get("PAKR_DEPLOY_PROJECT", "pakr-deploy-test")
NODE_UID = 10001


def run(
    argv: list[str], *, timeout: float = 120, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    return run(["docker", *args], timeout=timeout, check=check).stdout


@cache
def compose_command() -> tuple[str, ...]:
    """``$PAKR_COMPOSE``, else the v2 plugin when present, else Debian's ``docker-compose``."""
    chosen = os.environ.get("PAKR_COMPOSE")
    if chosen:
        return tuple(shlex.split(chosen))
    if run(["docker", "compose", "version"], check=False, timeout=30).returncode == 0:
        return ("docker", "compose")
    return ("docker-compose",)


def compose(*args: str, timeout: float = 300, check: bool = True) -> str:
    argv = [*compose_command(), "-p", PROJECT, "-f", str(COMPOSE_FILE), *args]
    return run(argv, timeout=timeout, check=check).stdout


def project_filter() -> list[str]:
    return ["--filter", f"label=com.docker.compose.project={PROJECT}"]


def container(service: str) -> str:
    """The id of the (single) container of ``service``, running or not."""
    ids = docker(
        "ps", "-a", "-q", *project_filter(),
        "--filter", f"label=com.docker.compose.service={service}",
    ).split()  # fmt: skip
    assert len(ids) == 1, f"expected one container for {service}, found {ids}"
    return ids[0]


def inspect(target: str) -> dict[str, Any]:
    (document,) = json.loads(docker("inspect", target))
    assert isinstance(document, dict)
    return document


def health(cid: str) -> str | None:
    state = inspect(cid)["State"]
    return state["Health"]["Status"] if state.get("Health") else None


def wait_healthy(services: list[str], timeout: float) -> float:
    """Seconds until every service's container reports ``healthy`` (fails at ``timeout``)."""
    start = time.monotonic()
    pending = set(services)
    while pending:
        for service in sorted(pending):
            if health(container(service)) == "healthy":
                pending.discard(service)
        if not pending:
            break
        if time.monotonic() - start > timeout:
            states = {s: health(container(s)) for s in sorted(pending)}
            logs = {s: docker("logs", "--tail", "20", container(s), check=False) for s in pending}
            raise AssertionError(f"not healthy after {timeout:.0f} s: {states}\n{logs}")
        time.sleep(0.5)
    return time.monotonic() - start


def project_leftovers() -> dict[str, list[str]]:
    """Containers, volumes and networks of the test project that still exist."""
    return {
        "containers": docker("ps", "-a", "-q", *project_filter()).split(),
        "volumes": docker("volume", "ls", "-q", *project_filter()).split(),
        "networks": docker("network", "ls", "-q", *project_filter()).split(),
    }
