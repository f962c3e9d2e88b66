import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanisms.similarity import dissimilarity, row_norms, unit_rows


def _naive(uploads, theta0):
    m = uploads.shape[0]
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            a = uploads[i].astype(np.float64) - theta0
            b = uploads[j].astype(np.float64) - theta0
            if i != j:
                D[i, j] = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return D


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 50))
def test_matches_pairwise_cosine(seed, m, p):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=p)
    uploads = theta0 + rng.normal(size=(m, p)) * rng.uniform(0.01, 100, size=(m, 1))
    D = dissimilarity(uploads, theta0)
    assert D.shape == (m, m)
    np.testing.assert_allclose(D, _naive(uploads, theta0), atol=1e-10)
    np.testing.assert_array_equal(D, D.T)
    assert (D >= 0).all() and (D <= 2).all()
    assert (np.diagonal(D) == 0).all()


def test_hostile_rows_are_maximally_dissimilar():
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=20).astype(np.float32)
    uploads = theta0 + rng.normal(size=(6, 20)).astype(np.float32)
    uploads[1, 3] = np.nan
    uploads[2, 0] = np.inf
    uploads[3] = theta0
    D = dissimilarity(uploads, theta0)
    for k in (1, 2, 3):
        others = np.arange(6) != k
        assert (D[k, others] == 2).all() and (D[others, k] == 2).all()
        assert D[k, k] == 0
    assert np.isfinite(D).all()
    assert (D[np.ix_([0, 4, 5], [0, 4, 5])] < 2).all()


def test_huge_finite_uploads_do_not_overflow():
    theta0 = np.zeros(4, dtype=np.float32)
    uploads = np.array([[3e38, 3e38, 0, 0], [1, 1, 0, 0], [-1, -1, 0, 0]], dtype=np.float32)
    D = dissimilarity(uploads, theta0)
    assert D[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert D[0, 2] == pytest.approx(2.0, abs=1e-6)


def test_scale_invariance_and_float32():
    rng = np.random.default_rng(3)
    theta0 = rng.normal(size=100)
    delta = rng.normal(size=(5, 100))
    scaled = delta * np.array([1, 10, 1e-3, 7, 1e5])[:, None]
    D1 = dissimilarity(theta0 + delta, theta0)
    D2 = dissimilarity((theta0 + scaled).astype(np.float32), theta0.astype(np.float32))
    np.testing.assert_allclose(D1, D2, atol=1e-4)


def test_unit_rows_marks_invalid_rows():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0]])
    unit, norm, valid = unit_rows(X)
    np.testing.assert_allclose(unit[0], [0.6, 0.8])
    np.testing.assert_array_equal(valid, [True, False, False])
    np.testing.assert_array_equal(norm, [5.0, 0.0, 0.0])
    assert (unit[1:] == 0).all()


@pytest.mark.parametrize(
    "uploads, theta0",
    [
        (np.zeros(5), np.zeros(5)),
        (np.zeros((3, 5)), np.zeros(4)),
        (np.zeros((3, 5)), np.zeros((1, 5))),
    ],
)
def test_bad_shapes_raise(uploads, theta0):
    with pytest.raises(ValueError, match="uploads|theta0"):
        dissimilarity(uploads, theta0)


@pytest.mark.parametrize(
    "uploads, theta0, what",
    [
        (np.ones((3, 4)), np.array([0.0, np.nan, 0.0, 0.0]), "theta0"),
        (np.ones((3, 4)), np.array([0.0, np.inf, 0.0, 0.0]), "theta0"),
        (np.full((3, 4), "1.0"), np.zeros(4), "uploads"),
        (np.ones((3, 4)), np.array(["0"] * 4), "theta0"),
        (np.ones((3, 4)) + 1j, np.zeros(4), "uploads"),
        (np.ones((3, 4)), np.zeros(4, dtype=complex), "theta0"),
        (np.ones((3, 4), dtype=bool), np.zeros(4), "uploads"),
        (np.array([[1.0, "a"], [2.0, 3.0]], dtype=object), np.zeros(2), "uploads"),
    ],
)
def test_non_real_inputs_and_non_finite_theta0_raise(uploads, theta0, what):
    with pytest.raises(ValueError, match=what):
        dissimilarity(uploads, theta0)


def test_row_norms_do_not_overflow_and_flag_non_finite_rows():
    X = np.array([[1e300, 1e300], [3.0, 4.0], [np.nan, 1.0], [0.0, 0.0], [1.5e308, 1.5e308]])
    np.testing.assert_allclose(row_norms(X)[:4], [np.sqrt(2) * 1e300, 5.0, np.inf, 0.0])
    assert row_norms(X)[4] == np.inf  # beyond float range
    _, norm, valid = unit_rows(X)
    np.testing.assert_allclose(norm[:2], row_norms(X)[:2])
    np.testing.assert_array_equal(valid, [True, True, False, False, True])
