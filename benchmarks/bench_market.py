"""Server-side market work per round, measured side by side in one run.

1. One market round (dissimilarity of float32 uploads + greedy clearing + iPFL payments +
   realized utilities) for m = 10, 50, 200 clients with 10,000-parameter uploads; exact
   clearing and the proxy targets are timed alongside.
2. Adversarial ties for exact clearing: cost proportional to data size (every seller has the
   same price per sample, exactly or up to 1e-6 noise) at m = 200, three coprime data sizes
   with tied prices at m = 200, integer sizes in a narrow band (1000 to 1099) at m = 200,
   some of them misreported by a factor 1.3, or 32 of them by random factors (sizes on no
   lattice), sizes on no lattice at all in narrow bands with prices per sample tied exactly
   or to 1e-9 to 1e-4 (once the slowest known kind), sizes in thousands stored in float32
   (near a decimal lattice) with prices per sample tied exactly or to 1e-6, integer sizes in
   two bands near 10^3 and 10^6, real ones in two bands 1 % wide near 10^3 and 3 * 10^4 and
   in three bands 10 % wide near 10^2, 10^4 and 10^6 with prices per sample tied to 1e-6
   (and exactly in the first), and integer ones in two bands 1 % wide near 10^3 and 10^6
   with prices per sample tied exactly, timed next to greedy clearing; a posted-price market
   at m = 200 with sizes over six orders of magnitude, with the large models offered and
   with every model offered, the posted-price market without heterogeneity charge (lam = 0)
   at m = 50, and VCG next to exact clearing at m = 200 with prices per sample tied exactly,
   up to 1 % apart and up to 30 % apart (a solve without each imported seller, unless
   replacements or step 1's rule, run for all of a buyer's sellers at once, settle it), and
   with integer sizes and prices per sample tied to 1e-6 (one flip table shared by a
   buyer's problems without one seller).
3. pFedGraph's graph at m = 50: exact simplex projection vs. the reference's per-row QP with
   cvxpy, asserting agreement to 1e-6. The speedup is printed last.

Run: .venv/bin/python benchmarks/bench_market.py
"""

from __future__ import annotations

import statistics
import time
from functools import partial

import cvxpy as cp
import numpy as np

import mechanisms
from mechanisms import ipfl, payments, pfedgraph
from mechanisms.similarity import dissimilarity

N_PARAMS = 10_000
K_VALUE, COST, LAM, ETA, ALPHA = 5e5, 1.0, 1.0, 5.0, 0.8


def best_of(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_round(m: int, seed: int):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=N_PARAMS).astype(np.float32)
    centres = rng.normal(size=(4, N_PARAMS)).astype(np.float32)
    noise = rng.normal(size=(m, N_PARAMS)).astype(np.float32)
    uploads = theta0 + 0.05 * centres[np.arange(m) % 4] + 0.05 * noise
    N = rng.integers(100, 2000, m).astype(np.float64)
    return theta0, uploads, N


def market_round(theta0, uploads, N):
    m = len(N)
    D = dissimilarity(uploads, theta0)
    A = ipfl.clear(N, COST, K_VALUE, D, LAM)
    P = ipfl.payments(A, N, K_VALUE, D, LAM)
    return ipfl.utilities(A, P, N, np.full(m, COST), K_VALUE)


def reference_qp_graph(N, D, alpha):
    """The reference's way: one cvxpy QP per row (tight tolerances for the 1e-6 check)."""
    m = len(N)
    p = N / N.sum()
    cos = 1.0 - D
    np.fill_diagonal(cos, 1.0)
    d = np.where(cos > pfedgraph.SIMILAR_ENOUGH, -1.0, -cos)
    W = np.zeros((m, m))
    for i in range(m):
        x = cp.Variable(m)
        objective = cp.Minimize(alpha * cp.sum_squares(x) + (d[i] - 2 * alpha * p) @ x)
        cp.Problem(objective, [x >= 0, cp.sum(x) == 1]).solve(
            solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
        )
        W[i] = x.value
    return W


def tied_market(m: int, scale: float, noise: float, seed: int):
    """Cost = scale * N (times 1 + noise * U(-1, 1)): prices per sample tie across sellers."""
    rng = np.random.default_rng(seed)
    N = rng.uniform(50, 2000, m)
    cost = scale * N * (1 + noise * rng.uniform(-1, 1, m))
    return N, cost, K_VALUE, np.zeros((m, m)), LAM


def banded_market(scales, width: float, noise: float, integral: bool = False):
    """m = 200 sizes in bands `width` wide near `scales` (integers when `integral`; seed 7),
    cost = 1e-5 * N (times 1 + noise * U(-1, 1)), K = 4e-8 * (median size)^3, D = 0."""
    rng = np.random.default_rng(7)
    N = rng.choice(scales, 200) * rng.uniform(1, 1 + width, 200)
    N = np.rint(N) if integral else N
    cost = 1e-5 * N * (1 + noise * rng.uniform(-1, 1, 200))
    K = 4e-8 * float(np.median(N)) ** 3
    return N, cost, np.full(200, K), np.zeros((200, 200)), LAM


def exact_next_to_greedy(label: str, market, repeats: int = 3) -> None:
    """Print exact and greedy clearing times of one market, side by side."""
    t_exact = best_of(partial(ipfl.clear_exact, *market), repeats)
    t_greedy = best_of(partial(ipfl.clear, *market), 3)
    print(
        f"{label} clear_exact_seconds={t_exact:.4f} clear_seconds={t_greedy:.4f} "
        f"exact_over_greedy={t_exact / t_greedy:.1f}"
    )


def tie_benchmarks() -> None:
    for scale in (1e-5, 0.005):
        for noise in (0.0, 1e-6):
            exact_next_to_greedy(f"tied_prices m=200 cost={scale}*N noise={noise}",
                                 tied_market(200, scale, noise, seed=3))
    N = np.random.default_rng(0).choice(np.array([123.0, 142.0, 493.0]), 200)
    exact_next_to_greedy("three_sizes m=200 cost=1e-4*N",
                         (N, 1e-4 * N, K_VALUE, np.zeros((200, 200)), LAM))
    rng = np.random.default_rng(1)
    N = rng.integers(1000, 1100, 200).astype(float)
    for noise in (0.0, 1e-6, 1e-9):
        cost = 1e-5 * N * (1 + noise * rng.uniform(-1, 1, 200))
        exact_next_to_greedy(f"narrow_band m=200 sizes=1000..1099 cost=1e-5*N noise={noise}",
                             (N, cost, K_VALUE, np.zeros((200, 200)), LAM), 1 if noise else 3)
    rng = np.random.default_rng(0)
    N = rng.integers(50, 2000, 200).astype(float)
    N[rng.random(200) < 0.1] *= 1.3  # a tenth report 1.3 times their data: no common lattice
    exact_next_to_greedy("misreported_sizes m=200 sizes=50..1999 (10% x1.3) cost=0.005*N",
                         (N, 0.005 * N, K_VALUE, np.zeros((200, 200)), LAM))
    rng = np.random.default_rng(0)
    N = rng.integers(1000, 1100, 200).astype(float)
    N[rng.random(200) < 0.1] *= 1.3
    cost = 1e-5 * N * (1 + 1e-6 * rng.uniform(-1, 1, 200))
    exact_next_to_greedy("misreported_narrow_band m=200 sizes=1000..1099 (10% x1.3) "
                         "cost=1e-5*N noise=1e-06",
                         (N, cost, K_VALUE, np.zeros((200, 200)), LAM), 1)
    rng = np.random.default_rng(0)
    N = rng.integers(1000, 1100, 200).astype(float)
    N[rng.choice(200, 32, replace=False)] *= rng.uniform(0.5, 2.0, 32)  # on no lattice
    exact_next_to_greedy("random_factors_narrow_band m=200 sizes=1000..1099 (32 x U(0.5,2)) "
                         "cost=1e-3*N", (N, 1e-3 * N, K_VALUE, np.zeros((200, 200)), LAM), 1)
    N = np.random.default_rng(0).uniform(1000, 1100, 200)  # sizes on no lattice at all
    for K in (5e5, 6.8e6):  # best sets of four sellers, and of ten
        exact_next_to_greedy(f"real_narrow_band m=200 sizes=U(1000,1100) K={K:g} cost=1e-3*N",
                             (N, 1e-3 * N, np.full(200, K), np.zeros((200, 200)), LAM), 1)
    cost = 1e-3 * N * (1 + 1e-6 * np.random.default_rng(1).uniform(-1, 1, 200))
    exact_next_to_greedy("real_narrow_band m=200 sizes=U(1000,1100) K=5e+05 cost=1e-3*N "
                         "noise=1e-06", (N, cost, np.full(200, 5e5), np.zeros((200, 200)), LAM), 1)
    cost = 1e-3 * N * (1 + 1e-4 * np.random.default_rng(1).uniform(-1, 1, 200))  # best sets of
    exact_next_to_greedy("real_narrow_band m=200 sizes=U(1000,1100) K=2.51e+07 cost=1e-3*N "
                         "noise=1e-04",  # about 17 sellers, inside the range such sets reach
                         (N, cost, np.full(200, 2.51e7), np.zeros((200, 200)), LAM), 1)
    N = np.random.default_rng(2).uniform(1000, 1010, 200)  # best sets of 84 sellers
    exact_next_to_greedy("real_narrow_band m=200 sizes=U(1000,1010) K=2.51e+05 cost=1e-5*N",
                         (N, 1e-5 * N, np.full(200, 2.51e5), np.zeros((200, 200)), LAM), 1)
    cost = 1e-5 * N * (1 + 1e-9 * np.random.default_rng(1).uniform(-1, 1, 200))  # all flips
    exact_next_to_greedy("real_narrow_band m=200 sizes=U(1000,1010) K=2.51e+05 cost=1e-5*N "
                         "noise=1e-09",  # together cost a few tol; best sets flip 38 or more
                         (N, cost, np.full(200, 2.51e5), np.zeros((200, 200)), LAM), 1)
    N = (np.random.default_rng(5).integers(500, 601, 200) / 1000).astype(np.float32)
    N = N.astype(np.float64)  # near thousandths, on a binary lattice too fine for tables
    for noise in (0.0, 1e-6):
        cost = 1e-3 * N * (1 + noise * np.random.default_rng(1).uniform(-1, 1, 200))
        exact_next_to_greedy(f"float32_sizes m=200 sizes=float32(500..600/1000) K=0.02 "
                             f"cost=1e-3*N noise={noise}",
                             (N, cost, np.full(200, 0.02), np.zeros((200, 200)), LAM))
    rng = np.random.default_rng(3)  # two scales: integers near 10^3 and near 10^6
    N = np.where(rng.random(200) < 0.5, rng.integers(1000, 1100, 200),
                 rng.integers(1_000_000, 1_100_000, 200)).astype(float)
    cost = 1e-5 * N * (1 + 1e-6 * rng.uniform(-1, 1, 200))
    exact_next_to_greedy("two_bands m=200 sizes=1000..1099|1e6..1.1e6 K=1e12 cost=1e-5*N "
                         "noise=1e-06", (N, cost, np.full(200, 1e12), np.zeros((200, 200)), LAM), 1)
    for label, scales, width, noise, integral in (  # (two_bands_posted: tables of bits
            ("two_close_bands m=200 sizes=U(1e3,1.01e3)|U(3e4,3.03e4)",  # beyond reach)
             [1e3, 3e4], 0.01, 1e-6, False),
            ("two_close_bands_tied m=200 sizes=U(1e3,1.01e3)|U(3e4,3.03e4)",
             [1e3, 3e4], 0.01, 0.0, False),
            ("three_bands m=200 sizes=U(1,1.1)*10^(2|4|6)", [1e2, 1e4, 1e6], 0.1, 1e-6, False),
            ("two_bands_posted m=200 sizes=U(1,1.01)*10^(3|6) integers",
             [1e3, 1e6], 0.01, 0.0, True)):
        market = banded_market(scales, width, noise, integral)
        exact_next_to_greedy(f"{label} K={market[2][0]:.3g} cost=1e-5*N noise={noise:g}",
                             market, 1)
    rng = np.random.default_rng(1)  # heavy-tailed sizes, near ties for large buyers
    N = np.rint(10 ** rng.uniform(1, 7, 200))
    D = rng.uniform(0, 1, (200, 200))
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    posted = mechanisms.get("posted", price=1e-5, lam=1e-3)
    t_heavy = best_of(partial(posted.market, N, COST, 1e11, D), 3)
    print(f"heavy_tailed_posted m=200 sizes=10^U(1,7) price=1e-5 lam=1e-3 K=1e11 "
          f"seconds={t_heavy:.4f}")
    posted = mechanisms.get("posted", price=1e-5, lam=0.1)
    t_offered = best_of(partial(posted.market, N, 0.0, 1e11, D), 3)  # every model offered
    print(f"heavy_tailed_posted_all_offered m=200 sizes=10^U(1,7) price=1e-5 lam=0.1 K=1e11 "
          f"cost=0 seconds={t_offered:.4f}")
    m = 50
    rng = np.random.default_rng(50)
    N = rng.uniform(200, 400, m)
    D = rng.uniform(0, 1, (m, m))
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    posted = mechanisms.get("posted", lam=0.0)
    ipfl_preset = mechanisms.get("ipfl", lam=0.0)
    t_posted = best_of(partial(posted.market, N, COST, K_VALUE, D), 3)
    t_ipfl = best_of(partial(ipfl_preset.market, N, COST, K_VALUE, D), 3)
    print(
        f"posted_lam0 m={m} seconds={t_posted:.4f} ipfl_seconds={t_ipfl:.4f} "
        f"posted_over_ipfl={t_posted / t_ipfl:.1f}"
    )
    N, *rest = tied_market(200, 1e-5, 1e-6, seed=11)  # sample counts are integers
    for label, market, repeats in (  # about 117 imports per buyer
            ("vcg_tied m=200 cost=1e-5*N", tied_market(200, 1e-5, 0.0, seed=11), 3),
            ("vcg_near m=200 cost=1e-5*N*(1+0.01*U(-1,1))",
             tied_market(200, 1e-5, 0.01, seed=11), 1),
            ("vcg_noisy m=200 cost=1e-5*N*(1+0.3*U(-1,1))",
             tied_market(200, 1e-5, 0.3, seed=11), 1),
            ("vcg_integer_sizes m=200 cost=1e-5*N*(1+1e-6*U(-1,1))", (np.rint(N), *rest), 1)):
        t_vcg = best_of(partial(payments.vcg, *market), repeats)
        t_exact = best_of(partial(ipfl.clear_exact, *market), 3)
        print(f"{label} vcg_seconds={t_vcg:.4f} clear_exact_seconds={t_exact:.4f} "
              f"vcg_over_exact={t_vcg / t_exact:.1f}")


def main() -> None:
    for m in (10, 50, 200):
        theta0, uploads, N = make_round(m, seed=m)
        D = dissimilarity(uploads, theta0)
        A = ipfl.clear(N, COST, K_VALUE, D, LAM)
        repeats = 20 if m < 200 else 5
        t_round = best_of(partial(market_round, theta0, uploads, N), repeats)
        t_sim = best_of(partial(dissimilarity, uploads, theta0), repeats)
        t_exact = best_of(partial(ipfl.clear_exact, N, COST, K_VALUE, D, LAM), repeats)
        t_proxy = best_of(partial(ipfl.proxy_targets, A, N, uploads, theta0, uploads, ETA), repeats)
        print(
            f"market_round m={m} P={N_PARAMS} seconds={t_round:.4f} "
            f"(dissimilarity={t_sim:.4f}) clear_exact_seconds={t_exact:.4f} "
            f"proxy_targets_seconds={t_proxy:.4f} imports_per_buyer={A.sum(axis=1).mean():.2f}"
        )

    tie_benchmarks()

    m = 50
    theta0, uploads, N = make_round(m, seed=7)
    D = dissimilarity(uploads, theta0)
    W_proj = pfedgraph.graph(N, D, ALPHA)
    W_qp = reference_qp_graph(N, D, ALPHA)
    gap = float(np.abs(W_proj - W_qp).max())
    assert gap < 1e-6, f"projection and QP disagree by {gap}"
    t_proj = best_of(partial(pfedgraph.graph, N, D, ALPHA), 50)
    t_qp = best_of(partial(reference_qp_graph, N, D, ALPHA), 2)
    print(f"pfedgraph m={m} projection_seconds={t_proj:.6f} cvxpy_seconds={t_qp:.4f}")
    print(f"pfedgraph m={m} max_abs_gap={gap:.2e}")
    print(f"pfedgraph_projection_speedup={t_qp / t_proj:.0f}")


if __name__ == "__main__":
    main()
