"""The market model on real (small) training: determinism, money, attackers, checkpoints."""

import math

import mesa
import numpy as np
import pandas as pd
import pytest

from models import checkpoint
from models.checkpoint import CheckpointError
from models.config import ConfigError, Group, MarketConfig
from models.market import MarketModel

SMALL = dict(dataset="mnist1d", n_samples=2000, rounds=4, local_steps=20, n_participants=6,
             min_size=20, endowment=10.0, population=(
                 Group(role="trader", count=4), Group(role="buyer", count=1),
                 Group(role="seller", count=1)))


def small(**changes) -> MarketConfig:
    return MarketConfig(**{**SMALL, **changes})


def run(cfg: MarketConfig) -> MarketModel:
    model = MarketModel(cfg)
    while model.running:
        model.step()
    return model


def test_same_seed_same_frames_and_different_seed_differs():
    a, b, c = run(small(seed=1)), run(small(seed=1)), run(small(seed=2))
    pd.testing.assert_frame_equal(a.agent_frame(), b.agent_frame())
    pd.testing.assert_frame_equal(a.model_frame(), b.model_frame())
    assert not a.agent_frame()["accuracy"].equals(c.agent_frame()["accuracy"])


def test_each_participant_holds_its_own_private_data():
    model = MarketModel(small(rounds=1))
    sizes = [len(a.data[1]) for a in model.participants]
    assert sizes == [a.true_n for a in model.participants]
    assert all(len(a.data[0]) == len(a.data[1]) for a in model.participants)
    model.release()


def test_frames_have_the_promised_columns():
    model = run(small(rounds=2))
    agents, rounds = model.agent_frame(), model.model_frame()
    for col in ["round", "participant", "role", "strategy", "reported_n", "true_n",
                "reported_cost", "true_cost", "imports", "exports", "paid", "received",
                "utility", "wallet", "reputation", "accuracy", "active"]:
        assert col in agents.columns, col
    for col in ["round", "welfare", "total_payments", "budget_surplus", "honest_accuracy",
                "active", "trades"]:
        assert col in rounds.columns, col
    assert list(rounds["round"]) == [0, 1, 2]
    assert len(agents) == 3 * 6


def test_money_is_conserved_and_ipfl_is_budget_balanced():
    model = run(small(rounds=3))
    agents, rounds = model.agent_frame(), model.model_frame()
    platform = rounds.set_index("round")["platform_balance"]
    for r, frame in agents.groupby("round"):
        assert frame["wallet"].sum() + platform[r] == pytest.approx(6 * 10.0, abs=1e-9)
        assert frame["paid"].sum() == pytest.approx(frame["received"].sum(), abs=1e-9)
    assert (rounds["budget_surplus"] == 0).all()
    assert rounds["trades"].iloc[1:].gt(0).all()  # the market does trade


def test_attackers_are_never_imported_by_honest_buyers_after_round_one():
    cfg = small(rounds=4, n_participants=8, population=(
        Group(role="trader", count=5), Group(role="buyer", count=1),
        Group(role="seller", strategy="fake", count=1, params={"attack": "sign_flip"}),
        Group(role="trader", strategy="free_rider", count=1, params={"kind": "constant"})))
    model = run(cfg)
    attackers = {a.slot for a in model.participants if a.strategy.name in ("fake", "free_rider")}
    honest = {a.slot for a in model.participants if a.strategy.honest}
    late = [(r, i, j) for r, i, j in model.trade_log if r >= 2 and i in honest and j in attackers]
    assert late == []
    agents = model.agent_frame()
    revenue = agents[agents["participant"].isin(attackers) & (agents["round"] >= 2)]["received"]
    assert (revenue == 0).all()
    assert any(i in honest and j in honest for _, i, j in model.trade_log)


def test_nan_upload_does_not_crash_and_is_excluded():
    cfg = small(rounds=3, n_participants=6, population=(
        Group(role="trader", count=5),
        Group(role="seller", strategy="fake", count=1, params={"attack": "non_finite"})))
    model = run(cfg)
    assert model.round == 3
    bad = next(a for a in model.participants if a.strategy.name == "fake")
    assert {r for r, slot in model.hostile if slot == bad.slot} == {1, 2, 3}
    assert all(j != bad.slot for _, _, j in model.trade_log)
    assert all(math.isfinite(h["utility"]) for a in model.participants for h in a.history)
    assert np.isfinite(model.trainer.params.numpy()).all()


def test_a_diverging_honest_client_restarts_and_the_round_completes(caplog):
    model = run(small(rounds=4, lr=5.0, population=(Group(role="trader", count=6),)))
    assert model.round == 4
    assert "diverged" in caplog.text and "restarts from the initial model" in caplog.text
    assert all(math.isfinite(a.wallet) for a in model.participants)
    assert np.isfinite(model.targets).all()


def test_the_market_stops_when_fewer_than_two_participants_remain():
    cfg = small(rounds=4, mechanism="fedavg", churn="ir_strict", n_participants=3,
                population=(Group(role="trader", count=1), Group(role="buyer", count=2)))
    model = run(cfg)
    assert model.round == 1 and not model.running  # both buyers left after round 1
    assert model.n_active == 1


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_ir_prob_leaves_after_a_loss_with_probability_p(p):
    common = dict(rounds=2, mechanism="fedavg")  # buyers export at 1e6 each: a sure loss
    prob = run(small(churn="ir_prob", churn_prob=p, **common))
    strict = run(small(churn="ir_strict", **common))
    left = {a.slot for a in prob.participants if a.left is not None}
    assert left == (set() if p == 0 else {a.slot for a in strict.participants
                                          if a.left is not None})
    assert p == 0 or left


def test_arrivals_join_with_the_configured_strategy():
    cfg = small(rounds=3, max_arrivals=2, arrival_prob=1.0,
                arrival_population=(Group(strategy="learning"),))
    model = run(cfg)
    newcomers = model.participants[6:]
    assert [(a.slot, a.joined, a.strategy.name) for a in newcomers] == [
        (6, 1, "learning"), (7, 2, "learning")]
    agents = model.agent_frame()
    assert agents[(agents["participant"] == 7) & (agents["round"] == 3)]["active"].all()


def test_ipfl_beats_local_on_a_non_iid_partition():
    common = dict(rounds=5, local_steps=25, partition="dirichlet", beta=0.3, n_participants=8,
                  n_samples=2400, min_size=20, population=(Group(role="trader", count=8),))

    def late_accuracy(mechanism: str) -> float:  # last two rounds, averaged over four seeds
        return float(np.mean([run(small(mechanism=mechanism, seed=seed, **common))
                              .model_frame()["honest_accuracy"].iloc[-2:].mean()
                              for seed in range(4)]))

    assert late_accuracy("ipfl") > late_accuracy("local")


def test_resume_from_checkpoint_equals_the_uninterrupted_run(tmp_path):
    cfg = small(rounds=4, churn="ir_prob", churn_prob=0.5, max_arrivals=2, arrival_prob=0.5,
                arrival_population=(Group(strategy="learning"),),
                population=(Group(role="trader", count=3),
                            Group(role="trader", strategy="learning", count=2),
                            Group(role="seller", strategy="free_rider", count=1,
                                  params={"kind": "disguised"})))
    whole = run(cfg)
    part = MarketModel(cfg)
    part.step()
    part.step()
    path = tmp_path / "market.npz"
    part.save(path)
    resumed = MarketModel.load(path)
    while resumed.running:
        resumed.step()
    pd.testing.assert_frame_equal(whole.agent_frame(), resumed.agent_frame())
    pd.testing.assert_frame_equal(whole.model_frame(), resumed.model_frame())
    assert whole.trade_log == resumed.trade_log


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    model = MarketModel(small(rounds=2))
    model.step()
    path = tmp_path / "market.npz"
    model.save(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        MarketModel.load(path)


def test_a_checkpoint_that_contradicts_its_config_is_a_clear_error(tmp_path):
    model = MarketModel(small(rounds=2))
    model.step()
    path = tmp_path / "market.npz"
    model.save(path)
    state = checkpoint.load(path)
    state["participants"] = state["participants"][:3]  # fewer than the config holds
    checkpoint.save(path, state)
    with pytest.raises(CheckpointError, match="incomplete or malformed"):
        MarketModel.load(path)


def test_bad_config_values_give_the_promised_error():
    with pytest.raises(ConfigError) as info:
        MarketModel(rounds=0, lr=-1.0, mechanism="auction")
    assert {p.split("=")[0] for p in info.value.problems} >= {"rounds", "lr", "mechanism"}


def test_runs_under_mesa_batch_run_with_a_seed_parameter():
    params = {k: v for k, v in SMALL.items() if k != "population"} | {
        "seed": [0, 1], "rounds": 2, "population": [SMALL["population"]]}
    rows = mesa.batch_run(MarketModel, parameters=params, number_processes=1,
                          data_collection_period=1, display_progress=False)
    frame = pd.DataFrame(rows)
    assert set(frame["seed"]) == {0, 1}
    assert {"welfare", "honest_accuracy", "utility", "wallet"} <= set(frame.columns)
    direct = run(small(seed=1, rounds=2)).model_frame().set_index("round")
    mine = frame[(frame["seed"] == 1)].drop_duplicates("Step").set_index("Step")
    assert mine.loc[1, "welfare"] == pytest.approx(direct.loc[1, "welfare"])
    assert mesa.Agent._ids == {} or all(m.running for m in mesa.Agent._ids)


def test_participants_who_leave_stay_out_with_empty_records():
    cfg = small(rounds=4, mechanism="fedavg", churn="ir_strict")  # buyers pay 1e6 per export
    model = run(cfg)
    agents = model.agent_frame()
    gone = [a for a in model.participants if a.left is not None]
    assert gone, "fedavg makes the prohibitive-cost buyer export, so it must leave"
    for a in gone:
        later = agents[(agents["participant"] == a.slot) & (agents["round"] > a.left)]
        assert not later["active"].any()
        assert (later[["imports", "exports", "paid", "received", "utility"]] == 0).all().all()
        assert all(i != a.slot and j != a.slot for r, i, j in model.trade_log if r > a.left)


def test_validation_reputation_scores_uploads_on_a_held_out_split():
    cfg = small(rounds=3, n_participants=6, reputation="validation", validation_size=200,
                partition="iid", local_steps=40, lr=0.05, population=(Group(role="trader", count=5),
                            Group(role="seller", strategy="fake", count=1,
                                  params={"attack": "gaussian"})))
    model = run(cfg)
    assert len(model.dataset.y_test) + 200 == len(
        MarketModel(small(rounds=1)).dataset.y_test)
    fake = next(a for a in model.participants if a.strategy.name == "fake")
    assert fake.excluded and all(j != fake.slot for r, _, j in model.trade_log if r >= 2)
    assert not any(a.excluded for a in model.participants if a.strategy.honest)
