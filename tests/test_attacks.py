"""Attack transforms: shapes, determinism, documented effects, state and validation."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from agents.attacks import (
    ATTACKS,
    FAKE_SELLERS,
    FREE_RIDERS,
    STATEFUL,
    DeltaFreeRider,
    DisguisedFreeRider,
    alie,
    alie_z,
    delta,
    disguised,
    ipm,
    make_attack,
)

P = 40


def _setup(seed: int = 0, n: int = 6, p: int = P):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=p)
    own = (theta0 + rng.normal(size=p)).astype(np.float32)
    honest = theta0 + 0.5 + 0.1 * rng.normal(size=(n, p))
    return own, honest, theta0


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_registry_groups_cover_everything():
    assert set(FAKE_SELLERS) | set(FREE_RIDERS) == set(ATTACKS)
    assert not set(FAKE_SELLERS) & set(FREE_RIDERS)


FINITE_ATTACKS = [name for name in ATTACKS if name != "non_finite"]


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_registry_entry_and_every_made_attack_takes_the_uniform_call(name):
    own, honest, theta0 = _setup()
    for attack in (ATTACKS[name], make_attack(name)):
        out = attack(own, honest, theta0, 1, np.random.default_rng(0))
        assert isinstance(out, np.ndarray) and out.shape == (P,)
    assert set(STATEFUL) <= set(ATTACKS)
    assert hasattr(make_attack(name), "state_dict") == (name in STATEFUL)


@pytest.mark.parametrize("name", ["shuffle", "gaussian", "disguised"])
def test_attacks_that_draw_need_a_generator(name):
    own, honest, theta0 = _setup()
    for attack in (ATTACKS[name], make_attack(name, **({"sigma": 1.0} if name == "disguised"
                                                       else {}))):
        with pytest.raises(ValueError, match="rng"):
            attack(own, honest, theta0, 0, None)


def test_free_rider_functions_take_their_memory_as_parameters():
    own, honest, theta0 = _setup()
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(
        disguised(own, honest, theta0, 4, rng_a, phi=2.0, gamma=0.5, sigma=0.3),
        DisguisedFreeRider(phi=2.0, gamma=0.5, sigma=0.3)(own, honest, theta0, 4, rng_b),
    )
    np.testing.assert_array_equal(disguised(own, honest, theta0, 0, rng_a), own)
    rider = DeltaFreeRider()
    for t in range(3):
        rider(own, honest + t, theta0, t, None)
    np.testing.assert_allclose(
        rider(own, honest, theta0, 3, None),
        delta(own, honest, theta0, 3, None, last=honest.mean(axis=0) + 2,
              prev=honest.mean(axis=0) + 1),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(delta(own, honest, theta0, 0, None), own)


@pytest.mark.parametrize("name", FINITE_ATTACKS)
def test_shape_dtype_and_determinism(name):
    own, honest, theta0 = _setup()
    outs = []
    for _ in range(2):
        attack = make_attack(name)
        rng = np.random.default_rng(42)
        outs.append([attack(own, honest, theta0, r, rng) for r in range(3)])
    for a, b in zip(outs[0], outs[1], strict=True):
        assert a.shape == (P,) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


@pytest.mark.parametrize("name", FINITE_ATTACKS)
def test_no_honest_uploads_is_defined(name):
    own, _, theta0 = _setup()
    attack = make_attack(name)
    rng = np.random.default_rng(0)
    for empty in (np.zeros((0, P)), np.zeros(0)):
        out = attack(own, empty, theta0, 0, rng)
        assert out.shape == (P,) and np.all(np.isfinite(out))
    if name in ("alie", "ipm", "plain", "delta", "disguised"):
        np.testing.assert_array_equal(attack(own, np.zeros((0, P)), theta0, 1, rng), own)


def test_non_finite_upload_is_all_nan_or_inf():
    own, honest, theta0 = _setup()
    rng = np.random.default_rng(0)
    nan = make_attack("non_finite")(own, honest, theta0, 0, rng)
    inf = make_attack("non_finite", kind="inf")(own, honest, theta0, 0, rng)
    assert nan.shape == inf.shape == (P,) and np.isnan(nan).all() and np.isposinf(inf).all()
    with pytest.raises(ValueError, match="kind must be one of nan, inf"):
        make_attack("non_finite", kind="zero")


def test_sign_flip_reverses_the_update():
    own, honest, theta0 = _setup()
    out = make_attack("sign_flip")(own, honest, theta0, 0, None)
    original = own.astype(np.float64) - theta0
    flipped = out.astype(np.float64) - theta0
    assert _cos(flipped, original) == pytest.approx(-1.0, abs=1e-6)
    assert np.linalg.norm(flipped) == pytest.approx(np.linalg.norm(original), rel=1e-5)


def test_shuffle_is_a_seeded_permutation():
    own, honest, theta0 = _setup()
    attack = make_attack("shuffle")
    a = attack(own, honest, theta0, 0, np.random.default_rng(1))
    b = attack(own, honest, theta0, 0, np.random.default_rng(2))
    np.testing.assert_array_equal(np.sort(a), np.sort(own))
    assert not np.array_equal(a, own)
    assert not np.array_equal(a, b)


def test_constant_and_gaussian():
    own, honest, theta0 = _setup(p=20_000)
    np.testing.assert_array_equal(make_attack("constant")(own, honest, theta0, 0, None), 1.0)
    np.testing.assert_array_equal(
        make_attack("constant", value=-2.5)(own, honest, theta0, 0, None), -2.5
    )
    out = make_attack("gaussian", sigma=3.0)(own, honest, theta0, 0, np.random.default_rng(0))
    assert abs(out.mean()) < 0.1
    assert out.std() == pytest.approx(3.0, rel=0.03)


def test_scaled_boosts_the_update():
    own, honest, theta0 = _setup()
    out = make_attack("scaled", factor=4.0)(own, honest, theta0, 0, None)
    np.testing.assert_allclose(out - theta0, 4.0 * (own.astype(np.float64) - theta0), rtol=1e-5,
                               atol=1e-5)


def test_alie_formula():
    own, honest, theta0 = _setup()
    out = alie(own, honest, theta0, 0, None, z=1.5)
    expected = honest.mean(axis=0) - 1.5 * honest.std(axis=0, ddof=1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    default = make_attack("alie", n_byzantine=2)(own, honest, theta0, 0, None)
    z = alie_z(honest.shape[0] + 2, 2)
    np.testing.assert_allclose(default, honest.mean(axis=0) - z * honest.std(axis=0, ddof=1),
                               rtol=1e-6)
    # one honest upload: no spread, the mean itself
    np.testing.assert_allclose(alie(own, honest[:1], theta0, 0, None), honest[0], rtol=1e-6)


def test_alie_z_follows_baruch_et_al():
    # n = 10, f = 2: s = floor(10 / 2 + 1) - 2 = 4, z = Phi^-1(6 / 10)
    assert alie_z(10, 2) == pytest.approx(NormalDist().inv_cdf(0.6))
    assert alie_z(50, 12) == pytest.approx(NormalDist().inv_cdf(36 / 50))
    assert alie_z(10, 1) < alie_z(10, 2) < alie_z(10, 4)
    assert np.isfinite(alie_z(10, 9))


def test_ipm_formula_and_direction():
    own, honest, theta0 = _setup()
    out = ipm(own, honest, theta0, 0, None, epsilon=0.3)
    mean_update = honest.mean(axis=0) - theta0
    np.testing.assert_allclose(out, theta0 - 0.3 * mean_update, rtol=1e-6, atol=1e-6)
    assert _cos(out - theta0, mean_update) == pytest.approx(-1.0, abs=1e-6)


def test_omniscient_attacks_ignore_non_finite_honest_rows():
    own, honest, theta0 = _setup()
    dirty = np.vstack([honest, np.full(P, np.nan), np.full(P, np.inf)])
    for name in ("alie", "ipm"):
        attack = make_attack(name)
        np.testing.assert_array_equal(attack(own, dirty, theta0, 0, None),
                                      attack(own, honest, theta0, 0, None))


def test_plain_free_rider_uploads_what_it_holds():
    own, honest, theta0 = _setup()
    out = make_attack("plain")(own, honest, theta0, 3, None)
    np.testing.assert_array_equal(out, own)
    assert out is not own


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_disguised_noise_decays_as_power_of_round(gamma):
    p = 40_000
    own, honest, theta0 = _setup(p=p)
    attack = DisguisedFreeRider(phi=2.0, gamma=gamma, sigma=0.5)
    rng = np.random.default_rng(7)
    stds = {t: float(np.std(attack(own, honest, theta0, t, rng) - own)) for t in (0, 3, 9)}
    for t, std in stds.items():
        assert std == pytest.approx(2.0 * 0.5 * (t + 1) ** -gamma, rel=0.03)


def test_disguised_estimates_sigma_from_first_observed_update():
    own, honest, theta0 = _setup(p=20_000)
    attack = make_attack("disguised", gamma=1.0)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(attack(own, np.zeros((0, own.size)), theta0, 0, rng), own)
    assert attack.state_dict() == {"sigma": None}
    first = attack(own, honest, theta0, 1, rng)
    np.testing.assert_array_equal(first, own)  # the observation only serves later rounds
    sigma = float(np.std(honest.mean(axis=0) - theta0))
    assert attack.sigma_ == pytest.approx(sigma)
    later = attack(own, 5.0 * honest, theta0, 4, rng)
    assert np.std(later - own) == pytest.approx(sigma / 5.0, rel=0.05)
    assert attack.sigma_ == pytest.approx(sigma)  # estimated once


def test_disguised_state_round_trip_is_json():
    own, honest, theta0 = _setup()
    a = DisguisedFreeRider(gamma=0.5)
    a(own, honest, theta0, 0, np.random.default_rng(0))
    state = json.loads(json.dumps(a.state_dict()))
    b = DisguisedFreeRider(gamma=0.5)
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(own, honest, theta0, 2, np.random.default_rng(5)),
                                  b(own, honest, theta0, 2, np.random.default_rng(5)))
    with pytest.raises(ValueError):
        b.load_state_dict({"sigma": -1.0})


def test_delta_extrapolates_observed_global_models():
    own, honest, theta0 = _setup()
    attack = DeltaFreeRider()
    rounds = [honest + k for k in range(4)]
    outs = [attack(own, h, theta0, t, None) for t, h in enumerate(rounds)]
    g = [h.mean(axis=0) for h in rounds]
    np.testing.assert_array_equal(outs[0], own)
    np.testing.assert_allclose(outs[1], 2 * g[0] - theta0, rtol=1e-6)
    np.testing.assert_allclose(outs[2], 2 * g[1] - g[0], rtol=1e-6)
    np.testing.assert_allclose(outs[3], 2 * g[2] - g[1], rtol=1e-6)


def test_delta_uses_only_earlier_rounds():
    own, honest, theta0 = _setup()
    a, b = DeltaFreeRider(), DeltaFreeRider()
    for t in range(3):
        a(own, honest + t, theta0, t, None)
        b(own, honest + t, theta0, t, None)
    ua = a(own, honest, theta0, 3, None)
    ub = b(own, np.full_like(honest, 1e6), theta0, 3, None)
    np.testing.assert_array_equal(ua, ub)
    # a round without honest uploads adds no observation
    c = DeltaFreeRider()
    c(own, honest, theta0, 0, None)
    c(own, np.zeros((0, P)), theta0, 1, None)
    np.testing.assert_allclose(c(own, honest, theta0, 2, None), 2 * honest.mean(axis=0) - theta0,
                               rtol=1e-6)


def test_delta_state_round_trip_without_pickle(tmp_path):
    own, honest, theta0 = _setup()
    a = DeltaFreeRider()
    for t in range(2):
        a(own, honest * (t + 1), theta0, t, None)
    state = a.state_dict()
    np.savez(tmp_path / "s.npz", **state)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        loaded = {key: data[key] for key in data.files}
    b = DeltaFreeRider()
    b.load_state_dict(loaded)
    np.testing.assert_array_equal(a(own, honest, theta0, 2, None), b(own, honest, theta0, 2, None))
    fresh = DeltaFreeRider()
    fresh.load_state_dict(DeltaFreeRider().state_dict())
    np.testing.assert_array_equal(fresh(own, honest, theta0, 0, None), own)
    with pytest.raises(ValueError):
        fresh.load_state_dict({"last": np.zeros(3), "prev": np.zeros(4)})


@pytest.mark.parametrize(
    "name, params",
    [
        ("nope", {}),
        ("sign_flip", {"factor": 2.0}),
        ("gaussian", {"sigma": 0.0}),
        ("gaussian", {"sigma": float("nan")}),
        ("scaled", {"factor": "big"}),
        ("alie", {"n_byzantine": 0}),
        ("alie", {"z": float("inf")}),
        ("ipm", {"epsilon": -1.0}),
        ("disguised", {"gamma": 0.0}),
        ("disguised", {"phi": -1.0}),
        ("disguised", {"beta": 1.0}),
        ("delta", {"x": 1}),
    ],
)
def test_make_attack_rejects_bad_configuration(name, params):
    with pytest.raises(ValueError):
        make_attack(name, **params)


def test_bad_shapes_raise_value_error():
    own, honest, theta0 = _setup()
    attack = make_attack("sign_flip")
    with pytest.raises(ValueError, match="own"):
        attack(own.reshape(4, 10), honest, theta0, 0, None)
    with pytest.raises(ValueError, match="theta0"):
        attack(own, honest, theta0[:-1], 0, None)
    with pytest.raises(ValueError, match="honest_uploads"):
        attack(own, honest[:, :-1], theta0, 0, None)
