"""Detection and attacker-revenue metrics of markets with hostile participants.

The inputs are tidy frames:

- an *agents frame*, as returned by ``MarketModel.agent_frame()`` or by
  ``run_sweep(..., agents=True)``: one row per (run,) round and participant with at least the
  columns round, participant, strategy, exports, received, utility, excluded and accuracy
  (round 0, the state before the first round, is ignored);
- a *transfers frame*, one row per payment: round, payer, payee, amount (participants by
  slot; the platform is ``models.ledger.PLATFORM``), e.g. :func:`transfers_frame` of a
  model's ledger.

Definitions:

- *attacker*: a participant whose strategy is not one of the honest strategies (default
  ``truthful``);
- *detected*: excluded by the reputation in the last round played, or never imported by
  anyone during the run (a model nobody buys cannot hurt or earn);
- *detection round*: the first round a detected participant was excluded, or round 1 for
  one that was never imported and is not excluded at the end; NaN if not detected;
- *precision*: share of the detected participants that are attackers (NaN if nobody is
  detected); *recall*: share of the attackers that are detected (NaN without attackers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.ledger import PLATFORM, UNITS_PER_COIN

AGENT_COLUMNS = ("round", "participant", "strategy", "exports", "received", "utility",
                 "excluded", "accuracy")
TRANSFER_COLUMNS = ("round", "payer", "payee", "amount")
HONEST = ("truthful",)


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing} (required: {list(columns)})")


def participant_outcomes(agents: pd.DataFrame, by: Sequence[str] = (),
                         honest: Iterable[str] = HONEST) -> pd.DataFrame:
    """One row per run (the columns `by`) and participant, over the rounds played.

    Columns: the keys, participant, strategy, attacker, exports, received, utility (sums
    over the rounds), accuracy (last round), excluded (in the last round), first_excluded
    (first round excluded, NaN if never), never_imported, detected, detection_round
    (definitions in the module docstring).
    """
    by = list(by)
    _require(agents, [*AGENT_COLUMNS, *by], "agents")
    played = agents[agents["round"] > 0].sort_values([*by, "participant", "round"],
                                                     kind="stable")
    played = played.assign(excluded=played["excluded"].astype(bool))
    keys = [*by, "participant"]
    out = played.groupby(keys, sort=True).agg(
        strategy=("strategy", "first"), exports=("exports", "sum"),
        received=("received", "sum"), utility=("utility", "sum"),
        accuracy=("accuracy", "last"), excluded=("excluded", "last"))
    first = played[played["excluded"]].groupby(keys)["round"].min()
    out["first_excluded"] = first.reindex(out.index).astype(float)
    out["attacker"] = ~out["strategy"].isin(list(honest))
    out["never_imported"] = out["exports"] == 0
    out["detected"] = out["excluded"] | out["never_imported"]
    out["detection_round"] = np.where(out["excluded"], out["first_excluded"],
                                      np.where(out["never_imported"], 1.0, np.nan))
    return out.reset_index()


def detection_scores(outcomes: pd.DataFrame) -> dict[str, float]:
    """Precision, recall, honest participants flagged and mean detection round of the
    detected attackers, for ONE run's :func:`participant_outcomes`."""
    _require(outcomes, ("attacker", "detected", "detection_round"), "outcomes")
    attacker = outcomes["attacker"].to_numpy(dtype=bool)
    detected = outcomes["detected"].to_numpy(dtype=bool)
    rounds = outcomes["detection_round"].to_numpy(dtype=float)[attacker & detected]
    return {
        "precision": float(attacker[detected].mean()) if detected.any() else np.nan,
        "recall": float(detected[attacker].mean()) if attacker.any() else np.nan,
        "honest flagged": int((detected & ~attacker).sum()),
        "detection round": float(rounds.mean()) if rounds.size else np.nan,
    }


def run_metrics(outcomes: pd.DataFrame, reference: pd.DataFrame | None = None
                ) -> dict[str, float]:
    """Honest and attacker outcomes of ONE run plus its :func:`detection_scores`: number of
    attackers, honest accuracy (mean, last round) and utility (mean, summed over the run),
    their changes, attacker revenue and utility.

    `reference`: the :func:`participant_outcomes` of a run without attackers; the changes
    compare the honest participants, and the attackers, with THEMSELVES in it, i.e. with the
    same slots playing honestly (NaN without a reference). Attacker revenue and utility are
    means per attacker over the run (NaN without one).
    """
    _require(outcomes, ("participant", "attacker", "accuracy", "utility", "received"),
             "outcomes")
    honest = outcomes[~outcomes["attacker"]]
    hostile = outcomes[outcomes["attacker"]]
    accuracy_change = utility_change = attacker_utility_change = np.nan
    if reference is not None:
        ref = reference.set_index("participant")
        unknown = sorted(set(outcomes["participant"]) - set(ref.index))
        if unknown:
            raise ValueError(f"reference lacks the participants {unknown}")
        same = ref.loc[honest["participant"]]
        accuracy_change = honest["accuracy"].mean() - same["accuracy"].mean()
        utility_change = honest["utility"].mean() - same["utility"].mean()
        if len(hostile):
            attacker_utility_change = (hostile["utility"].mean()
                                       - ref.loc[hostile["participant"], "utility"].mean())
    return {
        "attackers": len(hostile),
        "honest accuracy": honest["accuracy"].mean() if len(honest) else np.nan,
        "honest utility": honest["utility"].mean() if len(honest) else np.nan,
        "accuracy change": accuracy_change,
        "utility change": utility_change,
        "attacker revenue": hostile["received"].mean() if len(hostile) else np.nan,
        "attacker utility": hostile["utility"].mean() if len(hostile) else np.nan,
        "attacker utility change": attacker_utility_change,
        **detection_scores(outcomes),
    }


def transfers_frame(ledger: Any) -> pd.DataFrame:
    """The payments recorded by a ``models.ledger.Ledger`` as a transfers frame (amounts
    in money units)."""
    return pd.DataFrame({
        "round": np.asarray(ledger.rounds, dtype=np.int64),
        "payer": np.asarray(ledger.payers, dtype=np.int64),
        "payee": np.asarray(ledger.payees, dtype=np.int64),
        "amount": np.asarray(ledger.units, dtype=np.float64) / UNITS_PER_COIN,
    }, columns=list(TRANSFER_COLUMNS))


def revenue_by_payer(transfers: pd.DataFrame, attackers: Iterable[int]) -> dict[str, float]:
    """Money received by the `attackers` (slots) over a run, split by who paid it: from
    honest participants, from other attackers, from the platform; `honest share` is the
    first over the total (NaN when the attackers received nothing)."""
    _require(transfers, TRANSFER_COLUMNS, "transfers")
    hostile = {int(a) for a in attackers}
    to_them = transfers[transfers["payee"].isin(hostile)]
    payer = to_them["payer"]
    split = {
        "from honest": float(to_them.loc[~payer.isin(hostile) & (payer != PLATFORM),
                                         "amount"].sum()),
        "from attackers": float(to_them.loc[payer.isin(hostile), "amount"].sum()),
        "from platform": float(to_them.loc[payer == PLATFORM, "amount"].sum()),
    }
    total = sum(split.values())
    split["honest share"] = split["from honest"] / total if total > 0 else np.nan
    return split


def market_transfers(config: Mapping[str, Any]) -> pd.DataFrame:
    """Run the market of a configuration (e.g. a sweep run's ``RunSpec.config``) to the end
    with the sweep's thread settings, so it reproduces that run, and return its transfers
    frame. A module-level function, so a process pool can run it."""
    from analysis.sweeps import single_threaded
    from models.config import MarketConfig
    from models.market import MarketModel

    with single_threaded():
        model = MarketModel(MarketConfig.from_dict(dict(config)))
        try:
            while model.running:
                model.step()
            return transfers_frame(model.ledger)
        finally:
            model.release()
