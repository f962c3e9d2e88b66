"""Figures of a market run, drawn with matplotlib's object API (no global state, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def cumulative_utility(agents: pd.DataFrame) -> Figure:
    """Mean cumulative utility per participant, by strategy and role, over rounds."""
    rounds = agents[agents["round"] > 0].sort_values(["participant", "round"])
    rounds = rounds.assign(cumulative=rounds.groupby("participant")["utility"].cumsum())
    fig, ax = _mean_by_group(rounds, "cumulative")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="round", ylabel="mean cumulative utility",
           title="Cumulative utility by strategy and role")
    return fig


def accuracy_over_rounds(agents: pd.DataFrame) -> Figure:
    """Personalized test accuracy of each participant's own model, by strategy and role."""
    fig, ax = _mean_by_group(agents[(agents["round"] > 0) & agents["active"]], "accuracy")
    ax.set(xlabel="round", ylabel="personalized accuracy", ylim=(0, 1),
           title="Accuracy of own models over rounds")
    return fig


def _mean_by_group(frame: pd.DataFrame, column: str) -> tuple[Figure, Any]:
    """One line per strategy-and-role group: the group's mean of `column` per round."""
    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.subplots()
    for label, group in frame.groupby(_group_label(frame)):
        series = group.groupby("round")[column].mean()
        ax.plot(series.index, series.values, marker=".", label=label)
    ax.legend(fontsize=8)
    return fig, ax


def wallet_flows(agents: pd.DataFrame) -> Figure:
    """Money paid and received per participant over the run, and the final wallets."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    totals = agents.groupby("participant").agg(paid=("paid", "sum"),
                                               received=("received", "sum"))
    last = agents.sort_values("round").groupby("participant").last()
    x = np.arange(len(totals))
    ax.bar(x - 0.2, totals["received"], width=0.4, label="received", color="tab:green")
    ax.bar(x + 0.2, -totals["paid"], width=0.4, label="paid (negative)", color="tab:red")
    ax.plot(x, last["wallet"], "k_", markersize=14, mew=2, label="final wallet")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x, [f"{p}\n{r[:1]}/{s[:5]}" for p, r, s in
                      zip(totals.index, last["role"], last["strategy"], strict=True)],
                  fontsize=7)
    ax.set(ylabel="money", title="Wallet flows over the run (t=trader, b=buyer, s=seller)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def collaboration_graph(A: np.ndarray, labels: list[str], payments: np.ndarray | None = None,
                        title: str = "Collaboration graph (arrow: seller -> buyer)") -> Figure:
    """The market's graph: an arrow j -> i when buyer i imports seller j's model, its width
    growing with the amount i paid j when `payments` (the matrix P) is given."""
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(labels)))
    buyers, sellers = np.nonzero(A)
    paid = (np.zeros(len(buyers)) if payments is None
            else np.abs(np.asarray(payments, dtype=float)[buyers, sellers]))
    scale = paid.max() if paid.size and paid.max() > 0 else 1.0
    for i, j, amount in zip(buyers.tolist(), sellers.tolist(), paid.tolist(), strict=True):
        graph.add_edge(j, i, width=0.8 + 3.2 * amount / scale)
    pos = nx.circular_layout(graph)
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color="tab:blue", node_size=500, alpha=0.85)
    nx.draw_networkx_labels(graph, pos, labels=dict(enumerate(labels)), ax=ax, font_size=7)
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowsize=12,
                           width=[graph.edges[e]["width"] for e in graph.edges],
                           connectionstyle="arc3,rad=0.1", edge_color="grey")
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG (110 dpi) and return its path."""
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _group_label(frame: pd.DataFrame) -> pd.Series:
    return frame["strategy"] + " " + frame["role"] + "s"
