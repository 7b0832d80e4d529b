"""Shared fixtures: real local clusters (one OS process per node) that always get cleaned up.

``local_cluster(nodes=5, threshold=3, **kwargs)`` creates and starts a cluster in a fresh
temporary directory and returns the :class:`~pakr.coordinator.localcluster.LocalCluster`;
every cluster a test made is stopped in the fixture's finalizer, even when the test fails,
and as a last resort every process recorded in a pid file under its directory is killed.
``module_local_cluster`` is the same factory shared by a whole test module (start-ups cost
seconds; share one cluster when the tests do not disturb each other).

``built_wheel`` builds pakr's wheel once per session and installs it (without dependencies)
into a directory of its own: ``(wheel file, install dir)``.

``cluster`` is the started cluster a test module shares: 3-of-5 unless the module asks for
another shape with ``pytestmark = pytest.mark.cluster(nodes=3, threshold=2, ...)`` (the
marker's keywords are ``local_cluster``'s). ``fresh_cluster`` is the same shape, started anew
for each test (for tests that leave the cluster in a state the next one must not see).

``cluster_dir`` is a temporary directory for tests that drive ``pakr cluster up`` as a
subprocess: its finalizer kills whatever processes left pid files in it.

Clusters use the dev Argon2 parameters (19 MiB, t=2), never the 64 MiB production default.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# The CLI keeps operator pins and manifest serials in a per-user state directory; tests (and
# the CLI processes they start, which inherit the environment) must never touch the real one.
if "PAKR_STATE_DIR" not in os.environ:
    os.environ["PAKR_STATE_DIR"] = tempfile.mkdtemp(prefix="pakr-test-state-")

if TYPE_CHECKING:
    from pakr.coordinator.localcluster import LocalCluster

ClusterFactory = Callable[..., "LocalCluster"]


def _stop_all(clusters: list[LocalCluster], dirs: list[Path]) -> None:
    from pakr.coordinator.localcluster import stop_by_pid_files

    errors: list[BaseException] = []
    for cluster in clusters:
        try:
            cluster.stop()
        except BaseException as exc:  # keep cleaning the others
            errors.append(exc)
    for directory in dirs:
        try:
            stop_by_pid_files(directory, timeout=5.0)
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ClusterFactory, list[LocalCluster], list[Path]]:
    clusters: list[LocalCluster] = []
    dirs: list[Path] = []

    def make(nodes: int = 5, threshold: int = 3, **kwargs: Any) -> LocalCluster:
        from pakr.coordinator.localcluster import LocalCluster

        directory = tmp_path_factory.mktemp("cluster")
        dirs.append(directory)
        cluster = LocalCluster(directory, nodes=nodes, threshold=threshold, **kwargs)
        clusters.append(cluster)
        return cluster.start()

    return make, clusters, dirs


@pytest.fixture
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Factory of started local clusters, all stopped when the test ends."""
    make, clusters, dirs = _factory(tmp_path_factory)
    try:
        yield make
    finally:
        _stop_all(clusters, dirs)


@pytest.fixture(scope="module")
def module_local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Like ``local_cluster`` but shared by a test module (stopped after its last test)."""
    make, clusters, dirs = _factory(tmp_path_factory)
    try:
        yield make
    finally:
        _stop_all(clusters, dirs)


def _shape(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The cluster the test module asks for (``pytest.mark.cluster(...)``), 3-of-5 by default."""
    marker = request.node.get_closest_marker("cluster")
    return {"nodes": 5, "threshold": 3, **(marker.kwargs if marker is not None else {})}


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, module_local_cluster: ClusterFactory) -> LocalCluster:
    """The started local cluster this test module shares (shape: ``pytest.mark.cluster``)."""
    return module_local_cluster(**_shape(request))


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest, local_cluster: ClusterFactory) -> LocalCluster:
    """A started local cluster of the module's shape for this test alone."""
    return local_cluster(**_shape(request))


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for ``pakr cluster up --dir``; its processes are killed at teardown."""
    directory = tmp_path / "cluster"
    try:
        yield directory
    finally:
        _stop_all([], [directory] if directory.exists() else [])


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel built from this checkout, and a directory it is installed into (no deps)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(root),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("pakr-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    return wheel, target
