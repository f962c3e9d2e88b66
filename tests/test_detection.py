import math

import numpy as np
import pandas as pd
import pytest

from analysis import detection
from analysis.sweeps import single_threaded
from models.config import Group, MarketConfig
from models.ledger import PLATFORM, Ledger
from models.market import MarketModel


def agents_frame(point: int, strategies, exports, excluded, received=None, utility=None,
                 accuracy=None) -> pd.DataFrame:
    """Rows of one run: round 0 (must be ignored: it carries values that would change every
    sum) then one row per played round; per-participant lists hold one value per round."""
    m, rounds = len(strategies), len(exports[0])
    received = received or [[0.0] * rounds] * m
    utility = utility or [[1.0] * rounds] * m
    accuracy = accuracy or [[0.5] * rounds] * m
    rows = [{"point": point, "round": 0, "participant": p, "strategy": strategies[p],
             "exports": 7, "received": 100.0, "utility": 100.0, "excluded": True,
             "accuracy": 0.0} for p in range(m)]
    for r in range(rounds):
        rows += [{"point": point, "round": r + 1, "participant": p, "strategy": strategies[p],
                  "exports": exports[p][r], "received": received[p][r],
                  "utility": utility[p][r], "excluded": excluded[p][r],
                  "accuracy": accuracy[p][r]} for p in range(m)]
    return pd.DataFrame(rows)


STRATEGIES = ["truthful", "truthful", "fake", "fake", "free_rider"]
# p0 honest, bought, never excluded           -> not detected
# p1 honest, bought in round 1, excluded in 2  -> detected (false alarm), round 2
# p2 attacker, never bought, excluded in 1 only -> detected (never imported), round 1
# p3 attacker, never bought, excluded in 2     -> detected (excluded at the end), round 2
# p4 attacker, bought, excluded in 1 only      -> missed
ATTACKED = agents_frame(
    0, STRATEGIES,
    exports=[[2, 1], [1, 0], [0, 0], [0, 0], [1, 0]],
    excluded=[[False, False], [False, True], [True, False], [False, True], [True, False]],
    received=[[1.0, 2.0], [0.5, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 1.0]],
    utility=[[3.0, 4.0], [2.0, 2.0], [1.0, 1.0], [0.0, 0.0], [5.0, 5.0]],
    accuracy=[[0.5, 0.8], [0.9, 0.6], [0.1, 0.1], [0.1, 0.1], [0.1, 0.2]])
CLEAN = agents_frame(
    1, ["truthful"] * 5, exports=[[1, 1]] * 5, excluded=[[False, False]] * 5,
    utility=[[4.0, 4.0], [2.5, 2.5], [9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],
    accuracy=[[0.9, 0.9], [0.7, 0.7], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1]])


def test_participant_outcomes_by_hand():
    out = detection.participant_outcomes(pd.concat([ATTACKED, CLEAN]), by=["point"])
    assert len(out) == 10
    run = out[out["point"] == 0].set_index("participant")
    assert run["attacker"].tolist() == [False, False, True, True, True]
    assert run["exports"].tolist() == [3, 1, 0, 0, 1]
    assert run["received"].tolist() == [3.0, 0.5, 0.0, 0.0, 4.0]
    assert run["utility"].tolist() == [7.0, 4.0, 2.0, 0.0, 10.0]
    assert run["accuracy"].tolist() == [0.8, 0.6, 0.1, 0.1, 0.2]
    assert run["excluded"].tolist() == [False, True, False, True, False]
    assert run["detected"].tolist() == [False, True, True, True, False]
    np.testing.assert_array_equal(run["first_excluded"], [np.nan, 2.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(run["detection_round"], [np.nan, 2.0, 1.0, 2.0, np.nan])


def test_detection_scores_by_hand():
    out = detection.participant_outcomes(ATTACKED)
    scores = detection.detection_scores(out)
    assert scores["precision"] == pytest.approx(2 / 3)  # detected: p1 (honest), p2, p3
    assert scores["recall"] == pytest.approx(2 / 3)  # attackers p2, p3 of p2, p3, p4
    assert scores["honest flagged"] == 1
    assert scores["detection round"] == pytest.approx(1.5)  # p2 in round 1, p3 in round 2


def test_custom_honest_strategies_change_who_is_an_attacker():
    out = detection.participant_outcomes(ATTACKED, honest=("truthful", "free_rider"))
    assert out["attacker"].tolist() == [False, False, True, True, False]
    assert detection.detection_scores(out)["recall"] == 1.0


def test_no_attackers_and_nobody_detected():
    out = detection.participant_outcomes(CLEAN)
    scores = detection.detection_scores(out)
    assert math.isnan(scores["precision"]) and math.isnan(scores["recall"])
    assert math.isnan(scores["detection round"])
    assert scores["honest flagged"] == 0


def test_no_attackers_with_an_honest_participant_flagged():
    frame = agents_frame(0, ["truthful"] * 3, exports=[[1], [0], [2]],
                         excluded=[[False], [False], [False]])
    scores = detection.detection_scores(detection.participant_outcomes(frame))
    assert scores["precision"] == 0.0  # one detected, no attacker among them
    assert math.isnan(scores["recall"])
    assert scores["honest flagged"] == 1


def test_nobody_excluded_detection_is_never_imported_only():
    frame = agents_frame(0, ["truthful", "fake", "fake"], exports=[[1, 1], [0, 0], [0, 1]],
                         excluded=[[False, False]] * 3)
    out = detection.participant_outcomes(frame)
    assert out["detected"].tolist() == [False, True, False]
    scores = detection.detection_scores(out)
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5
    assert scores["detection round"] == 1.0


def test_run_metrics_against_the_clean_reference():
    out = detection.participant_outcomes(ATTACKED)
    ref = detection.participant_outcomes(CLEAN)
    metrics = detection.run_metrics(out, ref)
    assert metrics["attackers"] == 3
    assert metrics["honest accuracy"] == pytest.approx(0.7)
    assert metrics["honest utility"] == pytest.approx(5.5)
    assert metrics["accuracy change"] == pytest.approx(0.7 - 0.8)  # only p0, p1 compared
    assert metrics["utility change"] == pytest.approx(5.5 - 6.5)
    assert metrics["attacker revenue"] == pytest.approx(4.0 / 3)
    assert metrics["attacker utility"] == pytest.approx(4.0)
    assert metrics["attacker utility change"] == pytest.approx(4.0 - 18.0)  # same slots, clean
    assert metrics["recall"] == pytest.approx(2 / 3)
    no_ref = detection.run_metrics(out)
    assert math.isnan(no_ref["accuracy change"]) and math.isnan(no_ref["utility change"])
    assert math.isnan(no_ref["attacker utility change"])


def test_run_metrics_without_attackers_and_reference_checks():
    clean = detection.participant_outcomes(CLEAN)
    metrics = detection.run_metrics(clean, clean)
    assert metrics["attackers"] == 0
    assert metrics["accuracy change"] == 0.0 and metrics["utility change"] == 0.0
    assert math.isnan(metrics["attacker revenue"]) and math.isnan(metrics["recall"])
    assert math.isnan(metrics["attacker utility change"])
    with pytest.raises(ValueError, match=r"reference lacks the participants \[1\]"):
        detection.run_metrics(clean, clean[clean["participant"] != 1])


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="exports"):
        detection.participant_outcomes(ATTACKED.drop(columns="exports"))
    with pytest.raises(ValueError, match="payee"):
        detection.revenue_by_payer(pd.DataFrame({"round": [1]}), [0])


TRANSFERS = pd.DataFrame(
    [(1, 0, 4, 2.0),  # honest -> attacker
     (1, 3, 4, 1.0),  # attacker -> attacker
     (2, PLATFORM, 3, 0.5),  # platform subsidy to an attacker
     (2, 4, 0, 5.0),  # an attacker pays an honest seller: not attacker revenue
     (2, 0, 1, 9.0)],  # between honest participants
    columns=["round", "payer", "payee", "amount"])


def test_revenue_by_payer_by_hand():
    split = detection.revenue_by_payer(TRANSFERS, attackers=[3, 4])
    assert split["from honest"] == 2.0
    assert split["from attackers"] == 1.0
    assert split["from platform"] == 0.5
    assert split["honest share"] == pytest.approx(2.0 / 3.5)


def test_revenue_by_payer_single_attacker_and_unpaid_attackers():
    split = detection.revenue_by_payer(TRANSFERS, attackers=[4])
    assert split == {"from honest": 3.0, "from attackers": 0.0, "from platform": 0.0,
                     "honest share": 1.0}  # attacker 3 counts as a payer like anyone else
    nothing = detection.revenue_by_payer(TRANSFERS, attackers=[2])
    assert nothing["from honest"] == 0.0 and math.isnan(nothing["honest share"])
    assert math.isnan(detection.revenue_by_payer(TRANSFERS, [])["honest share"])


def test_transfers_frame_reads_a_ledger():
    ledger = Ledger()
    for slot in (0, 1):
        ledger.endow(slot, 10.0)
    ledger.post_round(1, [(0, 1, 1_500_000_000), (1, PLATFORM, 250_000_000)])
    frame = detection.transfers_frame(ledger)
    assert list(frame.columns) == ["round", "payer", "payee", "amount"]
    assert frame.to_dict("list") == {"round": [1, 1], "payer": [0, 1],
                                     "payee": [1, PLATFORM], "amount": [1.5, 0.25]}
    assert detection.transfers_frame(Ledger()).empty


def test_market_transfers_reproduces_the_received_column():
    cfg = MarketConfig(dataset="synthetic", n_samples=400, n_participants=4, rounds=2,
                       local_steps=2, reputation="none", population=(Group(count=3), Group(
                           strategy="fake", count=1, params={"attack": "scaled"})))
    with single_threaded():  # the thread settings market_transfers uses
        model = MarketModel(cfg)
        while model.running:
            model.step()
        agents = model.agent_frame()
        model.release()
    transfers = detection.market_transfers(cfg.to_dict())
    received = transfers.groupby("payee")["amount"].sum()
    expected = agents[agents["round"] > 0].groupby("participant")["received"].sum()
    for slot, amount in expected.items():
        assert received.get(slot, 0.0) == pytest.approx(amount, abs=1e-9)
    out = detection.participant_outcomes(agents)
    split = detection.revenue_by_payer(transfers, out.loc[out["attacker"], "participant"])
    assert split["from honest"] > 0  # without reputation the scaled fake is bought
    assert split["from honest"] + split["from attackers"] == pytest.approx(
        out.loc[out["attacker"], "received"].sum(), abs=1e-9)
