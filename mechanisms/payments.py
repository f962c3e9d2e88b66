"""Alternative payment rules to compare against iPFL's: none, posted price, VCG (Clarke
pivot) and Shapley gain sharing.

Every rule returns the payment matrix P (m, m), antisymmetric, P[i, j] = net amount i pays j.
VCG also returns the platform vector (m,): the net amount each participant pays the platform,
because a two-sided VCG market is not budget balanced.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mechanisms import checks
from mechanisms.ipfl import best_values_without, edge_prices, exact_graph, gain, import_value

EXACT_SHAPLEY_LIMIT = 12


def none(A) -> np.ndarray:
    """No payments (graph-only baselines): an all-zero P."""
    A = np.asarray(A)
    return np.zeros(A.shape, dtype=np.float64)


def posted_prices(N, D, lam, price) -> np.ndarray:
    """tau (m, m) a buyer weighs against its marginal gain in a posted-price market:
    price * N_j (what it pays) + lam * D_ij * N_j / N_i (the same heterogeneity charge as
    iPFL's edge price)."""
    N = checks.sizes(N)
    return edge_prices(N, checks.scalar(price, "price") * N, D, lam)


def clear_posted(N, cost, K, D, lam, price, *, eligible=None) -> np.ndarray:
    """Clearing at a posted price per imported sample.

    A seller offers its model only if the price covers its sharing cost per importer
    (price * N_j >= cost_j); every buyer then imports, among the offered models, the set
    maximising G_i(S) - sum_{j in S} (price * N_j + lam * D_ij * N_j / N_i), solved exactly.
    """
    N, cost, K, D, lam = checks.market(N, cost, K, D, lam)
    price = checks.scalar(price, "price")
    offered = checks.mask(eligible, N.shape[0]) & (price * N >= cost)
    tau = edge_prices(N, price * N, D, lam)
    return exact_graph(N, K, tau, np.broadcast_to(offered[None, :], D.shape))


def posted(A, N, price) -> np.ndarray:
    """Posted-price payments: on every edge i <- j the buyer pays price * N_j."""
    N = checks.sizes(N)
    A = checks.graph(A, N.shape[0])
    price = checks.scalar(price, "price")
    pi = np.where(A, price * N[None, :], 0.0)
    return pi - pi.T


def vcg(N, cost, K, D, lam, *, eligible=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VCG with Clarke pivot on the separable welfare sum_i [G_i(S_i) - sum_{j in S_i} tau_ij]
    under exact clearing. Returns (A, P, platform).

    Participant k (buyer and seller at once) is removed entirely to compute its pivot. Since
    the welfare separates by buyer, k's net VCG payment is

        t_k = sum_{j in S_k} cost_j - cost_k * #importers_k - sum_l Delta_lk,
        Delta_lk = OPT_l - OPT_l(without seller k)   (0 unless l imports k),

    settled as: on each edge l <- j the buyer pays the seller its reported cost (P), and the
    platform pays each seller its externalities Delta (platform[k] = -sum_l Delta_lk <= 0,
    the platform's deficit). Misreporting one's cost never pays; the guarantee does not cover
    data sizes, which also enter the other buyers' valuations. OPT_l(without seller k) comes
    from :func:`mechanisms.ipfl.best_values_without`.
    """
    N, cost, K, D, lam = checks.market(N, cost, K, D, lam)
    m = N.shape[0]
    allowed = np.broadcast_to(checks.mask(eligible, m)[None, :], (m, m)) & ~np.eye(m, dtype=bool)
    tau = edge_prices(N, cost, D, lam)
    A = exact_graph(N, K, tau, allowed)
    edge = np.where(A, cost[None, :], 0.0)
    platform = np.zeros(m)
    for buyer in np.flatnonzero(A.any(axis=1)):
        sellers = np.flatnonzero(allowed[buyer])
        sizes, prices = N[sellers], tau[buyer, sellers]
        chosen = A[buyer, sellers]
        best = import_value(K[buyer], N[buyer], sizes, prices, chosen)
        worst = best_values_without(K[buyer], N[buyer], sizes, prices, chosen)
        platform[sellers[chosen]] -= best - worst
    return A, edge - edge.T, platform


def shapley_values(
    value: Callable[[np.ndarray], np.ndarray],
    n_players: int,
    *,
    rng: np.random.Generator | None = None,
    n_permutations: int = 1000,
    exact_limit: int = EXACT_SHAPLEY_LIMIT,
) -> np.ndarray:
    """Shapley values of a cooperative game with n_players.

    `value(M)` maps a boolean (k, n_players) matrix of coalitions (one per row) to their
    (k,) worths, so a game can be evaluated in one vectorised call. Up to `exact_limit`
    players the values are exact (all 2^n coalitions); beyond, they are estimated from about
    `n_permutations` sampled marginal contributions per player (random orders drawn from
    `rng`, required then, stratified by position). Either way they sum to v(all) - v(empty).
    """
    if n_players < 0:
        raise ValueError(f"n_players = {n_players} is invalid: allowed range is [0, inf)")
    if n_players == 0:
        return np.zeros(0)
    if n_players <= exact_limit:
        return _exact_shapley(value, n_players)
    if rng is None:
        raise ValueError(f"rng is required to estimate Shapley values of {n_players} players")
    if n_permutations < 1:
        raise ValueError(f"n_permutations = {n_permutations} is invalid: allowed range is >= 1")
    return _sampled_shapley(value, n_players, rng, n_permutations)


def _exact_shapley(value, n: int) -> np.ndarray:
    codes = np.arange(1 << n)
    members = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    worth = np.asarray(value(members), dtype=np.float64)
    size = members.sum(axis=1)
    weight = np.array([math.factorial(t) * math.factorial(n - t - 1) for t in range(n)])
    weight = weight / math.factorial(n)
    phi = np.empty(n)
    for j in range(n):
        without = codes[~members[:, j]]
        phi[j] = weight[size[without]] @ (worth[without | (1 << j)] - worth[without])
    return phi


def _sampled_shapley(value, n: int, rng: np.random.Generator, n_permutations: int) -> np.ndarray:
    """Permutation sampling stratified by position (Maleki et al. 2013): for each player and
    each position t in a random order, the coalition before it is a uniform random t-subset
    of the others; ceil(n_permutations / n) draws per position give every player about
    n_permutations marginal contributions. Stratifying removes the between-position variance,
    which dominates for diminishing-returns games such as the gain game. The estimates are
    shifted equally so that they sum to v(all) - v(empty) exactly."""
    draws = max(1, math.ceil(n_permutations / n))
    size = np.arange(n)[:, None, None]
    phi = np.empty(n)
    for j in range(n):
        others = np.flatnonzero(np.arange(n) != j)
        keys = rng.random((n, draws, n - 1))
        cut = np.concatenate([np.sort(keys, axis=2), np.ones((n, draws, 1))], axis=2)
        members = np.zeros((n, draws, n), dtype=bool)
        members[..., others] = keys < np.take_along_axis(
            cut, np.broadcast_to(size, (n, draws, 1)), axis=2
        )
        before = np.asarray(value(members.reshape(-1, n)), dtype=np.float64)
        members[..., j] = True
        after = np.asarray(value(members.reshape(-1, n)), dtype=np.float64)
        phi[j] = (after - before).mean()
    ends = np.asarray(value(np.array([[False] * n, [True] * n])), dtype=np.float64)
    return phi + (ends[1] - ends[0] - phi.sum()) / n


def shapley(A, N, K, share=1.0, *, n_permutations: int = 1000, seed: int = 0) -> np.ndarray:
    """Shapley gain sharing: each buyer i pays each imported seller j share * phi_j, where
    phi are the Shapley values of the game v(T) = G_i(T) over the sellers S_i it imports, so
    with the default share 1 each buyer splits its whole realized gain G_i(S_i) among them
    (a smaller share keeps part of it). Exact up to 12 sellers, a permutation estimate
    seeded by (seed, i) beyond."""
    N = checks.sizes(N)
    m = N.shape[0]
    A = checks.graph(A, m)
    K = checks.valuations(K, m)
    share = checks.scalar(share, "share", high=1.0)
    pi = np.zeros((m, m))
    for buyer in np.flatnonzero(A.any(axis=1)):
        sellers = np.flatnonzero(A[buyer])
        sizes = N[sellers]

        def worth(M, k=K[buyer], n=N[buyer], sizes=sizes):
            return gain(k, n, n + M @ sizes)

        phi = shapley_values(
            worth,
            sellers.size,
            rng=np.random.default_rng([seed, int(buyer)]),
            n_permutations=n_permutations,
        )
        pi[buyer, sellers] = share * phi
    return pi - pi.T
