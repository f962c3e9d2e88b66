"""The iPFL market rules: gain, edge prices, clearing (greedy and exact), payments,
realized utilities, welfare and the proxy aggregation target.

Notation: m participants, N data sizes, K valuations (K_i = 0: pure seller), cost the
sharing cost per importer, D = 1 - cos dissimilarities, lam and eta hyper-parameters.
Buyer i importing the set S of sellers gains

    G_i(S) = sqrt(K_i / N_i) - sqrt(K_i / (N_i + sum_{j in S} N_j)),

and edge i <- j is priced tau_ij = cost_j + lam * D_ij * N_j / N_i. All market maths is
float64 numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mechanisms import checks, exact
from mechanisms.similarity import unit_rows

if TYPE_CHECKING:
    from mechanisms.robust import Combiner

_BISECTION_STEPS = 200
_REPLACED_FROM = 8  # best sets this large first try replacements for each member
_SOLVED_BETWEEN = 8  # problems without a member solved between runs of step 1's rule
_SHARED_FROM = 8  # this many problems without a member left share one flip table


def gain(K, n_own, n_total):
    """G = sqrt(K / n_own) - sqrt(K / n_total): the value of growing one's data pool from
    n_own to n_total samples; 0 where K == 0 or n_total == n_own. Broadcasts. K lies in
    [0, 1e100], n_own in [1e-100, 1e100] and n_total between n_own and 1e150.

    Written as sqrt(K) (n_total - n_own) / (sqrt(n_own) sqrt(n_total) (sqrt(n_own) +
    sqrt(n_total))) so that small imports do not lose digits to cancellation.
    """
    K = np.asarray(K, dtype=np.float64)
    a = np.asarray(n_own, dtype=np.float64)
    b = np.asarray(n_total, dtype=np.float64)
    if not np.isfinite(K).all() or (K < 0).any() or (K > checks.VALUATIONS).any():
        raise ValueError(f"K = {K!r} is invalid: valuations must lie in "
                         f"{checks.interval(0.0, checks.VALUATIONS)}")
    if not np.isfinite(a).all() or (a < checks.SIZES[0]).any() or (a > checks.SIZES[1]).any():
        raise ValueError(f"n_own = {a!r} is invalid: own data sizes must lie in "
                         f"{checks.interval(*checks.SIZES)}")
    if not np.isfinite(b).all() or (b < a).any() or (b > checks.POOLS).any():
        raise ValueError(f"n_total = {b!r} is invalid: it must lie between n_own and "
                         f"{checks.POOLS:g}")
    sa, sb = np.sqrt(a), np.sqrt(b)
    out = np.sqrt(K) * (b - a) / (sa * sb * (sa + sb))
    return float(out) if out.ndim == 0 else out


def edge_prices(N, cost, D, lam) -> np.ndarray:
    """tau (m, m): tau[i, j] = cost_j + lam * D_ij * N_j / N_i, the price buyer i must beat
    to import seller j (the seller's cost plus a heterogeneity charge). Diagonal is 0."""
    N, cost, _, D, lam = checks.market(N, cost, 0.0, D, lam)
    return _prices(N, cost, D, lam)


def _prices(N, cost, D, lam):
    tau = cost[None, :] + lam * D * N[None, :] / N[:, None]
    np.fill_diagonal(tau, 0.0)
    return tau


def _price_inputs(N, K, tau):
    N = checks.sizes(N)
    m = N.shape[0]
    K = checks.valuations(K, m)
    tau = np.asarray(tau, dtype=np.float64)
    if tau.shape != (m, m) or np.isnan(tau).any():
        raise ValueError(f"tau must be a ({m}, {m}) array without NaN, got shape {tau.shape}")
    return N, K, tau


def thresholds(N, K, tau) -> np.ndarray:
    """x* (m, m): for buyer i and seller j, the pool size x > N_j at which importing j stops
    paying, i.e. sqrt(K_i / (x - N_j)) - sqrt(K_i / x) = tau_ij.

    The left side falls strictly from +inf to 0, so the root is unique; it is bracketed in
    [max(N_j, B), N_j + min(B, K_i / tau^2)] with B = (sqrt(K_i) N_j / (2 tau))^(2/3) (mean
    value bounds on the derivative of -sqrt(K / x)) and found by bisection on all pairs at
    once. tau <= 0 gives +inf; buyers with K_i = 0 and the diagonal give -inf (never import).
    """
    N, K, tau = _price_inputs(N, K, tau)
    m = N.shape[0]
    sqrt_k = np.broadcast_to(np.sqrt(K)[:, None], (m, m))
    size = np.broadcast_to(N[None, :], (m, m))
    buyer = (K > 0)[:, None] & ~np.eye(m, dtype=bool)
    free = buyer & (tau <= 0)
    solve = buyer & (tau > 0)
    s_k, n_j, t = sqrt_k[solve], size[solve], tau[solve]
    with np.errstate(over="ignore"):  # a tiny tau puts the root beyond float range: +inf
        bound = (s_k * n_j / (2.0 * t)) ** (2.0 / 3.0)
        lo = np.maximum(n_j, bound)
        hi = np.maximum(lo, n_j + np.minimum(bound, (s_k / t) ** 2))
    # f(x) > t  <=>  sqrt(K) N_j > t sqrt(x - N_j) sqrt(x) (sqrt(x - N_j) + sqrt(x))
    lhs = s_k * n_j
    for _ in range(_BISECTION_STEPS):
        mid = lo + hi
        mid *= 0.5
        if not ((mid > lo) & (mid < hi)).any():
            break
        sa = np.sqrt(mid - n_j)
        sb = np.sqrt(mid)
        rhs = sa * sb
        sa += sb
        rhs *= sa
        rhs *= t
        above = lhs > rhs
        np.copyto(lo, mid, where=above)
        np.copyto(hi, mid, where=~above)
    x = np.full((m, m), -np.inf)
    x[free] = np.inf
    x[solve] = hi
    return x


def clear(N, cost, K, D, lam, *, eligible=None) -> np.ndarray:
    """The reference greedy clearing rule: A (m, m) bool, A[i, j] = buyer i imports seller j.

    For each buyer with K_i > 0: sort the eligible sellers by threshold x*_ij descending
    (ties by index), start from n = N_i and take seller j while n + N_j < x*_ij, stopping at
    the first seller that fails. Because the taken sellers have the largest thresholds, every
    imported seller's final marginal gain still exceeds its price (sellers are individually
    rational). Vectorised over all buyers.
    """
    N, cost, K, D, lam = checks.market(N, cost, K, D, lam)
    allowed = checks.mask(eligible, N.shape[0])
    x = thresholds(N, K, _prices(N, cost, D, lam))
    x[:, ~allowed] = -np.inf
    order = np.argsort(-x, axis=1, kind="stable")
    x_sorted = np.take_along_axis(x, order, axis=1)
    pool = N[:, None] + np.cumsum(N[order], axis=1)
    take = np.logical_and.accumulate(pool < x_sorted, axis=1)
    A = np.zeros((N.shape[0],) * 2, dtype=bool)
    np.put_along_axis(A, order, take, axis=1)
    return A


def import_value(K: float, n_own: float, sizes, prices, chosen) -> float:
    """G(S) - sum_{j in S} price_j for one buyer and the import set `chosen` (bool mask)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    chosen = np.asarray(chosen, dtype=bool)
    gain_s = exact.marginal(np.sqrt(K), n_own, sizes[chosen].sum())
    return float(gain_s - np.asarray(prices)[chosen].sum())


def best_import_set(K: float, n_own: float, sizes, prices) -> np.ndarray:
    """The import set maximising G(S) - sum_{j in S} price_j for one buyer, exactly (to
    float64 rounding of the objective); the method and why it is exact and fast are in
    :mod:`mechanisms.exact`. Equal values resolve deterministically."""
    K, n_own, sizes, prices = _buyer(K, n_own, sizes, prices)
    return exact.best_set(float(np.sqrt(K)), n_own, sizes, prices)


def _buyer(K, n_own, sizes, prices) -> tuple[float, float, np.ndarray, np.ndarray]:
    """One buyer's problem, validated: (K, n_own, sizes, prices)."""
    sizes = checks.sizes(sizes, "sizes")
    prices = checks.numbers(prices, "prices")
    if prices.shape != sizes.shape or not np.isfinite(prices).all():
        raise ValueError(f"prices must be finite with shape {sizes.shape}, got {prices.shape}")
    n_own = checks.scalar(n_own, "n_own", *checks.SIZES)
    checks.spread(np.append(sizes, n_own), "sizes with n_own")
    return checks.scalar(K, "K", high=checks.VALUATIONS), n_own, sizes, prices


def best_values_without(K: float, n_own: float, sizes, prices, chosen) -> np.ndarray:
    """For each member j of `chosen` (ascending j): the value G(S) - sum_{j in S} price_j
    of the best import set without j, at most that of `chosen`.

    Step 1's last rule of :mod:`mechanisms.exact`, run for all members at once, settles the
    sellers of each problem without j, and the few it leaves undecided are enumerated. The
    rule settles more the better the sets known without each j. In a set of _REPLACED_FROM
    members or more, those left first get the sets that drop j and toggle at most two other
    sellers (those whose pool change lies nearest j's size), which settle j when worth
    within tol of `chosen` (with prices per sample tied exactly, one nearly always is), and
    then, with sizes on a lattice and _SHARED_FROM of them left, one flip table shared by
    all of them settles most (see :func:`mechanisms.exact.table_values_without`). The
    problems still left are solved exactly, _SOLVED_BETWEEN at a time, those with the best
    set known first, each over the sellers the rule left undecided; the best set S found
    without j gives every other member j' of S the set S + j - j', and the rule runs again
    for all problems left. Used by VCG for every buyer's externality on each of its sellers."""
    K, n_own, sizes, prices = _buyer(K, n_own, sizes, prices)
    chosen = np.asarray(chosen, dtype=bool)
    if chosen.shape != sizes.shape:
        raise ValueError(f"chosen must have shape {sizes.shape}, got {chosen.shape}")
    best = import_value(K, n_own, sizes, prices, chosen)
    tol = exact.TOL_REL * np.sqrt(K / n_own)
    sqrt_k, members = float(np.sqrt(K)), np.flatnonzero(chosen)
    floors = np.full(members.size, -np.inf)  # the best value known without each member
    replaced = members.size < _REPLACED_FROM  # whether replacements were tried (or skipped)
    values = np.full(members.size, np.nan)
    left = np.arange(members.size)
    while left.size:
        found, into, open_ = exact.values_without(sqrt_k, n_own, sizes, prices, members[left],
                                                  floors[left])
        near = np.isnan(found) & (floors[left] >= best - tol)
        values[left] = np.minimum(np.where(near, floors[left], found), best)
        kept = np.flatnonzero(np.isnan(values[left]))
        kept = kept[np.argsort(-floors[left[kept]], kind="stable")]  # best known sets first
        left, into, open_ = left[kept], into[kept], open_[kept]
        if not replaced and left.size:
            floors = exact.replacement_values(sqrt_k, n_own, sizes, prices, chosen)
            replaced = True
            near = floors[left] >= best - tol
            values[left[near]] = np.minimum(floors[left[near]], best)
            left, into, open_ = left[~near], into[~near], open_[~near]
            if left.size >= _SHARED_FROM:  # else they are solved at once
                shared = exact.table_values_without(sqrt_k, n_own, sizes, prices, members[left],
                                                    floors[left])
                values[left] = np.minimum(shared, best)
                left = left[np.isnan(shared)]
                continue
        solved = slice(_SOLVED_BETWEEN)
        for i, sure, undecided in zip(left[solved].tolist(), into[solved], open_[solved],
                                      strict=True):
            without = sure.copy()
            without[undecided] = exact.best_set(
                sqrt_k, n_own + sizes[sure].sum(), sizes[undecided], prices[undecided],
                floors[i] - np.sqrt(K / n_own) + prices[sure].sum())
            values[i] = min(import_value(K, n_own, sizes, prices, without), best)
            swapped = without[members]  # the members j' of S, each given S + j - j'
            floors[swapped] = np.maximum(floors[swapped], _swapped_values(
                sqrt_k, n_own, sizes, prices, without, members[i], members[swapped]))
        left = left[_SOLVED_BETWEEN:]
    return values


def _swapped_values(sqrt_k: float, n_own: float, sizes: np.ndarray, prices: np.ndarray,
                    chosen: np.ndarray, added: int, dropped: np.ndarray) -> np.ndarray:
    """The values G - p of the set `chosen` with seller `added` taken and each of `dropped`
    (members of it) left out in turn."""
    pool = sizes[chosen].sum() + sizes[added] - sizes[dropped]
    paid = prices[chosen].sum() + prices[added] - prices[dropped]
    return exact.marginal(sqrt_k, n_own, pool) - paid


def exact_graph(N, K, tau, allowed=None) -> np.ndarray:
    """Per buyer, the exact best import set under an arbitrary price matrix tau (m, m).

    `allowed` (bool (m, m), optional) restricts which edges may be used. Used by exact
    clearing, VCG and the posted-price market.
    """
    N, K, tau = _price_inputs(N, K, tau)
    m = N.shape[0]
    ok = ~np.eye(m, dtype=bool)
    if allowed is not None:
        allowed = np.asarray(allowed)
        if allowed.shape != (m, m) or allowed.dtype != np.bool_:
            raise ValueError(f"allowed must be a boolean ({m}, {m}) array, got {allowed.shape}")
        ok &= allowed
    A = np.zeros((m, m), dtype=bool)
    for i in np.flatnonzero(K > 0):
        sellers = np.flatnonzero(ok[i])
        if sellers.size:
            A[i, sellers] = exact.best_set(
                float(np.sqrt(K[i])), N[i], N[sellers], tau[i, sellers]
            )
    return A


def clear_exact(N, cost, K, D, lam, *, eligible=None) -> np.ndarray:
    """Welfare-optimal clearing: for every buyer, the import set maximising
    G_i(S) - sum_{j in S} tau_ij exactly (the problem separates by buyer).

    Exact to float64 rounding of the objective, and fast also when sellers' prices per sample
    tie (prices proportional to sizes): :mod:`mechanisms.exact` explains the method."""
    N, cost, K, D, lam = checks.market(N, cost, K, D, lam)
    allowed = np.broadcast_to(checks.mask(eligible, N.shape[0])[None, :], D.shape)
    return exact_graph(N, K, _prices(N, cost, D, lam), allowed)


def marginal_gains(A, N, K) -> np.ndarray:
    """M (m, m): M[i, j] = G_i(S_i) - G_i(S_i minus j) on edges of A, 0 elsewhere."""
    total = N + A @ N
    with np.errstate(invalid="ignore", divide="ignore"):
        M = exact.marginal(np.sqrt(K)[:, None], total[:, None] - N[None, :], N[None, :])
    return np.where(A, M, 0.0)


def payments(A, N, K, D, lam) -> np.ndarray:
    """iPFL payments: P (m, m) antisymmetric, P[i, j] = net amount i pays j.

    On each edge i <- j the buyer pays pi_ij = [G_i(S_i) - G_i(S_i minus j)] -
    lam * D_ij * N_j / N_i (reported sizes). Reverse edges net out, so P = pi - pi^T exactly
    and the round's payments sum to zero (strong budget balance).
    """
    N, _, K, D, lam = checks.market(N, 0.0, K, D, lam)
    A = checks.graph(A, N.shape[0])
    pi = np.where(A, marginal_gains(A, N, K) - lam * D * N[None, :] / N[:, None], 0.0)
    return pi - pi.T


def utilities(A, P, N_true, cost_true, K, platform=None) -> np.ndarray:
    """Realized utility U (m,) with TRUE sizes and costs:
    U_i = G_i(S_i; N_true) - sum_j P[i, j] - platform_i - cost_true_i * #importers of i.

    `platform` (m,) is the net amount each participant pays the platform (None: zero), so
    mechanisms that are not budget balanced (VCG) are scored correctly.
    """
    N = checks.sizes(N_true, "N_true")
    m = N.shape[0]
    A = checks.graph(A, m)
    cost = checks.per_client(cost_true, m, "cost_true")
    K = checks.valuations(K, m)
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (m, m) or not np.isfinite(P).all():
        raise ValueError(f"P must be a finite ({m}, {m}) array, got shape {P.shape}")
    fee = np.zeros(m) if platform is None else np.asarray(platform, dtype=np.float64)
    if fee.shape != (m,) or not np.isfinite(fee).all():
        raise ValueError(f"platform must be a finite ({m},) array, got shape {fee.shape}")
    return gain(K, N, N + A @ N) - P.sum(axis=1) - fee - cost * A.sum(axis=0)


def welfare(A, N, cost, K, D, lam) -> float:
    """sum over buyers of G_i(S_i) - sum_{j in S_i} tau_ij: the objective clearing maximises."""
    N, cost, K, D, lam = checks.market(N, cost, K, D, lam)
    A = checks.graph(A, N.shape[0])
    tau = _prices(N, cost, D, lam)
    return float(gain(K, N, N + A @ N).sum() - tau[A].sum())


def proxy_targets(A, N, uploads, theta0, own, eta, combiner: Combiner | None = None) -> np.ndarray:
    """Aggregation targets V (m, P) for next round's proximal local training:

        v_i = own_i + eta * sum_j w_ij grad_a cos(a, b_j),  a = own_i - theta0,
        b_j = upload_j - theta0,  w_ij = A_ij N_j / N_i,

    with grad_a cos(a, b) = (b/|b| - cos(a, b) a/|a|) / |a|: one normalisation and two
    matrix products for all clients. Non-finite or zero uploads get weight 0. A client whose
    own update is zero or non-finite (no direction to move) gets v_i = own_i.

    `combiner(C, w)` (optional, e.g. a robust aggregator) replaces the weighted sum w @ C of
    each buyer's per-seller gradient terms C.
    """
    N = checks.sizes(N)
    m = N.shape[0]
    A = checks.graph(A, m)
    eta = checks.scalar(eta, "eta", low_open=True)
    uploads = checks.numbers(uploads, "uploads", keep_float32=True)
    own = checks.numbers(own, "own", keep_float32=True)
    if own.ndim != 2 or own.shape[0] != m or uploads.shape != own.shape:
        raise ValueError(
            f"uploads and own must both have shape ({m}, P), got {uploads.shape} and {own.shape}"
        )
    theta0 = checks.numbers(theta0, "theta0", keep_float32=True)
    if theta0.shape != (own.shape[1],) or not np.isfinite(theta0).all():
        raise ValueError(
            f"theta0 must be finite with shape ({own.shape[1]},), got shape {theta0.shape}"
        )
    dtype = np.result_type(uploads.dtype, own.dtype, theta0.dtype, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        b_hat, _, b_ok = unit_rows(uploads.astype(dtype, copy=False) - theta0.astype(dtype))
        a_hat, a_norm, a_ok = unit_rows(own.astype(dtype, copy=False) - theta0.astype(dtype))
    W = np.where(A & b_ok[None, :], N[None, :] / N[:, None], 0.0)
    W[~a_ok, :] = 0.0
    cos = (a_hat @ b_hat.T).astype(np.float64)
    inv_norm = np.where(a_ok, 1.0 / np.where(a_ok, a_norm, 1.0), 0.0)
    V = own.astype(dtype, copy=True)
    if combiner is None:
        step = W.astype(dtype) @ b_hat - ((W * cos).sum(axis=1).astype(dtype)[:, None] * a_hat)
        V += (eta * inv_norm).astype(dtype)[:, None] * step
        return V
    for i in np.flatnonzero(W.any(axis=1)):
        sellers = np.flatnonzero(W[i])
        C = (b_hat[sellers] - cos[i, sellers].astype(dtype)[:, None] * a_hat[i]) * inv_norm[i]
        V[i] += eta * np.asarray(combiner(C, W[i, sellers]), dtype=dtype)
    return V
