"""Incentive audits: misreport regret, IR, budget, efficiency, equilibria, full-run audits."""

import inspect
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from market_strategies import markets as shared_markets
from matplotlib.figure import Figure

import mechanisms
from analysis import incentives as inc
from mechanisms.presets import MarketOutcome
from models.config import Group, MarketConfig
from models.market import MarketModel


def market(seed: int = 0, m: int = 6, buyers: int = 1, sellers: int = 1):
    """A random market: traders, `buyers` pure buyers (prohibitive cost), `sellers` pure
    sellers (K = 0), dissimilarities from random vectors around one centre."""
    rng = np.random.default_rng(seed)
    N = rng.integers(80, 600, m).astype(float)
    cost = rng.uniform(0.5, 2.0, m)
    cost[:buyers] = 1e6
    K = np.full(m, 5e5)
    K[m - sellers:] = 0.0
    X = rng.normal(size=40) + 0.6 * rng.normal(size=(m, 40))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    D = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    return N, cost, K, D


def markets(min_m=3, max_m=6):
    return shared_markets(min_m, max_m, n_range=(50, 1000), cost_max=3.0,
                          k_range=(1e4, 1e6), lam_max=None)


class SizeBounty:
    """A deliberately broken mechanism: no trade, but the platform pays everyone 0.01 per
    REPORTED sample, so exaggerating one's size pays."""

    name = "size-bounty"

    def outcome(self, N, cost, K, D, eligible=None):
        m = len(N)
        return MarketOutcome(np.zeros((m, m), dtype=bool), np.zeros((m, m)),
                             -0.01 * np.asarray(N, dtype=float))


class MatchingPennies:
    """A two-player report game without a pure equilibrium: player 0 earns 1 when both
    report the same size factor, player 1 earns 1 when they differ."""

    name = "pennies"

    def __init__(self, N_true):
        self.N_true = np.asarray(N_true, dtype=float)

    def outcome(self, N, cost, K, D, eligible=None):
        f = np.asarray(N, dtype=float) / self.N_true
        match = bool(np.isclose(f[0], f[1]))
        platform = -np.array([1.0 if match else 0.0, 0.0 if match else 1.0])
        return MarketOutcome(np.zeros((2, 2), dtype=bool), np.zeros((2, 2)), platform)


class Noisy:
    """A mechanism that draws fresh randomness every call (breaks common random numbers)."""

    name = "noisy"

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def outcome(self, N, cost, K, D, eligible=None):
        m = len(N)
        return MarketOutcome(np.zeros((m, m), dtype=bool), np.zeros((m, m)),
                             self.rng.normal(size=m))


# --- regret ---------------------------------------------------------------------------------
def test_regret_schema_and_truthful_factor_has_zero_gain():
    N, cost, K, D = market(m=5)
    factors = (0.5, 1.0, 2.0)
    df = inc.regret(mechanisms.get("ipfl"), N, cost, K, D, factors)
    assert list(df.columns) == ["participant", "dimension", "factor", "utility",
                                "truthful_utility", "gain"]
    assert len(df) == 5 * 2 * 3
    # every participant (pure buyer 0 and pure seller 4 included) has both dimensions
    assert set(map(tuple, df[["participant", "dimension"]].drop_duplicates().to_numpy())) == {
        (i, d) for i in range(5) for d in ("n", "cost")}
    assert (df.loc[df["factor"] == 1.0, "gain"] == 0.0).all()
    assert np.allclose(df["gain"], df["utility"] - df["truthful_utility"])
    truth = mechanisms.utilities(*mechanisms.get("ipfl").market(N, cost, K, D), N, cost, K)
    per_participant = df.groupby("participant")["truthful_utility"].first().to_numpy()
    assert np.allclose(per_participant, truth)


def test_regret_realises_utility_with_true_values():
    N, cost, K, D = market(seed=3, m=5)
    mech = mechanisms.get("ipfl")
    df = inc.regret(mech, N, cost, K, D, (2.0,), participants=[2], dimensions=("n",))
    reported = N.copy()
    reported[2] *= 2.0
    A, P = mech.market(reported, cost, K, D)
    expected = mechanisms.utilities(A, P, N, cost, K)[2]
    assert df["participant"].tolist() == [2] and df["dimension"].tolist() == ["n"]
    assert df["utility"].iloc[0] == pytest.approx(expected, rel=1e-12)


def test_negative_controls_are_caught():
    N, cost, K, D = market(seed=1, m=5)
    bounty = inc.epsilon(inc.regret(SizeBounty(), N, cost, K, D))
    assert bounty["n"] == pytest.approx(0.01 * N.max() * (2.0 - 1.0))
    assert bounty["cost"] == 0.0 and bounty["max"] == bounty["n"]
    shapley = inc.epsilon(inc.regret(mechanisms.get("shapley"), N, cost, K, D))
    assert shapley["max"] > 1e-3
    local = inc.epsilon(inc.regret(mechanisms.get("local"), N, cost, K, D))
    assert local == {"n": 0.0, "cost": 0.0, "max": 0.0}


def test_mechanism_with_fresh_randomness_is_refused():
    N, cost, K, D = market(m=4)
    with pytest.raises(ValueError, match="deterministic"):
        inc.regret(Noisy(), N, cost, K, D)


@settings(max_examples=12, deadline=None)
@given(markets())
def test_vcg_misreporting_cost_never_pays(mkt):
    N, cost, K, D = mkt
    df = inc.regret(mechanisms.get("vcg"), N, cost, K, D, dimensions=("cost",))
    assert inc.epsilon(df)["cost"] <= 1e-9


def test_regret_table_and_epsilon():
    df = pd.DataFrame({
        "participant": [0, 0, 0, 0, 1, 1],
        "dimension": ["n", "n", "n", "cost", "n", "n"],
        "factor": [0.5, 1.0, 2.0, 2.0, 0.5, 2.0],
        "utility": [3.0, 1.0, 3.0, 0.5, 1.0, 1.0],
        "truthful_utility": [1.0, 1.0, 1.0, 1.0, 2.0, 2.0],
        "gain": [2.0, 0.0, 2.0, -0.5, -1.0, -1.0],
    })
    table = inc.regret_table(df)
    assert table[["participant", "dimension"]].values.tolist() == [[0, "n"], [0, "cost"],
                                                                  [1, "n"]]
    assert table["gain"].tolist() == [2.0, -0.5, -1.0]
    assert table["best_factor"].tolist()[0] == 0.5  # tie at equal distance from truth: smaller
    eps = inc.epsilon(df)
    assert eps == {"n": 2.0, "cost": 0.0, "max": 2.0}
    assert math.isnan(inc.epsilon(df[df["dimension"] == "n"])["cost"])
    with pytest.raises(ValueError, match="regret columns"):
        inc.regret_table(df.drop(columns="gain"))


@pytest.mark.parametrize("kwargs, match", [
    ({"factors": ()}, "factors"),
    ({"factors": (1.0, -2.0)}, "factors"),
    ({"factors": (1.0, 1e4)}, r"factors .* in \[0.001, 1000\]"),  # as strategies allow
    ({"participants": [7]}, "participants"),
    ({"dimensions": ("size",)}, "dimensions"),
])
def test_regret_rejects_bad_arguments(kwargs, match):
    N, cost, K, D = market(m=4)
    with pytest.raises(ValueError, match=match):
        inc.regret(mechanisms.get("ipfl"), N, cost, K, D, **kwargs)


def test_population_validation_names_the_bad_value():
    N, cost, K, D = market(m=4)
    bad = D.copy()
    bad[0, 1] = 2.5
    with pytest.raises(ValueError, match=r"D\[0, 1\]"):
        inc.Population(N, cost, K, bad)
    with pytest.raises(ValueError, match=r"N\[2\]"):
        inc.Population(np.array([1.0, 2.0, 0.0, 3.0]), cost, K, D)


# --- IR, budget, efficiency -----------------------------------------------------------------------
def test_ir_violations_pure_layer():
    N, cost, K, D = market(seed=2, m=6, buyers=2)
    ok = inc.ir_violations(mechanisms.get("ipfl"), N, cost, K, D)
    assert list(ok.columns) == ["participant", "utility", "violation", "shortfall"]
    assert not ok["violation"].any() and (ok["shortfall"] == 0).all()
    assert not np.signbit(ok["shortfall"]).any()
    # fedavg makes the prohibitive-cost buyers export to everyone
    bad = inc.ir_violations(mechanisms.get("fedavg"), N, cost, K, D)
    assert bad["violation"].tolist()[:2] == [True, True]
    assert bad["shortfall"].iloc[0] == pytest.approx(-bad["utility"].iloc[0])
    # only truthful participants of a profile are audited
    liars = inc.ir_violations(mechanisms.get("ipfl"), N, cost, K, D,
                              profile={"n": [2.0, 1, 1, 1, 1, 1]})
    assert liars["participant"].tolist() == [1, 2, 3, 4, 5]


@settings(max_examples=15, deadline=None)
@given(markets(min_m=2))
def test_ipfl_is_budget_balanced_every_market(mkt):
    money = inc.budget(mechanisms.get("ipfl"), *mkt)
    assert money["platform_surplus"] == 0.0
    assert abs(money["payments_sum"]) <= 1e-9
    assert money["balanced"]


def test_vcg_runs_a_deficit():
    N, cost, K, D = market(seed=4)
    money = inc.budget(mechanisms.get("vcg"), N, cost, K, D)
    assert money["platform_surplus"] < 0 and not money["balanced"]
    assert money["volume"] > 0


def test_efficiency_definitions():
    N, cost, K, D = market(seed=5, m=7)
    exact = inc.efficiency(mechanisms.get("ipfl-exact"), N, cost, K, D)
    assert exact["ratio"] == pytest.approx(1.0) and exact["lam"] == 1.0
    greedy = inc.efficiency(mechanisms.get("ipfl"), N, cost, K, D)
    assert greedy["optimum"] == pytest.approx(exact["optimum"])
    assert greedy["ratio"] <= 1.0 + 1e-12
    local = inc.efficiency(mechanisms.get("local"), N, cost, K, D)
    assert local["welfare"] == 0.0 and local["ratio"] == 0.0
    fedavg = inc.efficiency(mechanisms.get("fedavg"), N, cost, K, D)
    assert fedavg["ratio"] < 0  # the prohibitive-cost buyer exports to everyone
    social = inc.efficiency(mechanisms.get("vcg", lam=0.0), N, cost, K, D)
    assert social["lam"] == 0.0 and social["social_ratio"] == pytest.approx(1.0)
    assert inc.efficiency(mechanisms.get("ipfl"), N, cost, K, D, lam=2.0)["lam"] == 2.0
    no_trade = inc.efficiency(mechanisms.get("ipfl"), N, cost, np.zeros_like(K), D)
    assert no_trade["ratio"] == 1.0 and no_trade["social_ratio"] == 1.0


def test_social_and_optimal_welfare():
    N, cost, K, D = market(seed=6)
    mech = mechanisms.get("vcg")
    A, P, platform = mech.outcome(N, cost, K, D)
    U = mechanisms.utilities(A, P, N, cost, K, platform)
    assert inc.social_welfare(mech, N, cost, K, D) == pytest.approx(U.sum() + platform.sum())
    best = inc.optimal_welfare(N, cost, K, D)
    for name in ("ipfl", "ipfl-exact", "vcg", "shapley", "fedavg", "pfedgraph", "local"):
        assert inc.social_welfare(mechanisms.get(name), N, cost, K, D) <= best + 1e-9


# --- equilibria --------------------------------------------------------------------------
def test_regret_keeps_its_documented_signature():
    params = inspect.signature(inc.regret).parameters
    assert list(params)[:6] == ["mechanism", "N", "cost", "K", "D", "factors"]
    assert params["factors"].default == (0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)


def test_price_of_anarchy_conventions():
    assert inc.price_of_anarchy(10.0, 5.0) == 2.0
    assert inc.price_of_anarchy(0.0, 0.0) == 1.0
    assert inc.price_of_anarchy(5.0, 0.0) == math.inf
    assert inc.price_of_anarchy(5.0, -1.0) == math.inf


def test_brd_truth_is_the_fixed_point_when_dominant():
    # VCG with lam = 0: truthful costs are dominant and clear the welfare optimum
    N, cost, K, D = market(seed=7, m=5)
    mech = mechanisms.get("vcg", lam=0.0)
    result = inc.best_response_dynamics(mech, N, cost, K, D, dimensions=("cost",))
    assert result.converged and not result.cycle and result.iterations == 1
    assert (result.profile["n"] == 1.0).all() and (result.profile["cost"] == 1.0).all()
    assert result.welfare == pytest.approx(result.truthful_welfare)
    assert result.optimal_welfare == pytest.approx(inc.optimal_welfare(N, cost, K, D))
    assert result.welfare == pytest.approx(result.optimal_welfare)
    assert result.price_of_anarchy == pytest.approx(1.0)
    assert list(result.history.columns) == ["sweep", "participant", "n_factor", "cost_factor",
                                            "utility", "welfare"]
    assert result.history["sweep"].unique().tolist() == [0, 1]


def test_brd_from_random_start_reaches_an_equilibrium():
    N, cost, K, D = market(seed=8, m=5)
    mech = mechanisms.get("vcg")
    result = inc.best_response_dynamics(mech, N, cost, K, D, dimensions=("cost",),
                                        start="random", seed=3, max_iter=10)
    assert result.converged
    eps, _ = inc.epsilon_nash(mech, N, cost, K, D, result.profile, dimensions=("cost",))
    assert eps <= 1e-9
    again = inc.best_response_dynamics(mech, N, cost, K, D, dimensions=("cost",),
                                       start="random", seed=3, max_iter=10)
    assert all(np.array_equal(again.profile[d], result.profile[d]) for d in ("n", "cost"))


def test_brd_detects_a_cycle():
    N = np.array([100.0, 200.0])
    game = MatchingPennies(N)
    result = inc.best_response_dynamics(game, N, np.ones(2), np.zeros(2), np.zeros((2, 2)),
                                        grid=(1.0, 2.0), dimensions=("n",), max_iter=20)
    assert not result.converged and result.cycle
    assert result.iterations == 3  # sweep 3 ends where sweep 1 ended
    assert math.isnan(result.price_of_anarchy)  # no equilibrium, no price of anarchy


def test_brd_only_moves_strategic_participants():
    N, cost, K, D = market(seed=9, m=5)
    result = inc.best_response_dynamics(mechanisms.get("ipfl"), N, cost, K, D, strategic=[1, 2],
                                        max_iter=5)
    assert (result.profile["n"][[0, 3, 4]] == 1.0).all()
    assert set(result.history["participant"]) == {1, 2}
    with pytest.raises(ValueError, match="must contain 1.0"):
        inc.best_response_dynamics(mechanisms.get("ipfl"), N, cost, K, D, grid=(0.5, 2.0))
    with pytest.raises(ValueError, match="start"):
        inc.best_response_dynamics(mechanisms.get("ipfl"), N, cost, K, D, start="lying")


def test_epsilon_nash():
    N, cost, K, D = market(seed=10, m=5)
    truth = inc.truthful_profile(5)
    eps, frame = inc.epsilon_nash(mechanisms.get("vcg"), N, cost, K, D, truth,
                                  dimensions=("cost",))
    assert eps <= 1e-9 and len(frame) == 5
    eps, frame = inc.epsilon_nash(mechanisms.get("ipfl"), N, cost, K, D, truth, (0.5, 1.0, 2.0))
    assert eps > 0
    best = frame.loc[frame["gain"].idxmax()]
    deviation = {"n": np.ones(5), "cost": np.ones(5)}
    deviation["n"][int(best["participant"])] = best["best_n_factor"]
    deviation["cost"][int(best["participant"])] = best["best_cost_factor"]
    U = inc.realised_utilities(mechanisms.get("ipfl"), N, cost, K, D, deviation)
    assert U[int(best["participant"])] == pytest.approx(best["best_utility"])
    assert eps == pytest.approx(best["best_utility"] - best["utility"])


# --- plots ---------------------------------------------------------------------------------
def test_plots_are_figures(tmp_path):
    N, cost, K, D = market(m=5)
    mech = mechanisms.get("ipfl")
    df = inc.regret(mech, N, cost, K, D, (0.5, 1.0, 2.0))
    result = inc.best_response_dynamics(mech, N, cost, K, D, grid=(0.5, 1.0, 2.0), max_iter=3)
    for fig in (inc.misreport_curves(df), inc.regret_heatmap(df), inc.brd_trajectory(result)):
        assert isinstance(fig, Figure) and fig.axes
        fig.savefig(tmp_path / "figure.png")
    assert len(inc.misreport_curves(df[df["dimension"] == "n"]).axes) == 1


# --- full simulations --------------------------------------------------------------------------
TINY = dict(dataset="mnist1d", n_samples=2000, rounds=2, local_steps=5, n_participants=5,
            min_size=20, population=(Group(role="trader", count=3), Group(role="buyer", count=1),
                                     Group(role="seller", count=1)))


def run(cfg: MarketConfig) -> MarketModel:
    model = MarketModel(cfg)
    while model.running:
        model.step()
    return model


def test_simulate_misreport_uses_common_random_numbers():
    cfg = MarketConfig(**TINY)
    df = inc.simulate_misreport(cfg, 1, "n", (2.0, 1.0))
    assert list(df.columns) == [*inc.REGRET_COLUMNS, "rounds"]
    assert df["factor"].tolist() == [2.0, 1.0]
    assert df.loc[df["factor"] == 1.0, "gain"].tolist() == [0.0]
    assert (df["rounds"] == 2).all()
    # the truthful baseline is the unchanged market's utility, exactly
    baseline = run(cfg).participants[1].history
    assert df["truthful_utility"].iloc[0] == sum(h["utility"] for h in baseline)
    assert df.loc[df["factor"] == 2.0, "utility"].iloc[0] != df["truthful_utility"].iloc[0]


def test_simulate_misreport_replaces_only_that_slot():
    cfg = MarketConfig(**{**TINY, "population": (Group(role="trader", fraction=0.6),
                                                 Group(role="buyer", count=1),
                                                 Group(role="seller"))})
    changed = inc._with_misreport(cfg, 1, "cost", 2.0)
    model = MarketModel(changed)
    original = MarketModel(cfg)
    assert [a.strategy.name for a in model.participants] == [
        "truthful", "misreport", "truthful", "truthful", "truthful"]
    assert model.participants[1].strategy.get_params() == {"n_factor": 1.0, "cost_factor": 2.0}
    assert [a.role for a in model.participants] == [a.role for a in original.participants]
    assert [a.true_n for a in model.participants] == [a.true_n for a in original.participants]
    with pytest.raises(ValueError, match="participant"):
        inc.simulate_misreport(cfg, 5, "n", (1.0,))
    with pytest.raises(ValueError, match="dimension"):
        inc.simulate_misreport(cfg, 0, "size", (1.0,))


def test_run_audits_from_frames():
    model = run(MarketConfig(**{**TINY, "rounds": 3}))
    agents, rounds = model.agent_frame(), model.model_frame()
    money = inc.budget_from_run(agents)
    assert money["round"].tolist() == [1, 2, 3]
    assert np.allclose(money["surplus"], 0.0, atol=1e-9)
    assert np.allclose(money["surplus"], rounds["budget_surplus"].iloc[1:])
    assert (money["paid"] > 0).all()
    ir = inc.ir_violations_from_run(agents)
    assert list(ir.columns) == ["round", "participants", "violations", "worst_shortfall",
                                "cumulative_violations", "worst_cumulative_shortfall"]
    assert (ir["participants"] == 5).all() and (ir["violations"] == 0).all()
    nobody = inc.ir_violations_from_run(agents, strategies=("fake",))
    assert (nobody[["participants", "violations", "cumulative_violations"]] == 0).all().all()
    assert nobody["participants"].dtype == np.int64


def test_run_ir_counts_departed_participants_only_cumulatively():
    # fedavg makes the prohibitive-cost buyer export: it loses in round 1 and leaves
    model = run(MarketConfig(**{**TINY, "rounds": 3, "mechanism": "fedavg",
                                "churn": "ir_strict"}))
    agents = model.agent_frame()
    ir = inc.ir_violations_from_run(agents)
    assert ir["violations"].iloc[0] >= 1
    left = ir["participants"].iloc[0] - ir["participants"].iloc[1]
    assert left >= 1 and (ir["violations"].iloc[1:] == 0).all()
    assert (ir["cumulative_violations"] == ir["violations"].iloc[0]).all()
    assert ir["worst_cumulative_shortfall"].nunique() == 1
    money = inc.budget_from_run(agents)
    assert (money["surplus"] == 0).all()
