"""Shamir secret sharing over Z_L (the ristretto255 scalar field), and Lagrange in the exponent.

docs/protocol.md §1: share *i* is f(x_i) for a random polynomial f of degree t-1 with f(0) = secret,
x_i the node's ``index`` (1..255, unique in a cluster). Any t shares give f(0); fewer are
jointly uniform and independent of the secret. Combining ``k_i·B`` with the same Lagrange
coefficients yields ``k·B`` without ever rebuilding k, which is how the client gets the RFC 9497
output from t nodes.

Errors: a bad ``split`` call (threshold out of range, bad index list) is a programming error
and raises ``ValueError``. A bad share *set* — which comes from nodes over the wire — raises
:class:`~pakr.proto.errors.MalformedMessage`: duplicate/zero/out-of-range indices or fewer than
``threshold`` shares. A ``threshold`` below 1 passed to the combiners is a ``ValueError``.

All scalar arithmetic is libsodium's (via :class:`Scalar`); indices are public.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .errors import MalformedMessage
from .group import Element, Scalar

MIN_INDEX = 1
MAX_INDEX = 255


def _index_problem(indices: Iterable[object]) -> str | None:
    """Why this index list is unusable, or None if it is fine."""
    seen: set[int] = set()
    count = 0
    for i in indices:
        count += 1
        if isinstance(i, bool) or not isinstance(i, int):
            return "share indices must be integers"
        if not MIN_INDEX <= i <= MAX_INDEX:
            return f"share index {i} is outside {MIN_INDEX}..{MAX_INDEX}"
        if i in seen:
            return f"share index {i} appears more than once"
        seen.add(i)
    if count == 0:
        return "no share indices given"
    return None


def split(
    secret: Scalar,
    threshold: int,
    indices: Sequence[int],
    *,
    rand: Callable[[], Scalar] = Scalar.random,
) -> dict[int, Scalar]:
    """Share ``secret`` so that any ``threshold`` of the shares at ``indices`` recover it.

    ``rand`` draws the t-1 random coefficients (injectable for deterministic test vectors;
    it must be uniform in production). ``ValueError`` on a bad threshold or index list.
    """
    problem = _index_problem(indices)
    if problem is not None:
        raise ValueError(problem)
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise ValueError("threshold must be an int")
    if not 1 <= threshold <= len(indices):
        raise ValueError(f"threshold must be in 1..{len(indices)} (the number of shares)")
    # f(x) = secret + a_1 x + ... + a_{t-1} x^{t-1}, evaluated with Horner's rule.
    coefficients = [secret] + [rand() for _ in range(threshold - 1)]
    shares: dict[int, Scalar] = {}
    for index in indices:
        x = Scalar.from_int(index)
        acc = coefficients[-1]
        for coefficient in reversed(coefficients[:-1]):
            acc = acc * x + coefficient
        shares[index] = acc
    return shares


def lagrange_coefficients(indices: Sequence[int]) -> dict[int, Scalar]:
    """λ_i for interpolation at x = 0 over exactly these indices: λ_i = Π_{j≠i} x_j/(x_j - x_i).

    ``MalformedMessage`` on an empty list or duplicate/out-of-range indices.
    """
    problem = _index_problem(indices)
    if problem is not None:
        raise MalformedMessage(problem)
    xs = {i: Scalar.from_int(i) for i in indices}
    coefficients: dict[int, Scalar] = {}
    for i in indices:
        numerator = Scalar.from_int(1)
        denominator = Scalar.from_int(1)
        for j in indices:
            if j != i:
                numerator = numerator * xs[j]
                denominator = denominator * (xs[j] - xs[i])
        coefficients[i] = numerator * denominator.invert()
    return coefficients


def _check_share_set(indices: Sequence[int], threshold: int) -> dict[int, Scalar]:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError("threshold must be an int >= 1")
    if len(indices) < threshold:
        raise MalformedMessage(f"too few shares: {len(indices)} given, threshold is {threshold}")
    return lagrange_coefficients(indices)


def reconstruct(shares: Mapping[int, Scalar], threshold: int) -> Scalar:
    """f(0) from ``shares`` (index → share). Needs at least ``threshold``; uses all given.

    Using more than t consistent shares still yields f(0); an inconsistent (corrupted) share
    yields a wrong value silently, so callers authenticate shares before combining.
    """
    indices = list(shares)
    coefficients = _check_share_set(indices, threshold)
    total = Scalar.from_int(0)
    for i in indices:
        total = total + coefficients[i] * shares[i]
    return total


def combine_elements(shares: Mapping[int, Element], threshold: int) -> Element:
    """Σ λ_i·E_i: Lagrange interpolation at 0 in the exponent (E_i = f(x_i)·P gives f(0)·P).

    ``MalformedMessage`` for a bad share set, or if the sum is the identity (only possible
    with adversarial elements).
    """
    indices = list(shares)
    coefficients = _check_share_set(indices, threshold)
    total: Element | None = None
    for i in indices:
        term = shares[i] * coefficients[i]
        total = term if total is None else total + term
    assert total is not None
    return total
