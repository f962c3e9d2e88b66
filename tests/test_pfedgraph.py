import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanisms.pfedgraph import graph, project_simplex


def _qp_projection(y, support=None):
    x = cp.Variable(y.shape[0])
    constraints = [x >= 0, cp.sum(x) == 1]
    if support is not None:
        constraints.append(x[np.flatnonzero(~support)] == 0)
    cp.Problem(cp.Minimize(cp.sum_squares(x - y)), constraints).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
    )
    return x.value


def _reference_graph(N, D, alpha):
    """The reference's per-row QP: min alpha x'x + (d - 2 alpha p)'x on the simplex."""
    m = len(N)
    p = N / N.sum()
    cos = 1 - D
    np.fill_diagonal(cos, 1.0)
    d = np.where(-cos < -0.9, -1.0, -cos)
    W = np.zeros((m, m))
    for i in range(m):
        x = cp.Variable(m)
        objective = alpha * cp.sum_squares(x) + (d[i] - 2 * alpha * p) @ x
        cp.Problem(cp.Minimize(objective), [x >= 0, cp.sum(x) == 1]).solve(
            solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
        )
        W[i] = x.value
    return W


def _random_D(rng, m):
    X = rng.normal(size=(m, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.clip(1 - X @ X.T, 0, 2)


@pytest.mark.parametrize("seed", range(6))
def test_projection_matches_qp_solver(seed):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(4, 9)) * rng.choice([0.01, 1, 100])
    support = rng.random((4, 9)) < 0.6
    support[:, 0] = True
    W = project_simplex(Y)
    Ws = project_simplex(Y, support)
    for i in range(4):
        np.testing.assert_allclose(W[i], _qp_projection(Y[i]), atol=1e-6)
        np.testing.assert_allclose(Ws[i], _qp_projection(Y[i], support[i]), atol=1e-6)
    assert (Ws[~support] == 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_graph_matches_reference_qp(seed):
    rng = np.random.default_rng(100 + seed)
    m = int(rng.integers(3, 12))
    N = rng.uniform(50, 2000, m)
    D = _random_D(rng, m)
    alpha = float(rng.choice([0.1, 0.8, 5.0]))
    np.testing.assert_allclose(graph(N, D, alpha), _reference_graph(N, D, alpha), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 15), st.floats(0.05, 10))
def test_rows_on_simplex_with_self_weight(seed, m, alpha):
    rng = np.random.default_rng(seed)
    N = rng.uniform(1, 1000, m)
    W = graph(N, _random_D(rng, m), alpha)
    assert W.shape == (m, m)
    assert (W >= 0).all()
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    assert (np.diagonal(W) > 0).all()


def test_similar_enough_counts_as_identical():
    N = np.array([100.0, 100.0, 100.0])
    near = np.array([[0, 0.05, 1.0], [0.05, 0, 1.0], [1.0, 1.0, 0]])
    same = np.array([[0, 0.0, 1.0], [0.0, 0, 1.0], [1.0, 1.0, 0]])
    np.testing.assert_allclose(graph(N, near, 0.8), graph(N, same, 0.8))
    below = near.copy()
    below[0, 1] = below[1, 0] = 0.2
    assert graph(N, below, 0.8)[0, 1] < graph(N, near, 0.8)[0, 1]


def test_eligible_and_support_restrictions():
    rng = np.random.default_rng(1)
    m = 8
    N = rng.uniform(50, 500, m)
    D = _random_D(rng, m) * 0.3
    eligible = np.ones(m, dtype=bool)
    eligible[[2, 5]] = False
    W = graph(N, D, 0.8, eligible=eligible)
    off = ~np.eye(m, dtype=bool)
    assert (W[:, ~eligible][off[:, ~eligible]] == 0).all()
    assert (np.diagonal(W) > 0).all()
    full = graph(N, D, 0.8)
    np.testing.assert_allclose(graph(N, D, 0.8, support=full > 0), full, atol=1e-15)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": -1.0},
        {"N": np.array([1.0, -2.0])},
        {"D": np.full((2, 2), np.nan)},
        {"D": np.zeros((3, 3))},
    ],
)
def test_invalid_inputs_raise(kwargs):
    args = {"N": np.array([1.0, 2.0]), "D": np.zeros((2, 2)), "alpha": 0.8, **kwargs}
    with pytest.raises(ValueError):
        graph(args["N"], args["D"], args["alpha"])


def test_projection_rejects_empty_support():
    with pytest.raises(ValueError, match="support"):
        project_simplex(np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))
