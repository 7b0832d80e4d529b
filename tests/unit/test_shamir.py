"""Shamir sharing over Z_L: reconstruction, Lagrange in the exponent, secrecy, validation."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.proto import shamir
from pakr.proto.errors import MalformedMessage
from pakr.proto.group import Element, Scalar


@st.composite
def sharings(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    """(threshold, all indices, a subset of >= threshold of them)."""
    n = draw(st.integers(min_value=1, max_value=10))
    t = draw(st.integers(min_value=1, max_value=n))
    indices = draw(
        st.lists(st.integers(min_value=1, max_value=255), min_size=n, max_size=n, unique=True)
    )
    k = draw(st.integers(min_value=t, max_value=n))
    subset = draw(st.permutations(indices))[:k]
    return t, indices, subset


@settings(max_examples=150, deadline=None)
@given(sharings())
def test_reconstruct_any_t_subset(case: tuple[int, list[int], list[int]]) -> None:
    t, indices, subset = case
    secret = Scalar.random()
    shares = shamir.split(secret, t, indices)
    assert set(shares) == set(indices)
    assert shamir.reconstruct({i: shares[i] for i in subset}, t) == secret


@settings(max_examples=60, deadline=None)
@given(sharings())
def test_combine_elements_in_exponent(case: tuple[int, list[int], list[int]]) -> None:
    t, indices, subset = case
    secret = Scalar.random()
    shares = shamir.split(secret, t, indices)
    point = Element.base_mult(Scalar.random())
    combined = shamir.combine_elements({i: point * shares[i] for i in subset}, t)
    assert combined == point * secret
    g_shares = {i: Element.base_mult(shares[i]) for i in subset}
    assert shamir.combine_elements(g_shares, t) == Element.base_mult(secret)


def test_fewer_than_t_shares_give_wrong_secret() -> None:
    secret = Scalar.random()
    shares = shamir.split(secret, 3, [1, 2, 3, 4])
    with pytest.raises(MalformedMessage):
        shamir.reconstruct({1: shares[1], 2: shares[2]}, 3)
    # Interpolating t-1 shares as if they were enough gives garbage, not the secret.
    assert shamir.reconstruct({1: shares[1], 2: shares[2]}, 2) != secret


def test_lagrange_coefficients_sum_to_one() -> None:
    coefficients = shamir.lagrange_coefficients([3, 7, 200])
    total = Scalar.from_int(0)
    for c in coefficients.values():
        total = total + c
    assert total == Scalar.from_int(1)  # interpolating the constant polynomial 1


def test_lagrange_known_values() -> None:
    # Indices 1, 2: λ_1 = 2/(2-1) = 2, λ_2 = 1/(1-2) = -1.
    coefficients = shamir.lagrange_coefficients([1, 2])
    assert coefficients[1] == Scalar.from_int(2)
    assert coefficients[2] == Scalar.from_int(-1)


@pytest.mark.parametrize(
    "indices",
    [[1, 1], [0, 1], [1, 256], [-1, 2], [], [1, True]],
)
def test_bad_index_sets_from_wire(indices: list[int]) -> None:
    with pytest.raises(MalformedMessage):
        shamir.lagrange_coefficients(indices)


def test_bad_share_sets_from_wire() -> None:
    s = Scalar.random()
    e = Element.base_mult(s)
    with pytest.raises(MalformedMessage):
        shamir.reconstruct({0: s, 1: s}, 2)
    with pytest.raises(MalformedMessage):
        shamir.reconstruct({1: s}, 2)
    with pytest.raises(MalformedMessage):
        shamir.reconstruct({}, 1)
    with pytest.raises(MalformedMessage):
        shamir.combine_elements({300: e, 1: e}, 2)
    with pytest.raises(MalformedMessage):
        shamir.combine_elements({1: e}, 2)
    with pytest.raises(ValueError):
        shamir.reconstruct({1: s}, 0)


@pytest.mark.parametrize(
    ("threshold", "indices"),
    [(0, [1, 2]), (3, [1, 2]), (2, [1, 1, 2]), (1, [0]), (1, [256]), (1, [])],
)
def test_bad_split_calls(threshold: int, indices: list[int]) -> None:
    with pytest.raises(ValueError):
        shamir.split(Scalar.random(), threshold, indices)


def test_threshold_one_is_replication() -> None:
    secret = Scalar.random()
    shares = shamir.split(secret, 1, [5, 9])
    assert shares[5] == secret and shares[9] == secret


def test_split_uses_injected_randomness() -> None:
    secret = Scalar.from_int(10)
    shares = shamir.split(secret, 2, [1, 2, 3], rand=lambda: Scalar.from_int(7))
    assert [shares[i] for i in (1, 2, 3)] == [Scalar.from_int(v) for v in (17, 24, 31)]


def test_single_share_is_consistent_with_every_secret() -> None:
    """Perfect secrecy for t = 2: any single share y_1 is explained by any candidate secret
    s' (with a_1 = y_1 - s'), so one share gives an attacker nothing to check a guess against."""
    secret = Scalar.random()
    y1 = shamir.split(secret, 2, [1, 2, 3])[1]
    for _ in range(5):
        candidate = Scalar.random()
        a1 = y1 - candidate

        def coefficient(a1: Scalar = a1) -> Scalar:
            return a1

        alt = shamir.split(candidate, 2, [1, 2, 3], rand=coefficient)
        assert alt[1] == y1
        assert shamir.reconstruct({1: alt[1], 2: alt[2]}, 2) == candidate


def _chi_square(counts: Counter[int], n: int, bins: int = 256) -> float:
    expected = n / bins
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(bins))


def test_single_share_distribution_is_uniform_for_any_secret() -> None:
    """2-of-3: the low byte of share 1 is uniform whether the secret is 0…0 or 0xff…: a lone
    share carries no information about the secret (chi-square, 255 d.o.f., lenient bound)."""
    n = 2560
    # 255 degrees of freedom: mean 255, sd ~22.6; 400 is > 6 sd, a spurious failure is ~1e-12.
    bound = 400.0
    secrets = [Scalar.from_int(0), Scalar.from_int(2**252 - 1)]
    histograms = []
    for secret in secrets:
        counts: Counter[int] = Counter(
            shamir.split(secret, 2, [1, 2, 3])[1].encoded[0] for _ in range(n)
        )
        assert _chi_square(counts, n) < bound
        histograms.append(counts)
    # Two-sample comparison: the two histograms are indistinguishable too.
    two_sample = sum(
        (histograms[0].get(b, 0) - histograms[1].get(b, 0)) ** 2
        / (histograms[0].get(b, 0) + histograms[1].get(b, 0))
        for b in range(256)
        if histograms[0].get(b, 0) + histograms[1].get(b, 0) > 0
    )
    assert two_sample < bound
