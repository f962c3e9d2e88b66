"""Reputation filters: attacker exclusion, threshold rule, hostile uploads, state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechanisms.reputation import (
    REPUTATIONS,
    Reputation,
    SimilarityReputation,
    ValidationReputation,
    check_params,
    make_reputation,
    mean_cosines,
    median_cosines,
    unit_updates,
)

M, P = 10, 64


def _round(rng, theta0, base, n_attackers=2, noise=0.3):
    """8 honest updates clustered around `base`, the last n_attackers sign-flipped."""
    updates = base + noise * rng.normal(size=(M, P))
    updates[M - n_attackers :] *= -1.0
    return theta0 + updates


@pytest.mark.parametrize("seed", range(5))
def test_similarity_excludes_sign_flippers_within_three_updates(seed):
    rng = np.random.default_rng(seed)
    theta0, base = rng.normal(size=P), rng.normal(size=P)
    rep = make_reputation("similarity", M)
    excluded_at = None
    for t in range(12):
        rep.update(_round(rng, theta0, base), theta0)
        eligible = rep.eligible()
        assert eligible[:8].all(), f"honest client excluded at update {t + 1}"
        if excluded_at is None and not eligible[8:].any():
            excluded_at = t + 1
    assert excluded_at is not None and excluded_at <= 3


def _mean_cosine_to_others(U: np.ndarray, rows: np.ndarray) -> np.ndarray:
    unit = U / np.linalg.norm(U, axis=1, keepdims=True)
    C = unit @ unit[rows].T
    return np.array([np.mean([C[i, k] for k, j in enumerate(rows) if j != i])
                     for i in range(len(U))])


def test_default_scores_are_an_ema_of_the_mean_cosine_to_the_others():
    rng = np.random.default_rng(6)
    theta0 = rng.normal(size=P)
    first = theta0 + rng.normal(size=(M, P)) + 0.5
    second = theta0 + rng.normal(size=(M, P)) + 0.5
    rep = make_reputation("similarity", M, beta=0.7, norm_bound=None)
    assert rep.reference == "mean"
    rep.update(first, theta0)
    expected = _mean_cosine_to_others(first - theta0, np.arange(M))
    np.testing.assert_allclose(rep.scores_, expected)
    rep.update(second, theta0)
    expected = 0.7 * expected + 0.3 * _mean_cosine_to_others(second - theta0, np.arange(M))
    np.testing.assert_allclose(rep.scores_, expected)


def test_mean_cosines_skip_excluded_and_hostile_rows():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(6, 9)) + 1.0
    X[2] = np.nan
    X[4] *= 50.0  # far longer than the others: scores -1 with a norm bound
    reference = np.array([True, True, True, True, True, False])
    cos, scored = mean_cosines(X, np.zeros(9), reference, norm_bound=5.0)
    assert cos[2] == -1.0 and cos[4] == -1.0 and scored.all()
    expected = _mean_cosine_to_others(np.delete(X, [2, 4], axis=0), np.array([0, 1, 2]))
    np.testing.assert_allclose(cos[[0, 1, 3, 5]], expected)
    alone, seen = mean_cosines(X[:1], np.zeros(9), np.ones(1, dtype=bool), None)
    assert not seen[0]  # nobody to compare with: no observation


def test_cutoff_is_relative_to_the_mean_or_to_the_median():
    # scores spread so that the mean and the median cutoffs exclude different clients
    theta0 = np.zeros(3)
    angles = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.6, 1.9, 2.4, 3.0])
    uploads = np.stack([np.cos(angles), np.sin(angles), np.zeros(M)], axis=1)
    by_mean = make_reputation("similarity", M, threshold=0.0, margin=0.0)
    by_median = make_reputation("similarity", M, threshold=0.0, margin=0.0, reference="median")
    by_mean.update(uploads, theta0)
    by_median.update(uploads, theta0)
    np.testing.assert_array_equal(by_mean.eligible(), by_mean.scores_ >= by_mean.scores_.mean())
    np.testing.assert_array_equal(
        by_median.eligible(), by_median.scores_ >= np.median(by_median.scores_)
    )
    centre = np.median(uploads, axis=0)
    np.testing.assert_allclose(by_median.scores_, uploads @ centre / np.linalg.norm(centre))
    assert (by_mean.scores_ < by_mean.scores_.mean()).sum() != (
        by_mean.scores_ < np.median(by_mean.scores_)).sum()


def test_median_cosines_matches_a_loop_and_bounds_the_norm():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 12)) + 2.0
    X[5] *= 40.0  # far longer than the others: scores -1 and leaves the median
    reference = np.array([True, True, False, True, True, True, True])
    cos, scored = median_cosines(X, np.zeros(12), reference, norm_bound=5.0)
    assert scored.all()
    center = np.median(X[[0, 1, 3, 4, 6]], axis=0)
    for i in range(7):
        expected = -1.0 if i == 5 else X[i] @ center / np.linalg.norm(X[i]) / np.linalg.norm(
            center)
        assert cos[i] == pytest.approx(expected)
    unbounded, _ = median_cosines(X, np.zeros(12), reference, norm_bound=None)
    assert unbounded[5] > 0.5


def test_unit_updates_handles_huge_zero_and_nan_rows():
    theta0 = np.ones(3)
    X = np.array([[1e300, -1e300, 1.0], [1.0, 1.0, 1.0], [np.nan, 0.0, 0.0], [2.0, 1.0, 1.0]])
    V, valid = unit_updates(X, theta0)
    np.testing.assert_array_equal(valid, [True, False, False, True])
    np.testing.assert_allclose(V, [[np.sqrt(0.5), -np.sqrt(0.5), 0.0], [1.0, 0.0, 0.0]])


def test_non_finite_and_zero_updates_score_worst_and_are_not_compared():
    rng = np.random.default_rng(1)
    theta0, base = rng.normal(size=P), rng.normal(size=P)
    uploads = _round(rng, theta0, base, n_attackers=0)
    clean = SimilarityReputation(M)
    present = np.ones(M, dtype=bool)
    present[[3, 7]] = False
    clean.update(uploads, theta0, present)
    dirty_uploads = uploads.copy()
    dirty_uploads[3] = np.nan
    dirty_uploads[7] = theta0  # a plain free-rider that never trained
    dirty = SimilarityReputation(M)
    dirty.update(dirty_uploads, theta0)
    assert dirty.scores_[3] == -1.0 and dirty.scores_[7] == -1.0
    honest = present
    np.testing.assert_allclose(dirty.scores_[honest], clean.scores_[honest])
    assert not dirty.eligible()[[3, 7]].any()
    assert dirty.eligible()[honest].all()


def test_absent_clients_keep_score_and_are_not_eligible():
    rng = np.random.default_rng(2)
    theta0, base = rng.normal(size=P), rng.normal(size=P)
    rep = make_reputation("similarity", M, beta=0.5)
    rep.update(_round(rng, theta0, base, n_attackers=0), theta0)
    before = rep.scores_.copy()
    present = np.ones(M, dtype=bool)
    present[4] = False
    garbage = _round(rng, theta0, base, n_attackers=0)
    garbage[4] = np.nan
    rep.update(garbage, theta0, present)
    assert rep.scores_[4] == before[4]
    assert not rep.eligible()[4] and rep.eligible().sum() == M - 1
    rep.update(_round(rng, theta0, base, n_attackers=0), theta0)
    assert rep.eligible().all()


def test_exclusion_is_permanent():
    rng = np.random.default_rng(3)
    theta0, base = rng.normal(size=P), rng.normal(size=P)
    rep = make_reputation("similarity", M, beta=0.0)
    rep.update(_round(rng, theta0, base), theta0)
    assert not rep.eligible()[8:].any()
    for _ in range(3):
        rep.update(_round(rng, theta0, base, n_attackers=0), theta0)
    assert rep.scores_[8:].min() > 0.5  # they now look honest ...
    assert not rep.eligible()[8:].any()  # ... but stay out


def test_threshold_rule_is_safe_for_near_zero_and_negative_means():
    theta0 = np.zeros(M)
    orthogonal = np.eye(M)  # every pairwise cosine is 0: the mean score is exactly 0
    rep = make_reputation("similarity", M)
    for _ in range(5):
        rep.update(orthogonal, theta0)
    assert rep.eligible().all()
    rep = make_reputation("similarity", 2)  # two opposed clients: both score -1
    rep.update(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2))
    assert rep.eligible().all()
    # a negative mean: the cutoff moves below it, not above
    rep = make_reputation("similarity", 3, threshold=0.5, margin=0.0)
    rep.update(np.array([[1.0, 1.0, -3.0], [1.0, -3.0, 1.0], [-3.0, 1.0, 1.0]]), np.zeros(3))
    mu = np.mean(rep.scores_)
    assert mu < 0
    np.testing.assert_array_equal(rep.eligible(), rep.scores_ >= mu - 0.5 * abs(mu))
    assert rep.eligible().all()


@st.composite
def rounds(draw):
    m = draw(st.integers(2, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    n_rounds = draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n_rounds):
        U = rng.normal(size=(m, 5)) + draw(st.floats(-2, 2))
        for i in range(m):
            kind = draw(st.sampled_from(["ok", "ok", "nan", "zero", "huge"]))
            if kind == "nan":
                U[i, 0] = np.nan
            elif kind == "zero":
                U[i] = 0.0
            elif kind == "huge":
                U[i] *= 1e300
        present = rng.random(m) < 0.8
        data.append((U, present))
    threshold = draw(st.floats(0.0, 3.0))
    margin = draw(st.floats(0.0, 0.5))
    return m, data, threshold, margin


@settings(max_examples=150, deadline=None)
@given(rounds())
def test_similarity_invariants(case):
    m, data, threshold, margin = case
    rep = make_reputation("similarity", m, threshold=threshold, margin=margin)
    for U, present in data:
        was_excluded = rep.excluded_.copy()
        rep.update(U, np.zeros(5), present)
        assert np.all(np.isfinite(rep.scores_))
        assert np.all(rep.scores_ >= -1.0) and np.all(rep.scores_ <= 1.0)
        assert np.all(rep.excluded_ >= was_excluded)
        eligible = rep.eligible()
        assert not eligible[~present].any()
        active = present & ~was_excluded & rep.seen_
        if active.any():
            best = np.flatnonzero(active)[np.argmax(rep.scores_[active])]
            assert eligible[best]


def _accuracy_of(uploads):
    """Toy validation: accuracy falls with the distance to the all-ones model."""
    return np.exp(-np.linalg.norm(uploads - 1.0, axis=1) / 4.0)


def test_validation_reputation_excludes_bad_models_and_sees_only_finite_rows():
    calls = []

    def score_fn(uploads):
        calls.append(uploads.shape[0])
        return _accuracy_of(uploads)

    rng = np.random.default_rng(4)
    rep = make_reputation("validation", M, score_fn=score_fn, threshold=0.5)
    for _ in range(3):
        uploads = 1.0 + 0.1 * rng.normal(size=(M, P))
        uploads[8] = -3.0  # a fake model
        uploads[9] = np.inf
        rep.update(uploads, np.zeros(P))
    assert calls == [M - 1] * 3
    assert rep.scores_[9] == 0.0
    np.testing.assert_array_equal(rep.eligible(), [True] * 8 + [False, False])


def test_validation_checks_score_fn_output():
    with pytest.raises(ValueError, match="shape"):
        make_reputation("validation", 3, score_fn=lambda u: np.ones(2)).update(
            np.ones((3, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_reputation("validation", 3, score_fn=lambda u: 2.0 * np.ones(len(u))).update(
            np.ones((3, 4)), np.zeros(4))
    rep = make_reputation("validation", 3, score_fn=lambda u: np.array([np.nan, 0.9, 0.9]))
    rep.update(np.ones((3, 4)), np.zeros(4))
    assert rep.scores_[0] == 0.0


def test_none_reputation_follows_presence_only():
    rep = make_reputation("none", 4, score_fn=_accuracy_of)
    assert type(rep) is Reputation and rep.eligible().all()
    rep.update(np.full((4, 3), np.nan), np.zeros(3), np.array([True, False, True, True]))
    np.testing.assert_array_equal(rep.eligible(), [True, False, True, True])
    np.testing.assert_array_equal(rep.scores_, 0.0)


@pytest.mark.parametrize("name", REPUTATIONS)
def test_state_round_trip_through_json(name):
    rng = np.random.default_rng(5)
    theta0, base = rng.normal(size=P), rng.normal(size=P)
    kwargs = {"score_fn": _accuracy_of}
    a = make_reputation(name, M, **kwargs)
    for _ in range(2):
        a.update(_round(rng, theta0, base), theta0)
    state = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in a.state_dict().items()}
    b = make_reputation(name, M, **kwargs)
    b.load_state_dict(json.loads(json.dumps(state)))
    nxt = _round(rng, theta0, base)
    a.update(nxt, theta0)
    b.update(nxt, theta0)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    np.testing.assert_array_equal(a.eligible(), b.eligible())


def test_load_state_dict_rejects_foreign_state():
    a = make_reputation("similarity", 4)
    with pytest.raises(ValueError, match="reputation"):
        a.load_state_dict(make_reputation("none", 4).state_dict())
    with pytest.raises(ValueError, match="shape"):
        a.load_state_dict(make_reputation("similarity", 5).state_dict())


@pytest.mark.parametrize(
    "name, n, params",
    [
        ("nope", 4, {}),
        ("similarity", 0, {}),
        ("similarity", 2.5, {}),
        ("similarity", 4, {"beta": 1.0}),
        ("similarity", 4, {"beta": -0.1}),
        ("similarity", 4, {"threshold": -1.0}),
        ("similarity", 4, {"margin": float("nan")}),
        ("similarity", 4, {"alpha": 0.5}),
        ("none", 4, {"beta": 0.5}),
        ("similarity", 4, {"reference": "mode"}),
        ("similarity", 4, {"norm_bound": 0.5}),
        ("similarity", 4, {"beta": True}),
        ("validation", 4, {}),
        ("validation", 4, {"score_fn": "not callable"}),
    ],
)
def test_make_reputation_rejects_bad_configuration(name, n, params):
    with pytest.raises(ValueError):
        make_reputation(name, n, **params)


def test_update_rejects_bad_shapes():
    rep = make_reputation("similarity", 3)
    with pytest.raises(ValueError, match="uploads"):
        rep.update(np.zeros((4, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="theta0"):
        rep.update(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="present"):
        rep.update(np.zeros((3, 2)), np.zeros(2), np.array([1, 0, 1]))


def test_make_reputation_returns_the_documented_classes():
    assert isinstance(make_reputation("similarity", 3), SimilarityReputation)
    assert isinstance(make_reputation("validation", 3, score_fn=_accuracy_of),
                      ValidationReputation)


def test_check_params_reports_every_problem_without_building():
    assert check_params("similarity", {"beta": 0.3, "reference": "median"}) == []
    assert check_params("validation", {"threshold": 0.2}) == []
    problems = check_params("similarity", {"beta": 1.5, "colour": 1, "reference": "mode"})
    assert len(problems) == 3
    text = " ".join(problems)
    assert "colour" in text and "beta = 1.5" in text and "[0, 1)" in text and "mode" in text
    assert "none" in check_params("simlarity", {})[0]
    assert check_params("none", {"beta": 0.5}) != []
