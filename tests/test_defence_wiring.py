"""Defences plugged into mechanism presets by name: reputation trackers and robust targets."""

from __future__ import annotations

import numpy as np
import pytest

import mechanisms
from agents.attacks import make_attack
from mechanisms.reputation import Reputation, SimilarityReputation, ValidationReputation
from mechanisms.robust import AGGREGATORS
from mechanisms.similarity import dissimilarity

PRESETS = ("ipfl", "pfedgraph", "fedavg")
M, P, POISON = 8, 40, 7


def _market(seed: int = 0):
    """Seven honest clients with clustered updates and one poisoned seller (the last).

    The poisoned seller reports 20 times the others' data size, so a weighted sum gives it
    most of the weight; its model is a boosted (averaging presets) or random-direction
    (proxy targets) update.
    """
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=P)
    base = rng.normal(size=P)
    honest = theta0 + base + 0.05 * rng.normal(size=(M, P))
    N = np.full(M, 100.0)
    N[POISON] = 2000.0
    return rng, theta0, base, honest, N


def _poisoned(name: str, rng, theta0, honest):
    uploads = honest.copy()
    if name == "ipfl":  # proxy targets only see directions: push an unrelated one
        uploads[POISON] = make_attack("gaussian", sigma=3.0)(honest[POISON], honest[:POISON],
                                                              theta0, 0, rng)
    else:
        uploads[POISON] = make_attack("scaled", factor=100.0)(honest[POISON], honest[:POISON],
                                                              theta0, 0, rng)
    return uploads


@pytest.mark.parametrize("name", PRESETS)
def test_presets_build_our_defences_by_name(name):
    mech = mechanisms.get(name, reputation="similarity", robust="median")
    assert mech.robust == "median" and mech.reputation == "similarity"
    assert isinstance(mech.make_reputation(M), SimilarityReputation)
    tuned = mechanisms.get(name, reputation="similarity", reputation_params={"beta": 0.5})
    assert tuned.make_reputation(M).beta == 0.5
    validation = mechanisms.get(name, reputation="validation")
    rep = validation.make_reputation(M, score_fn=lambda u: np.full(len(u), 0.5))
    assert isinstance(rep, ValidationReputation)
    none = mechanisms.get(name, reputation="none").make_reputation(M)
    assert type(none) is Reputation


@pytest.mark.parametrize("name", PRESETS)
def test_bad_defence_configuration_is_a_value_error(name):
    with pytest.raises(ValueError, match="robust|nope"):
        mechanisms.get(name, robust="nope")
    with pytest.raises(ValueError):
        mechanisms.get(name, robust="krum", robust_params={"tau": 1.0})
    with pytest.raises(ValueError):
        mechanisms.get(name, reputation="similarity",
                       reputation_params={"beta": 2.0}).make_reputation(M)


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("robust", AGGREGATORS)
def test_robust_targets_resist_one_poisoned_seller(name, robust):
    rng, theta0, _, honest, N = _market()
    uploads = _poisoned(name, rng, theta0, honest)
    own = honest.copy()
    A = ~np.eye(M, dtype=bool)  # the poisoned seller got past the market
    A_clean = A.copy()
    A_clean[:, POISON] = False
    plain = mechanisms.get(name, reputation="none")
    guarded = mechanisms.get(name, reputation="none", robust=robust)
    reference = plain.targets(A_clean, N, uploads, theta0, own)[:POISON]
    V_plain = plain.targets(A, N, uploads, theta0, own)[:POISON]
    V_robust = guarded.targets(A, N, uploads, theta0, own)[:POISON]
    assert np.all(np.isfinite(V_robust))
    if name == "ipfl":
        # proxy steps own -> target: the combiner scales by the total imported weight, which
        # the poisoned seller inflates, so compare directions
        honest_step = reference - own[:POISON]
        assert np.all(_cos_rows(V_plain - own[:POISON], honest_step) < 0.3)
        assert np.all(_cos_rows(V_robust - own[:POISON], honest_step) > 0.7)
        return
    dev_plain = np.linalg.norm(V_plain - reference, axis=1)
    dev_robust = np.linalg.norm(V_robust - reference, axis=1)
    step = np.linalg.norm(reference - own[:POISON], axis=1)
    assert np.all(dev_plain > 100.0 * step)
    assert np.all(dev_robust < 1.5 * step), dev_robust / step


@pytest.mark.parametrize("name", PRESETS)
def test_end_to_end_reputation_excludes_a_sign_flipper(name):
    rng, theta0, base, _, N = _market(1)
    mech = mechanisms.get(name, reputation="similarity", robust="median")
    rep = mech.make_reputation(M)
    cost, K = np.ones(M), np.full(M, 5e5)
    own = theta0 + base + 0.05 * rng.normal(size=(M, P))
    for t in range(3):
        uploads = own.copy()
        uploads[POISON] = make_attack("sign_flip")(own[POISON], own[:POISON], theta0, t, rng)
        rep.update(uploads, theta0)
        eligible = rep.eligible()
        A, Pay = mech.market(N, cost, K, dissimilarity(uploads, theta0), eligible)
        V = mech.targets(A, N, uploads, theta0, own)
        assert np.all(np.isfinite(V))
        own = V + 0.05 * rng.normal(size=(M, P))
    assert not eligible[POISON] and eligible[:POISON].all()
    assert not A[:, POISON].any()
    assert np.all(Pay[:, POISON] <= 0.0)  # it earns nothing (it may still buy)
