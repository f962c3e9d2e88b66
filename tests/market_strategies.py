"""Random reported markets (a hypothesis strategy and a seeded dissimilarity) and a switch
for the best values without each member, shared by the market-layer tests."""

import contextlib
from unittest import mock

import numpy as np
from hypothesis import strategies as st

from mechanisms import exact, ipfl


@st.composite
def markets(draw, min_m=2, max_m=8, n_range=(10, 5000), cost_max=5.0, k_range=(1e2, 1e7),
            lam_max=3.0):
    """A random market: sizes, costs, valuations (some pure sellers, K = 0), a symmetric D
    with a zero diagonal, and lam (None when lam_max is None)."""
    m = draw(st.integers(min_m, max_m))

    def vec(elements):
        return np.array(draw(st.lists(elements, min_size=m, max_size=m)), dtype=float)

    N = vec(st.floats(*n_range))
    cost = vec(st.floats(0, cost_max))
    K = vec(st.one_of(st.just(0.0), st.floats(*k_range)))
    d = np.array(draw(st.lists(st.floats(0, 2), min_size=m * m, max_size=m * m))).reshape(m, m)
    D = symmetric(d)
    if lam_max is None:
        return N, cost, K, D
    return N, cost, K, D, draw(st.floats(0, lam_max))


def symmetric(d: np.ndarray) -> np.ndarray:
    """A dissimilarity matrix from any square matrix: (d + d') / 2 with a zero diagonal."""
    D = (d + d.T) / 2
    np.fill_diagonal(D, 0.0)
    return D


def random_dissimilarity(rng: np.random.Generator, m: int, high: float = 1.0) -> np.ndarray:
    """A seeded symmetric D with entries in [0, high) and a zero diagonal."""
    return symmetric(rng.uniform(0, high, (m, m)))


def replacements_only(on: bool):
    """When `on`, the best values without each member skip the enumeration of step 1's
    undecided sellers and try replacements for every set."""
    if not on:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(exact, "_OPEN", -1))
    stack.enter_context(mock.patch.object(ipfl, "_REPLACED_FROM", 0))
    return stack
