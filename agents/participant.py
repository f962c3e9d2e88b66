"""The market participant: one Mesa agent class for every role and behaviour."""

from __future__ import annotations

import math
from typing import Any

import mesa
import numpy as np

from agents.strategies import Action, Strategy


class Participant(mesa.Agent):
    """A data holder in the market.

    Holds the private truth (data size `true_n`, sharing cost `true_cost`, valuation `K`),
    the role, the behaviour (`strategy`), its own random stream, an active flag, and the
    last round's record (the DataCollector reads these attributes). `slot` indexes the
    participant in the learning engine and in the market's arrays. The wallet is derived
    from the model's ledger.
    """

    def __init__(self, model: mesa.Model, slot: int, role: str, strategy: Strategy,
                 true_n: int, true_cost: float, valuation: float, rng: np.random.Generator):
        super().__init__(model)
        self.slot = slot
        self.role = role
        self.strategy = strategy
        self.true_n = int(true_n)
        self.true_cost = float(true_cost)
        self.valuation = float(valuation)
        self.generator = rng
        self.active = True
        self.joined = 0
        self.left: int | None = None
        self.action = Action()
        self.history: list[dict[str, Any]] = []
        self.reset_round()

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """The private training data (inputs, labels); only the trained model leaves it."""
        return self.model.client_data(self.slot)

    @property
    def wallet(self) -> float:
        return self.model.ledger.balance(self.slot)

    @property
    def reported_n(self) -> float:
        return self.true_n * self.action.n_factor

    @property
    def reported_cost(self) -> float:
        return self.true_cost * self.action.cost_factor

    def reset_round(self) -> None:
        """Clear the per-round record (an inactive participant keeps zeros)."""
        self.imports = 0
        self.exports = 0
        self.paid = 0.0
        self.received = 0.0
        self.utility = 0.0
        self.accuracy = math.nan
        self.local_accuracy = math.nan
        self.reputation = math.nan
        self.excluded = False

    def decide(self, round_: int) -> None:
        """Ask the strategy for this round's action."""
        self.action = self.strategy.decide(round_, self.generator)

    def record(self, round_: int) -> None:
        """Append this round's outcome to the history and let the strategy learn from it."""
        self.strategy.observe(self.utility)
        self.history.append({
            "round": round_, "train": self.action.train, "n_factor": self.action.n_factor,
            "cost_factor": self.action.cost_factor, "imports": self.imports,
            "exports": self.exports, "paid": self.paid, "received": self.received,
            "utility": self.utility, "accuracy": self.accuracy, "excluded": self.excluded,
        })

    def leave(self, round_: int) -> None:
        """Exit the market for good after `round_` (churn)."""
        self.active = False
        self.left = round_
