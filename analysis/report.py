"""Results of one market run: tidy tables, the files written to the output folder, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from models.market import MarketModel


def participant_table(model: MarketModel) -> pd.DataFrame:
    """One row per participant: role, strategy, totals over the run, final accuracy, exit."""
    rows = []
    for a in model.participants:
        played = a.history
        accuracy = [h["accuracy"] for h in played if np.isfinite(h["accuracy"])]
        rows.append({
            "participant": a.slot, "role": a.role, "strategy": a.strategy.name,
            "true_n": a.true_n, "rounds": len(played),
            "utility": sum(h["utility"] for h in played),
            "paid": sum(h["paid"] for h in played),
            "received": sum(h["received"] for h in played),
            "wallet": a.wallet,
            "accuracy": accuracy[-1] if accuracy else float("nan"),
            "excluded_rounds": sum(h["excluded"] for h in played),
            "exit": "" if a.left is None else f"round {a.left}",
        })
    return pd.DataFrame(rows).set_index("participant")


def write_run(model: MarketModel, out: str | Path) -> dict[str, Path]:
    """Write the CSVs, the configuration used and the plots of a run into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agents = model.agent_frame()
    paths = {
        "agents": out / "agents.csv", "model": out / "model.csv",
        "participants": out / "participants.csv", "config": out / "config.toml",
    }
    agents.to_csv(paths["agents"], index=False)
    model.model_frame().to_csv(paths["model"], index=False)
    participant_table(model).to_csv(paths["participants"])
    paths["config"].write_text(model.config.to_toml())
    figures = {
        "cumulative_utility": plots.cumulative_utility(agents),
        "accuracy": plots.accuracy_over_rounds(agents),
        "wallet_flows": plots.wallet_flows(agents),
    }
    if model.last_outcome:
        slots = model.last_outcome["slots"]
        labels = [f"{s}:{model.participants[s].role[0]}/{model.participants[s].strategy.name[:5]}"
                  for s in slots]
        figures["graph"] = plots.collaboration_graph(
            model.last_outcome["A"], labels, payments=model.last_outcome["P"],
            title=f"Collaboration graph, round {model.round}\n"
                  "(arrow: seller -> buyer; width: payment)")
    for name, fig in figures.items():
        paths[name] = plots.save(fig, out / f"{name}.png")
    return paths
