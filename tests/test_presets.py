import sys
import types

import numpy as np
import pytest

import mechanisms
from mechanisms import baselines, ipfl, pfedgraph
from mechanisms.similarity import dissimilarity

PRESETS = ["ipfl", "ipfl-exact", "vcg", "shapley", "posted", "pfedgraph", "fedavg", "local"]


def make_round(seed=0, m=9, p=64):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=p).astype(np.float32)
    centres = rng.normal(size=(3, p)).astype(np.float32)
    own = theta0 + centres[np.arange(m) % 3] + 0.3 * rng.normal(size=(m, p)).astype(np.float32)
    uploads = own.copy()
    uploads[1] = np.nan
    uploads[4] = theta0
    N = rng.integers(100, 800, m).astype(float)
    cost = np.ones(m)
    K = np.full(m, 5e5)
    K[2] = 0.0
    return N, cost, K, uploads, theta0, own


def test_available_lists_every_preset():
    assert mechanisms.available() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_conformance(name):
    mech = mechanisms.get(name)
    assert mech.name == name
    N, cost, K, uploads, theta0, own = make_round()
    m = len(N)
    D = dissimilarity(uploads, theta0)
    eligible = np.ones(m, dtype=bool)
    eligible[[1, 7]] = False
    out = mech.outcome(N, cost, K, D, eligible)
    A, P, platform = out
    assert A.shape == (m, m) and A.dtype == bool and not np.diagonal(A).any()
    assert P.shape == (m, m) and np.isfinite(P).all()
    assert platform.shape == (m,) and np.isfinite(platform).all()
    np.testing.assert_array_equal(P, -P.T)
    assert not A[:, ~eligible].any()
    for k in np.flatnonzero(~eligible):  # an excluded seller earns nothing
        assert (P[~A[k], k] == 0).all() and platform[k] >= 0
    A2, P2 = mech.market(N, cost, K, D, eligible)
    np.testing.assert_array_equal(A2, A)
    np.testing.assert_array_equal(P2, P)
    V = mech.targets(A, N, uploads, theta0, own)
    assert V.shape == own.shape and np.isfinite(V).all()
    U = mechanisms.utilities(A, P, N, cost, K, platform)
    assert U.shape == (m,) and np.isfinite(U).all()
    robust = mechanisms.get(name, robust="median").targets(A, N, uploads, theta0, own)
    assert robust.shape == own.shape and np.isfinite(robust).all()
    tracker = mech.make_reputation(m, score_fn=lambda ups: np.zeros(len(ups)))
    tracker.update(uploads, theta0)
    assert tracker.eligible().shape == (m,)
    assert isinstance(mech.restart, bool)
    assert mech.mu >= 0
    if name in ("pfedgraph", "fedavg", "local"):
        assert (P == 0).all() and (platform == 0).all()
        assert mech.reputation == "none"
    else:
        assert mech.reputation == "similarity"
    assert mech.robust is None


def test_mechanism_settings_per_preset():
    for name in ("ipfl", "ipfl-exact", "vcg", "shapley", "posted"):
        mech = mechanisms.get(name, lam=2.0, eta=4.0)
        assert mech.restart is False and mech.mu == pytest.approx(0.5)
    assert mechanisms.get("pfedgraph").restart is True
    assert mechanisms.get("pfedgraph").mu == 0.0
    assert mechanisms.get("pfedgraph", mu=0.1).mu == 0.1
    assert mechanisms.get("fedavg").restart is True and mechanisms.get("fedavg").mu == 0.0
    assert mechanisms.get("local").restart is False and mechanisms.get("local").mu == 0.0


def test_presets_wire_the_pure_functions():
    N, cost, K, uploads, theta0, own = make_round(1)
    D = dissimilarity(uploads, theta0)
    A, P = mechanisms.get("ipfl", lam=0.5).market(N, cost, K, D)
    np.testing.assert_array_equal(A, ipfl.clear(N, cost, K, D, 0.5))
    np.testing.assert_allclose(P, ipfl.payments(A, N, K, D, 0.5))
    A, _ = mechanisms.get("ipfl-exact").market(N, cost, K, D)
    np.testing.assert_array_equal(A, ipfl.clear_exact(N, cost, K, D, 1.0))
    W = pfedgraph.graph(N, D, 0.3)
    A, _ = mechanisms.get("pfedgraph", alpha=0.3).market(N, cost, K, D)
    np.testing.assert_array_equal(A, (W > 0) & ~np.eye(len(N), dtype=bool))
    A, _ = mechanisms.get("fedavg").market(N, cost, K, D)
    np.testing.assert_array_equal(A, baselines.fedavg_graph(len(N)))
    A, _ = mechanisms.get("local").market(N, cost, K, D)
    assert not A.any()


def test_targets_by_aggregation_kind():
    N, cost, K, uploads, theta0, own = make_round(2)
    uploads = own.copy()
    m = len(N)
    D = dissimilarity(uploads, theta0)
    A = ~np.eye(m, dtype=bool)
    V = mechanisms.get("fedavg").targets(A, N, uploads, theta0, own)
    expected = (N / N.sum()) @ own.astype(np.float64)
    np.testing.assert_allclose(V, np.broadcast_to(expected, V.shape), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(mechanisms.get("local").targets(A, N, uploads, theta0, own), own)
    mech = mechanisms.get("pfedgraph")
    A_graph, _ = mech.market(N, cost, K, D)
    W = pfedgraph.graph(N, D, 0.8)
    np.testing.assert_allclose(
        mech.targets(A_graph, N, uploads, theta0, own), W @ own.astype(np.float64), rtol=1e-5
    )
    A_ipfl, _ = mechanisms.get("ipfl").market(N, cost, K, D)
    np.testing.assert_allclose(
        mechanisms.get("ipfl", eta=2.0).targets(A_ipfl, N, uploads, theta0, own),
        ipfl.proxy_targets(A_ipfl, N, uploads, theta0, own, 2.0),
    )


def test_vcg_reports_platform_deficit_and_budget():
    N, cost, K, uploads, theta0, own = make_round(3)
    D = dissimilarity(own, theta0)
    out = mechanisms.get("vcg").outcome(N, cost, K, D)
    net = out.P.sum(axis=1) + out.platform
    assert net.sum() == pytest.approx(out.platform.sum())
    assert out.platform.sum() < 0
    assert (mechanisms.utilities(out.A, out.P, N, cost, K, out.platform) >= -1e-9).all()


def test_get_params_round_trip_and_copies():
    mech = mechanisms.get("shapley", share=0.25, seed=7, reputation_params={"beta": 0.5})
    params = mech.get_params()
    assert params["share"] == 0.25 and params["seed"] == 7
    assert {"reputation", "reputation_params", "robust", "robust_params"} <= set(params)
    params["reputation_params"]["beta"] = 0.9
    assert mech.reputation_params == {"beta": 0.5}
    again = mechanisms.get(mech.name, **mech.get_params())
    assert again.get_params() == mech.get_params()
    assert "share=0.25" in repr(mech)
    for name in PRESETS:
        assert set(mechanisms.get(name).get_params()) >= {"reputation", "robust"}


def test_unknown_preset_lists_available():
    with pytest.raises(ValueError, match="available.*ipfl.*pfedgraph"):
        mechanisms.get("nope")


def test_invalid_overrides_are_reported_together():
    with pytest.raises(ValueError) as err:
        mechanisms.get("ipfl", lam=-1.0, eta=0.0, colour="red")
    text = str(err.value)
    assert "colour" in text and "lam = -1.0" in text and "eta = 0.0" in text
    assert "allowed" in text and "eta (0, inf)" in text


@pytest.mark.parametrize(
    "name, override",
    [
        ("shapley", {"share": 1.5}),
        ("shapley", {"n_permutations": 0}),
        ("shapley", {"seed": -1}),
        ("shapley", {"seed": 1.5}),
        ("shapley", {"clearing": "random"}),
        ("posted", {"price": -0.1}),
        ("pfedgraph", {"alpha": 0.0}),
        ("pfedgraph", {"lam": 1.0}),
        ("fedavg", {"mu": 0.1}),
        ("ipfl", {"lam": True}),
        ("ipfl", {"lam": float("nan")}),
        ("ipfl", {"reputation": ""}),
        ("ipfl", {"reputation_params": [1, 2]}),
        ("ipfl", {"robust": 3}),
        ("ipfl", {"robust": "no-such-aggregator"}),
    ],
)
def test_out_of_range_overrides_raise(name, override):
    with pytest.raises(ValueError, match=next(iter(override))):
        mechanisms.get(name, **override)


def test_reputation_and_robust_settings_are_checked_by_get():
    with pytest.raises(ValueError) as err:
        mechanisms.get("ipfl", reputation="simlarity", reputation_params={"colour": 1})
    assert "'simlarity'" in str(err.value) and "'similarity'" in str(err.value)
    with pytest.raises(ValueError) as err:
        mechanisms.get("ipfl", reputation_params={"colour": 1, "beta": 2.0},
                       robust="krum", robust_params={"f": -1, "tau": 1.0})
    text = str(err.value)
    for part in ("colour", "beta = 2.0", "[0, 1)", "f=-1", "tau"):
        assert part in text, part
    with pytest.raises(ValueError, match="reference"):
        mechanisms.get("fedavg", reputation="similarity", reputation_params={"reference": "x"})


def test_check_settings_lists_problems_without_building(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("check_settings must not build anything")

    from mechanisms import presets, reputation, robust

    monkeypatch.setattr(presets, "Mechanism", boom)
    monkeypatch.setattr(robust, "make_combiner", boom)
    monkeypatch.setattr(reputation, "make_reputation", boom)
    check = mechanisms.check_settings
    assert check("mechanism", "ipfl", {"lam": 2.0, "robust": "median"}) == []
    assert check("reputation", "similarity", {"beta": 0.2, "reference": "median"}) == []
    assert check("robust", "krum", {"f": 1}) == [] and check("robust", None) == []
    problems = check("mechanism", "ipfl", {"lam": -1.0, "reputation": "simlarity",
                                           "robust": "krum", "robust_params": {"f": -1}})
    assert len(problems) == 3 and "lam = -1.0" in problems[0]
    assert "available" in check("mechanism", "nope")[0]
    assert len(check("reputation", "similarity", {"beta": 2, "margin": -1})) == 2
    assert len(check("robust", "geometric_median", {"nu": 0.0, "colour": 1})) == 2
    assert check("robust", "krum", [1]) != []
    with pytest.raises(ValueError, match="kind"):
        check("colour", "red")


def test_shapley_buyers_split_their_whole_gain_by_default():
    assert mechanisms.get("shapley").get_params()["share"] == 1.0
    N, cost, K, uploads, theta0, own = make_round(6)
    D = dissimilarity(own, theta0)
    A, P = mechanisms.get("shapley").market(N, cost, K, D)
    assert A.any()
    only_buyers = np.flatnonzero(A.any(axis=1) & ~A.any(axis=0))  # nobody imports from them
    assert only_buyers.size
    for i in only_buyers:
        G = ipfl.gain(K[i], N[i], N[i] + A[i] @ N)
        assert P[i].sum() == pytest.approx(G, rel=1e-9)


def test_market_rejects_bad_inputs():
    mech = mechanisms.get("ipfl")
    N = np.array([100.0, 200.0])
    with pytest.raises(ValueError, match="N"):
        mech.market(np.array([100.0, -1.0]), 1.0, 5e5, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="D"):
        mech.market(N, 1.0, 5e5, np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="cost"):
        mech.market(N, np.ones(3), 5e5, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="eligible"):
        mech.market(N, 1.0, 5e5, np.zeros((2, 2)), eligible=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="own"):
        mech.targets(np.zeros((2, 2), dtype=bool), N, np.zeros((2, 3)), np.zeros(3), np.zeros(3))


# --- reputation and robust plumbing ------------------------------------------------------


def _install(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, f"mechanisms.{name}", module)
    monkeypatch.setattr(mechanisms, name, module, raising=False)


def test_make_reputation_delegates_by_name(monkeypatch):
    calls = []

    def make_reputation(name, n_clients, **params):
        calls.append((name, n_clients, params))
        return "tracker"

    fake = types.SimpleNamespace(make_reputation=make_reputation, check_params=lambda n, p: [])
    _install(monkeypatch, "reputation", fake)
    mech = mechanisms.get("ipfl", reputation_params={"beta": 0.8})
    assert mech.make_reputation(5) == "tracker"

    def score(uploads):
        return np.zeros(len(uploads))

    mechanisms.get("fedavg", reputation="validation").make_reputation(3, score_fn=score)
    assert calls == [
        ("similarity", 5, {"beta": 0.8}),
        ("validation", 3, {"score_fn": score}),
    ]


def test_robust_combiner_replaces_the_weighted_sums(monkeypatch):
    seen = []

    def make_combiner(name, **params):
        seen.append((name, params))
        if name == "weighted":
            return lambda C, w: w @ C
        return lambda C, w: w.sum() * np.median(C, axis=0)

    fake = types.SimpleNamespace(make_combiner=make_combiner, check_params=lambda n, p: [])
    _install(monkeypatch, "robust", fake)
    N, cost, K, uploads, theta0, own = make_round(4)
    D = dissimilarity(uploads, theta0)
    for name in ("ipfl", "pfedgraph", "fedavg"):
        plain = mechanisms.get(name)
        A, _ = plain.market(N, cost, K, D)
        expected = plain.targets(A, N, uploads, theta0, own)
        weighted = mechanisms.get(name, robust="weighted", robust_params={"f": 1})
        np.testing.assert_allclose(
            weighted.targets(A, N, uploads, theta0, own), expected, rtol=1e-5, atol=1e-5
        )
        robust = mechanisms.get(name, robust="median")
        V = robust.targets(A, N, uploads, theta0, own)
        assert np.isfinite(V).all()
        assert not np.allclose(V, expected)
    assert ("weighted", {"f": 1}) in seen and ("median", {}) in seen


def test_robust_median_resists_a_huge_upload(monkeypatch):
    def make_combiner(name, **params):
        return lambda C, w: w.sum() * np.median(C, axis=0)

    fake = types.SimpleNamespace(make_combiner=make_combiner, check_params=lambda n, p: [])
    _install(monkeypatch, "robust", fake)
    N, cost, K, uploads, theta0, own = make_round(5)
    uploads = own.copy()
    uploads[0] = 1e6
    A = baselines.fedavg_graph(len(N))
    plain = mechanisms.get("fedavg").targets(A, N, uploads, theta0, own)
    robust = mechanisms.get("fedavg", robust="median").targets(A, N, uploads, theta0, own)
    assert np.abs(plain[1:]).max() > 1e4
    assert np.abs(robust).max() < 100
