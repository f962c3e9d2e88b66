import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_strategies import markets as shared_markets
from market_strategies import random_dissimilarity, replacements_only

from mechanisms import ipfl, payments


def markets(min_m=2, max_m=6):
    return shared_markets(min_m, max_m, n_range=(10, 3000), k_range=(1e3, 1e7), lam_max=2.0)


def brute_best(K, n_own, sizes, prices):
    best = (0.0, np.zeros(len(sizes), dtype=bool))
    for r in range(1, len(sizes) + 1):
        for subset in itertools.combinations(range(len(sizes)), r):
            chosen = np.zeros(len(sizes), dtype=bool)
            chosen[list(subset)] = True
            value = ipfl.import_value(K, n_own, sizes, prices, chosen)
            if value > best[0]:
                best = (value, chosen)
    return best


# --- none and posted ---------------------------------------------------------------------


def test_none_is_all_zero():
    A = np.array([[False, True], [True, False]])
    P = payments.none(A)
    assert P.shape == (2, 2) and (P == 0).all()


@settings(max_examples=40, deadline=None)
@given(markets(), st.floats(0, 0.05))
def test_posted_market(market, price):
    N, cost, K, D, lam = market
    A = payments.clear_posted(N, cost, K, D, lam, price)
    refused = price * N < cost
    assert not A[:, refused].any()
    tau = payments.posted_prices(N, D, lam, price)
    for i in np.flatnonzero(K > 0):
        sellers = np.flatnonzero((np.arange(len(N)) != i) & ~refused)
        best, _ = brute_best(K[i], N[i], N[sellers], tau[i, sellers])
        got = ipfl.import_value(K[i], N[i], N[sellers], tau[i, sellers], A[i, sellers])
        assert got == pytest.approx(best, rel=1e-9, abs=1e-9)
    P = payments.posted(A, N, price)
    np.testing.assert_array_equal(P, -P.T)
    np.testing.assert_allclose(P.sum(axis=1), price * (A @ N - A.sum(axis=0) * N))


# --- VCG ---------------------------------------------------------------------------------


def vcg_by_definition(N, cost, K, D, lam, A):
    """Clarke pivot payments t_k from scratch: W_{-k} - sum_{l != k} v_l(A)."""
    m = len(N)
    tau = ipfl.edge_prices(N, cost, D, lam)

    def value(b, A):
        G = ipfl.gain(K[b], N[b], N[b] + A[b] @ N)
        hetero = (lam * D[b] * N / N[b])[A[b]].sum()
        return G - hetero - cost[b] * A[:, b].sum()

    t = np.zeros(m)
    for k in range(m):
        without_k = 0.0
        for b in range(m):
            if b == k or K[b] == 0:
                continue
            sellers = [j for j in range(m) if j not in (k, b)]
            if sellers:
                without_k += brute_best(K[b], N[b], N[sellers], tau[b, sellers])[0]
        t[k] = without_k - sum(value(b, A) for b in range(m) if b != k)
    return t


@settings(max_examples=40, deadline=None)
@given(markets(max_m=5), st.booleans())
def test_vcg_matches_clarke_pivot_definition(market, replaced):
    # `replaced`: no problem without one seller is settled by enumeration, and every
    # buyer's sellers are tried for replacements within tol
    N, cost, K, D, lam = market
    with replacements_only(replaced):
        A, P, platform = payments.vcg(*market)
    np.testing.assert_array_equal(A, ipfl.clear_exact(*market))
    np.testing.assert_array_equal(P, -P.T)
    assert (platform <= 1e-12).all()
    net = P.sum(axis=1) + platform
    np.testing.assert_allclose(net, vcg_by_definition(*market, A), atol=1e-7, rtol=1e-9)
    U = ipfl.utilities(A, P, N, cost, K, platform)
    assert (U >= -1e-9).all()


@settings(max_examples=60, deadline=None)
@given(markets(min_m=3, max_m=7), st.integers(0, 6), st.sampled_from([0.0, 0.5, 0.9, 1.2, 3.0]))
def test_vcg_misreporting_cost_never_pays(market, who, factor):
    N, cost, K, D, lam = market
    k = who % len(N)
    truthful = payments.vcg(N, cost, K, D, lam)
    reported = cost.copy()
    reported[k] = cost[k] * factor if cost[k] > 0 else factor
    lying = payments.vcg(N, reported, K, D, lam)
    u_true = ipfl.utilities(*truthful[:2], N, cost, K, truthful[2])[k]
    u_lie = ipfl.utilities(*lying[:2], N, cost, K, lying[2])[k]
    assert u_lie <= u_true + 1e-9 * (1 + abs(u_true))


def test_vcg_eligible_sellers_earn_nothing():
    rng = np.random.default_rng(4)
    m = 10
    N = rng.uniform(50, 1000, m)
    D = random_dissimilarity(rng, m)
    eligible = np.arange(m) % 3 != 0
    A, P, platform = payments.vcg(N, np.ones(m), np.full(m, 5e5), D, 1.0, eligible=eligible)
    assert not A[:, ~eligible].any()
    assert (platform[~eligible] == 0).all()
    assert platform.sum() < 0


# --- Shapley -----------------------------------------------------------------------------


def table_game(table):
    def value(M):
        return np.array([table[frozenset(np.flatnonzero(row))] for row in M])

    return value


def test_exact_shapley_known_game():
    v = {(): 0, (1,): 2, (2,): 4, (3,): 5, (1, 2): 18, (1, 3): 14, (2, 3): 9, (1, 2, 3): 24}
    table = {frozenset(i - 1 for i in k): val for k, val in v.items()}
    phi = payments.shapley_values(table_game(table), 3)
    np.testing.assert_allclose(phi, [9.5, 8.0, 6.5])


def test_shapley_axioms_and_sampling():
    rng = np.random.default_rng(0)
    weights = rng.uniform(1, 10, 9)

    def value(M):
        return np.sqrt(M @ weights) + 3.0 * M[:, 0] * M[:, 1]

    exact = payments.shapley_values(value, 9)
    everyone = value(np.ones((1, 9), dtype=bool))[0]
    assert exact.sum() == pytest.approx(everyone)
    sampled = payments.shapley_values(
        value, 9, rng=np.random.default_rng(1), n_permutations=4000, exact_limit=0
    )
    assert sampled.sum() == pytest.approx(everyone)
    np.testing.assert_allclose(sampled, exact, atol=0.05)
    again = payments.shapley_values(
        value, 9, rng=np.random.default_rng(1), n_permutations=4000, exact_limit=0
    )
    np.testing.assert_array_equal(sampled, again)


def test_shapley_symmetry_and_dummy():
    def value(M):
        return (M[:, 0] | M[:, 1]).astype(float) * 6.0

    phi = payments.shapley_values(value, 3)
    np.testing.assert_allclose(phi, [3.0, 3.0, 0.0])


def test_shapley_values_need_rng_beyond_exact_limit():
    with pytest.raises(ValueError, match="rng"):
        payments.shapley_values(lambda M: M.sum(axis=1), 13)


@settings(max_examples=30, deadline=None)
@given(markets(max_m=6), st.floats(0, 1))
def test_shapley_payments_split_the_gain(market, share):
    N, cost, K, D, lam = market
    A = np.triu(ipfl.clear(*market), 1)  # no mutual edges: row i of P is what i pays
    P = payments.shapley(A, N, K, share)
    np.testing.assert_array_equal(P, -P.T)
    for i in np.flatnonzero(A.any(axis=1)):
        G = ipfl.gain(K[i], N[i], N[i] + A[i] @ N)
        assert P[i, A[i]].sum() == pytest.approx(share * G, rel=1e-9, abs=1e-12)
        assert (P[i, A[i]] >= 0).all()
    assert (P[~(A | A.T)] == 0).all()


def test_shapley_payments_beyond_exact_limit_are_seeded_estimates():
    m = 16
    N = np.linspace(100, 400, m)
    K = np.zeros(m)
    K[0] = 1e7
    A = np.zeros((m, m), dtype=bool)
    A[0, 1:] = True
    P1 = payments.shapley(A, N, K, 0.5, n_permutations=1000, seed=3)
    P2 = payments.shapley(A, N, K, 0.5, n_permutations=1000, seed=3)
    np.testing.assert_array_equal(P1, P2)
    assert P1[0].sum() == pytest.approx(0.5 * ipfl.gain(1e7, N[0], N.sum()))

    def worth(M):
        return ipfl.gain(1e7, N[0], N[0] + M @ N[1:])

    exact = payments.shapley_values(worth, m - 1, exact_limit=m - 1)
    np.testing.assert_allclose(P1[0, 1:], 0.5 * exact, atol=0.05 * exact.mean())


@pytest.mark.parametrize("share", [-0.1, 1.5, np.nan])
def test_shapley_rejects_bad_share(share):
    with pytest.raises(ValueError, match="share"):
        payments.shapley(np.zeros((2, 2), dtype=bool), [1.0, 2.0], [1.0, 1.0], share)


def test_posted_rejects_bad_price():
    with pytest.raises(ValueError, match="price"):
        payments.posted(np.zeros((2, 2), dtype=bool), [1.0, 2.0], -1.0)
