"""Robust aggregators: hand-computed fixtures, ByzFL golden outputs, hostile inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanisms import robust
from mechanisms.robust import (
    AGGREGATORS,
    centered_clipping,
    geometric_median,
    krum,
    make_combiner,
    median,
    multi_krum,
    trimmed_mean,
)

GOLDEN = Path(__file__).parent / "golden" / "robust_byzfl.npz"

# ---------------------------------------------------------------- hand-computed fixtures

LINE = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
# Krum scores on LINE with f=1 (2 neighbours): 0+... -> [1+4, 1+1, 1+4, 1+64, 1+81]


def test_median_fixture():
    X = np.array([[1.0, 10.0], [2.0, 20.0], [100.0, -5.0]])
    np.testing.assert_array_equal(median(X), [2.0, 10.0])
    np.testing.assert_array_equal(median(np.array([[1.0], [3.0], [5.0], [100.0]])), [4.0])


def test_trimmed_mean_fixture():
    X = np.array([[1.0, 5.0], [2.0, -50.0], [3.0, 6.0], [4.0, 7.0], [100.0, 8.0]])
    np.testing.assert_allclose(trimmed_mean(X, 1), [3.0, 6.0])
    np.testing.assert_allclose(trimmed_mean(X, 0), X.mean(axis=0))
    np.testing.assert_allclose(trimmed_mean(X, 2), median(X))


def test_krum_fixture_and_neighbours():
    np.testing.assert_array_equal(krum(LINE, 1), [1.0])
    # with 4 neighbours (everyone): scores [106, 83, 70, 246, 303]... index 2 is best
    np.testing.assert_array_equal(krum(LINE, 0, neighbours=4), [2.0])


def test_krum_ties_break_by_lowest_index():
    X = np.array([[-1.0], [1.0], [5.0]])
    np.testing.assert_array_equal(krum(X, 0), [-1.0])
    X2 = np.array([[1.0], [-1.0], [5.0]])
    np.testing.assert_array_equal(krum(X2, 0), [1.0])


def test_multi_krum_fixture():
    # scores [5, 2, 5, 65, 82]: the best 4 are rows 1, 0, 2, 3
    np.testing.assert_allclose(multi_krum(LINE, 1), [13.0 / 4.0])
    # m = 2: row 1, then rows 0 and 2 tie and row 0 wins
    np.testing.assert_allclose(multi_krum(LINE, 1, m=2), [0.5])
    np.testing.assert_allclose(multi_krum(LINE, 1, m=1), krum(LINE, 1))


def test_geometric_median_fixtures():
    tri = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, np.sqrt(3.0)]])
    np.testing.assert_allclose(geometric_median(tri), [1.0, 1.0 / np.sqrt(3.0)], atol=1e-6)
    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(geometric_median(square), [1.0, 1.0], atol=1e-9)
    # a data point can be the geometric median: the cross centre
    cross = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 3.0], [0.0, -1.0]])
    np.testing.assert_allclose(geometric_median(cross), [0.0, 0.0], atol=1e-6)
    # collinear points: the median point, whatever the outlier's size
    np.testing.assert_allclose(geometric_median(np.array([[0.0], [1.0], [1e6]])), [1.0], atol=1e-6)


def test_centered_clipping_fixture():
    X = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(centered_clipping(X, tau=1.0), [0.3, 0.4])
    centre = np.array([1.0, 0.0])
    expected = centre + (np.array([2.0, 4.0]) / np.sqrt(20.0) + np.array([-1.0, 0.0])) / 2
    np.testing.assert_allclose(centered_clipping(X, center=centre, tau=1.0), expected)
    np.testing.assert_allclose(centered_clipping(X, tau=100.0), X.mean(axis=0))
    np.testing.assert_array_equal(centered_clipping(X, center=centre, iterations=0), centre)


def test_krum_distances_keep_precision_far_from_origin():
    rng = np.random.default_rng(3)
    X = 1e4 + 1e-3 * rng.normal(size=(9, 50))
    D2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D2, np.inf)
    scores = np.sort(D2, axis=1)[:, : 9 - 2 - 2].sum(axis=1)
    np.testing.assert_array_equal(krum(X, 2), X[np.argmin(scores)])


# ---------------------------------------------------------------- ByzFL golden outputs


def _golden():
    with np.load(GOLDEN, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return meta, {key: data[key] for key in data.files if key != "meta"}


def _ours(name: str, X: np.ndarray, params: dict) -> np.ndarray:
    """Our aggregator, parameterised to ByzFL's definition."""
    n, d = X.shape
    if name == "median":
        return median(X)
    if name == "trimmed_mean":
        return trimmed_mean(X, params["f"])
    if name == "krum":
        return krum(X, params["f"], neighbours=n - params["f"] - 1)
    if name == "multi_krum":
        return multi_krum(X, params["f"], neighbours=n - params["f"] - 1)
    if name == "geometric_median":
        return geometric_median(
            X, tol=0.0, max_iter=params["T"], nu=params["nu"], init=np.zeros(d)
        )
    return centered_clipping(X, tau=params["tau"], iterations=params["L"])


def test_golden_file_covers_every_aggregator():
    meta, _ = _golden()
    assert meta["byzfl"] == "0.0.11"
    assert {case["aggregator"] for case in meta["cases"]} == set(AGGREGATORS)


def test_matches_byzfl_golden_outputs():
    meta, arrays = _golden()
    for case in meta["cases"]:
        key = case["key"]
        X, expected = arrays[f"{key}__X"], arrays[f"{key}__out"]
        got = _ours(case["aggregator"], X, case["byzfl_params"])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=key)


def test_converged_geometric_median_matches_byzfl_long_run():
    meta, arrays = _golden()
    long_runs = [c for c in meta["cases"] if c["byzfl_params"].get("T", 0) >= 1000]
    assert long_runs
    for case in long_runs:
        X, expected = arrays[f"{case['key']}__X"], arrays[f"{case['key']}__out"]
        np.testing.assert_allclose(geometric_median(X, tol=1e-12), expected, atol=1e-6)


# ---------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    "call",
    [
        lambda X: trimmed_mean(X[:4], 2),
        lambda X: trimmed_mean(X, -1),
        lambda X: trimmed_mean(X, 1.5),
        lambda X: trimmed_mean(X, True),
        lambda X: krum(X[:4], 2),
        lambda X: krum(X[:3], 1),
        lambda X: krum(X, 2),
        lambda X: krum(X[:4], 1),
        lambda X: krum(X[:2], 0),
        lambda X: multi_krum(X, 2),
        lambda X: multi_krum(X[:4], 1),
        lambda X: krum(X, 1, neighbours=5),
        lambda X: krum(X, 1, neighbours=0),
        lambda X: multi_krum(X, 1, m=0),
        lambda X: multi_krum(X, 1, m=6),
        lambda X: multi_krum(X[:2], 0),
        lambda X: median(X[0]),
        lambda X: median(X[:0]),
        lambda X: geometric_median(X, tol=-1.0),
        lambda X: geometric_median(X, nu=0.0),
        lambda X: geometric_median(X, init=np.zeros(3)),
        lambda X: centered_clipping(X, tau=-1.0),
        lambda X: centered_clipping(X, tau=float("nan")),
        lambda X: centered_clipping(X, iterations=-1),
        lambda X: centered_clipping(X, center=np.array([np.nan, 0.0])),
    ],
)
def test_invalid_arguments_raise_value_error(call):
    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(ValueError):
        call(X)


def test_f_error_names_argument_and_range():
    with pytest.raises(ValueError, match=r"f=3 is out of range.*2\*f < n=5"):
        trimmed_mean(np.zeros((5, 2)), 3)
    for rule in (krum, multi_krum):
        with pytest.raises(ValueError, match=r"f=2 is out of range.*n >= 2\*f \+ 3.*n=5.*0\.\.1"):
            rule(np.zeros((5, 2)), 2)


def test_krum_resists_a_colluding_pair_within_its_bound():
    honest = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    X = np.vstack([honest, [[50.0, 50.0], [50.0, 50.0]]])
    # with f = 2 the pair's mutual distance 0 would win; n = 5 only tolerates f = 1
    for rule in (krum, multi_krum):
        with pytest.raises(ValueError, match="n >= 2"):
            rule(X, 2)
    assert any(np.array_equal(krum(X, 1), row) for row in honest)
    out = make_combiner("krum", f=2)(X, np.full(5, 0.2))
    assert any(np.allclose(out, row) for row in honest)
    # four rows tolerate no fault: the combiner clips f to 0 (two neighbours, not one)
    C = np.random.default_rng(0).normal(size=(4, 3))
    assert not np.array_equal(krum(C, 0), krum(C, 0, neighbours=1))
    np.testing.assert_allclose(make_combiner("krum")(C, np.ones(4)), 4 * krum(C, 0))


def test_max_f_follows_the_published_bounds():
    for n in range(0, 12):
        assert robust.max_f("krum", n) == robust.max_f("multi_krum", n) == _max_f("krum", n)
        for name in ("median", "trimmed_mean", "geometric_median", "centered_clipping"):
            assert robust.max_f(name, n) == _max_f(name, n)


# ---------------------------------------------------------------- hostile inputs

BAD_VALUES = [np.nan, np.inf, -np.inf, 1e300, -1e300, np.finfo(np.float64).max, -1e155]


def _max_f(name: str, n: int) -> int:
    """Krum and Multi-Krum: n >= 2 f + 3 (Blanchard et al. 2017); otherwise 2 f < n."""
    return (n - 3) // 2 if name in ("krum", "multi_krum") else (n - 1) // 2


def _run(name: str, X: np.ndarray, f: int) -> list[np.ndarray]:
    """The aggregator's outputs on X: with its defaults and, where it has tuning knobs, with
    the settings a caller would pick (fewer iterations, a data-driven centre)."""
    if name == "median":
        return [median(X)]
    if name == "trimmed_mean":
        return [trimmed_mean(X, f)]
    if name == "krum":
        return [krum(X, f)]
    if name == "multi_krum":
        return [multi_krum(X, f)]
    if name == "geometric_median":
        return [geometric_median(X), geometric_median(X, max_iter=200)]
    centre = np.median(X[np.isfinite(X).all(axis=1)], axis=0)
    return [centered_clipping(X), centered_clipping(X, center=centre, tau=1.0)]


@st.composite
def hostile_case(draw):
    name = draw(st.sampled_from(AGGREGATORS))
    n = draw(st.integers(3, 12))
    d = draw(st.integers(1, 6))
    f = draw(st.integers(0, _max_f(name, n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 10.0, size=(n, d))
    bad = rng.choice(n, size=draw(st.integers(0, f)), replace=False)
    for i in bad:
        whole_row = draw(st.booleans())
        value = draw(st.sampled_from(BAD_VALUES))
        cols = np.arange(d) if whole_row else rng.choice(d, size=1)
        X[i, cols] = value
    return name, X, f, np.setdiff1d(np.arange(n), bad)


@settings(max_examples=300, deadline=None)
@given(hostile_case())
def test_every_aggregator_is_finite_with_up_to_f_hostile_rows(case):
    name, X, f, honest = case
    outputs = _run(name, X, f)
    for out in outputs:
        assert out.shape == (X.shape[1],)
        assert np.all(np.isfinite(out))
    out, H = outputs[0], X[honest]
    if name in ("median", "trimmed_mean", "multi_krum"):
        assert np.all(out >= H.min(axis=0) - 1e-9) and np.all(out <= H.max(axis=0) + 1e-9)
    if name == "krum":
        assert any(np.array_equal(out, row) for row in H)


def test_all_rows_non_finite_gives_zeros():
    X = np.full((5, 3), np.nan)
    for out in (median(X), trimmed_mean(X, 2), krum(X, 1), multi_krum(X, 1),
                geometric_median(X), centered_clipping(X)):
        np.testing.assert_array_equal(out, np.zeros(3))
    np.testing.assert_array_equal(centered_clipping(X, center=np.ones(3)), np.ones(3))


def test_nan_rows_count_against_f():
    X = np.array([[1.0], [2.0], [3.0], [4.0], [np.nan]])
    # one row dropped: f=2 becomes 1 on the remaining four rows
    np.testing.assert_allclose(trimmed_mean(X, 2), [2.5])
    np.testing.assert_allclose(median(X), [2.5])


# ---------------------------------------------------------------- combiner


def test_combiner_small_inputs():
    for name in AGGREGATORS:
        combine = make_combiner(name)
        np.testing.assert_array_equal(combine(np.zeros((0, 3)), np.zeros(0)), np.zeros(3))
        row = np.array([[1.0, -2.0, 3.0]])
        np.testing.assert_allclose(combine(row, np.array([0.25])), 0.25 * row[0], err_msg=name)
        two = np.array([[1.0, 0.0, 0.0], [3.0, 2.0, 0.0]])
        out = combine(two, np.array([0.5, 0.5]))
        assert out.shape == (3,) and np.all(np.isfinite(out)), name
        np.testing.assert_allclose(combine(np.array([[np.nan] * 3]), np.ones(1)), np.zeros(3))


def test_combiner_is_exact_on_identical_rows():
    row = np.array([0.5, -1.5, 2.0, 7.0])
    C = np.tile(row, (6, 1))
    w = np.array([0.1, 0.2, 0.05, 0.3, 0.15, 0.1])
    for name in AGGREGATORS:
        np.testing.assert_allclose(make_combiner(name)(C, w), w.sum() * row, err_msg=name)


def test_combiner_clips_f_to_what_n_allows():
    rng = np.random.default_rng(0)
    C, w = rng.normal(size=(4, 5)), np.full(4, 0.25)
    np.testing.assert_allclose(make_combiner("trimmed_mean", f=5)(C, w), trimmed_mean(C, 1))
    np.testing.assert_allclose(make_combiner("krum", f=5)(C, w), krum(C, 0))
    np.testing.assert_allclose(make_combiner("multi_krum", f=3, m=9)(C, w), multi_krum(C, 0, m=4))
    C7 = rng.normal(size=(7, 5))
    np.testing.assert_allclose(make_combiner("krum", f=5)(C7, np.ones(7)), 7 * krum(C7, 2))
    np.testing.assert_allclose(make_combiner("krum", f=0, neighbours=9)(C, w), krum(C, 0, 3))


def test_combiner_resists_a_poisoned_contribution():
    rng = np.random.default_rng(1)
    honest = 1.0 + 0.05 * rng.normal(size=(6, 20))
    C = np.vstack([honest, -50.0 * np.ones(20)])
    w = np.full(7, 1.0 / 7.0)
    plain_error = np.abs(w @ C - honest.mean(axis=0)).max()
    assert plain_error > 5.0
    for name in AGGREGATORS:
        error = np.abs(make_combiner(name)(C, w) - honest.mean(axis=0)).max()
        assert error < 0.5, (name, error)


def test_combiner_centered_clipping_radius_follows_the_data():
    rng = np.random.default_rng(2)
    C = rng.normal(size=(7, 6))
    C[3] = 1e300
    centre = median(C)
    honest_radii = np.linalg.norm(np.delete(C, 3, axis=0) - centre, axis=1)
    radius = np.median(np.append(honest_radii, np.inf))  # the huge row counts as far away
    expected = centered_clipping(C, center=centre, tau=radius)
    np.testing.assert_allclose(make_combiner("centered_clipping")(C, np.ones(7)), 7 * expected)
    fixed = centered_clipping(C, center=centre, tau=0.1, iterations=2)
    np.testing.assert_allclose(
        make_combiner("centered_clipping", tau=0.1, iterations=2)(C, np.ones(7)), 7 * fixed
    )


@pytest.mark.parametrize(
    "name, params",
    [("nope", {}), ("median", {"tau": 1.0}), ("krum", {"tau": 1.0}), ("trimmed_mean", {"f": -1}),
     ("krum", {"neighbours": 0}), ("geometric_median", {"nu": -1.0}),
     ("centered_clipping", {"tau": "big"})],
)
def test_make_combiner_rejects_bad_configuration(name, params):
    with pytest.raises(ValueError):
        make_combiner(name, **params)


def test_combiner_rejects_mismatched_weights():
    combine = make_combiner("median")
    with pytest.raises(ValueError, match="w must have shape"):
        combine(np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        combine(np.zeros((3, 2)), np.array([1.0, np.nan, 1.0]))


def test_combiner_hostile_rows_any_n():
    rng = np.random.default_rng(5)
    for name in AGGREGATORS:
        combine = make_combiner(name, f=2)
        for n in range(0, 9):
            C = rng.normal(size=(n, 4))
            if n >= 3:
                C[0] = np.nan
            out = combine(C, np.ones(n))
            assert np.all(np.isfinite(out)), (name, n)


def test_module_lists_only_implemented_aggregators():
    assert all(callable(getattr(robust, name)) for name in AGGREGATORS)
