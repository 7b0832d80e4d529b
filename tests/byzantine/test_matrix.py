"""The Byzantine matrix (issue 12): every lie in every reply field, 1..n-t liars, 3-of-5 and
2-of-3, real node processes behind lying gRPC proxies (:mod:`tests.byzantine.proxy`).

``make test`` runs every enumerated lie at the most liars each shape tolerates (n - t: two
for 3-of-5, one for 2-of-3) and a few hypothesis-chosen combinations; ``make byzantine``
(``PAKR_BYZANTINE=long``) adds every smaller liar count and many more combinations. See
:mod:`tests.byzantine.harness` for what each case checks.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.byzantine.harness import Liars, run_case, run_register_case
from tests.byzantine.lies import (
    LURE,
    RECOVER1,
    RECOVER2_NAMED,
    RECOVER2_QUIET,
    RECOVER3_NAMED,
    RECOVER3_QUIET,
    REGISTER1,
    method_of,
)
from tests.byzantine.proxy import Lie

pytestmark = pytest.mark.timeout(900)

LONG = os.environ.get("PAKR_BYZANTINE") == "long"
COMBINATIONS = 150 if LONG else 6
MAX_LIARS = 2  # n - t for 3-of-5; the 2-of-3 shape skips 2


def _plan(lie: Lie) -> dict[str, Lie]:
    """A liar's lies for one case: Recover2/3 liars also lure the client to ask them first."""
    if method_of(lie) in ("Recover2", "Recover3"):
        return {"Recover1": LURE, method_of(lie): lie}
    return {method_of(lie): lie}


def _check_count(liars: Liars, count: int) -> None:
    tolerated = liars.n - liars.t
    if count > tolerated:
        pytest.skip(f"{liars.t}-of-{liars.n} tolerates {tolerated} liar(s)")
    if count < tolerated and not LONG:
        pytest.skip("fewer liars than tolerated: make byzantine")


RECOVERY = RECOVER1 + RECOVER2_NAMED + RECOVER2_QUIET + RECOVER3_NAMED + RECOVER3_QUIET


@pytest.mark.parametrize("count", range(1, MAX_LIARS + 1))
@pytest.mark.parametrize("lie", RECOVERY, ids=lambda lie: lie.name)
def test_recovery_survives_liars(liars: Liars, lie: Lie, count: int) -> None:
    _check_count(liars, count)
    run_case(liars, {index: _plan(lie) for index in range(1, count + 1)})


@pytest.mark.parametrize("count", range(1, MAX_LIARS + 1))
@pytest.mark.parametrize("lie", REGISTER1, ids=lambda lie: lie.name)
def test_registration_survives_liars(liars: Liars, lie: Lie, count: int) -> None:
    _check_count(liars, count)
    run_register_case(liars, {index: _plan(lie) for index in range(1, count + 1)})


@st.composite
def _combination(draw: st.DrawFn, n: int, t: int) -> dict[int, dict[str, Lie]]:
    """1..n-t liars, each with up to one lie per method, on any nodes."""
    count = draw(st.integers(1, n - t))
    nodes = draw(st.permutations(range(1, n + 1)))[:count]
    plan: dict[int, dict[str, Lie]] = {}
    for index in nodes:
        lies: dict[str, Lie] = {}
        for pool in (
            [*RECOVER1, LURE],
            RECOVER2_NAMED + RECOVER2_QUIET,
            RECOVER3_NAMED + RECOVER3_QUIET,
        ):
            lie = draw(st.none() | st.sampled_from(pool))
            if lie is not None:
                lies[method_of(lie)] = lie
        plan[index] = lies
    return plan


@settings(
    max_examples=COMBINATIONS,
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hypothesis_combinations(liars: Liars, data: st.DataObject) -> None:
    run_case(liars, data.draw(_combination(liars.n, liars.t)))
