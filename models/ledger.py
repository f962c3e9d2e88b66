"""Exact money bookkeeping: every payment is a ledger entry in integer nano-units.

Wallets are derived from the entries, so money can neither appear nor vanish: the sum of all
wallets plus the platform's balance always equals the endowments granted, exactly (integer
arithmetic, no float drift). Amounts are rounded to 1e-9 once, when posted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PLATFORM = -1
UNITS_PER_COIN = 10**9


def to_units(amount: float) -> int:
    """A money amount in integer nano-units (round half to even)."""
    return int(round(float(amount) * UNITS_PER_COIN))


def settlement(P: np.ndarray, platform: np.ndarray) -> list[tuple[int, int, int]]:
    """Transfers (payer, payee, units) for one round, by index in P.

    P[i, j] is the net amount i pays j (antisymmetric); each unordered pair settles as one
    transfer in the direction of the positive amount. platform[k] > 0: k pays the platform,
    < 0: the platform pays k. Ties and order follow the indices, so settling is deterministic.
    """
    P = np.asarray(P, dtype=float)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"P: expected a square matrix, got shape {P.shape}")
    if not np.all(np.isfinite(P)) or not np.all(np.isfinite(platform)):
        raise ValueError("payments must be finite to be settled")
    transfers = []
    rows, cols = np.nonzero(np.triu(P - P.T, k=1))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        units = to_units((P[i, j] - P[j, i]) / 2)
        if units > 0:
            transfers.append((i, j, units))
        elif units < 0:
            transfers.append((j, i, -units))
    for k, amount in enumerate(np.asarray(platform, dtype=float).tolist()):
        units = to_units(amount)
        if units > 0:
            transfers.append((k, PLATFORM, units))
        elif units < 0:
            transfers.append((PLATFORM, k, -units))
    return transfers


class Ledger:
    """Append-only record of transfers between participants (by slot) and the platform."""

    def __init__(self) -> None:
        self.rounds: list[int] = []
        self.payers: list[int] = []
        self.payees: list[int] = []
        self.units: list[int] = []
        self._endowments: dict[int, int] = {}
        self._balances: dict[int, int] = {PLATFORM: 0}

    def endow(self, slot: int, amount: float) -> None:
        """Grant a participant its initial wallet (the only way money enters)."""
        if slot in self._endowments:
            raise ValueError(f"slot {slot} already holds an endowment")
        units = to_units(amount)
        self._endowments[slot] = units
        self._balances[slot] = self._balances.get(slot, 0) + units

    def post(self, round_: int, payer: int, payee: int, units: int) -> None:
        """Record one transfer of `units` (> 0) from payer to payee in `round_`."""
        if units <= 0:
            raise ValueError(f"a transfer moves a positive amount, got {units} units")
        for party in (payer, payee):
            if party not in self._balances:
                raise ValueError(f"unknown account {party}")
        self.rounds.append(round_)
        self.payers.append(payer)
        self.payees.append(payee)
        self.units.append(units)
        self._balances[payer] -= units
        self._balances[payee] += units

    def balance(self, account: int) -> float:
        """An account's balance in coins (a participant's slot, or PLATFORM)."""
        return self._balances[account] / UNITS_PER_COIN

    @property
    def platform_balance(self) -> float:
        return self.balance(PLATFORM)

    def check(self) -> None:
        """Raise if the entries do not reproduce the balances or money was created."""
        recomputed = {a: self._endowments.get(a, 0) for a in self._balances}
        for payer, payee, units in zip(self.payers, self.payees, self.units, strict=True):
            recomputed[payer] -= units
            recomputed[payee] += units
        if recomputed != self._balances:
            raise RuntimeError("ledger corrupted: balances differ from the recorded transfers")
        if sum(self._balances.values()) != sum(self._endowments.values()):
            raise RuntimeError("money not conserved: wallets and platform differ from endowments")

    def post_round(self, round_: int, transfers: list[tuple[int, int, int]]
                   ) -> tuple[dict[int, float], dict[int, float]]:
        """Post one round's transfers; return money paid out and received per account."""
        paid: dict[int, float] = {}
        received: dict[int, float] = {}
        for payer, payee, units in transfers:
            self.post(round_, payer, payee, units)
            paid[payer] = paid.get(payer, 0.0) + units / UNITS_PER_COIN
            received[payee] = received.get(payee, 0.0) + units / UNITS_PER_COIN
        return paid, received

    def state_dict(self) -> dict[str, Any]:
        """Every entry and endowment as JSON-safe data (units as strings: exact integers)."""
        return {
            "rounds": list(self.rounds), "payers": list(self.payers),
            "payees": list(self.payees), "units": [str(u) for u in self.units],
            "endowments": {str(k): str(v) for k, v in self._endowments.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ledger:
        """Rebuild a ledger by replaying `state_dict()`'s entries, then check it."""
        ledger = cls()
        for slot, units in state["endowments"].items():
            ledger._endowments[int(slot)] = int(units)
            ledger._balances[int(slot)] = int(units)
        for r, payer, payee, units in zip(state["rounds"], state["payers"], state["payees"],
                                          state["units"], strict=True):
            ledger.post(int(r), int(payer), int(payee), int(units))
        ledger.check()
        return ledger
