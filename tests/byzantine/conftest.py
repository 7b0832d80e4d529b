"""Module-shared 3-of-5 and 2-of-3 clusters of real node processes behind lying proxies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.byzantine.harness import Liars
from tests.conftest import ClusterFactory

SHAPES = {"3-of-5": (5, 3), "2-of-3": (3, 2)}


@pytest.fixture(scope="module", params=sorted(SHAPES))
def liars(request: pytest.FixtureRequest, module_local_cluster: ClusterFactory) -> Iterator[Liars]:
    nodes, threshold = SHAPES[request.param]
    proxied = Liars(module_local_cluster(nodes=nodes, threshold=threshold))
    try:
        yield proxied
    finally:
        proxied.close()
