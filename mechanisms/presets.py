"""Named mechanism presets: clearing + payments + aggregation (+ reputation and robust
aggregation by name), so analysis code treats every market rule alike.

Presets (defaults from the iPFL reference: lam = 1, eta = 5; pFedGraph: alpha = 0.8):

- ``ipfl``: greedy threshold clearing, iPFL payments, proxy targets.
- ``ipfl-exact``: welfare-optimal clearing, iPFL payments, proxy targets.
- ``vcg``: exact clearing, Clarke-pivot payments (platform deficit reported).
- ``shapley``: greedy clearing (``clearing="exact"`` optional), each buyer pays ``share`` of
  its gain split by Shapley values. Default share 0.5: buyer and sellers split the realized
  gain evenly (share 1 would leave buyers no surplus at all).
- ``posted``: sellers whose cost is covered by ``price`` per sample offer their models, each
  buyer imports its exact best set at that price (plus iPFL's heterogeneity charge in its
  choice); payments price * N_j per edge. Default price 0.005: a 200-sample model sells
  for the default sharing cost 1.
- ``pfedgraph``, ``fedavg``, ``local``: graph-only baselines with zero payments, scored with
  the same gain and cost on their own graph.

Aggregation: the market presets train proximally toward proxy targets from the client's own
model (restart False, mu = lam / eta). FedAvg and pFedGraph restart each round from the
weighted average (restart True). The pFedGraph reference adds a cosine pull toward its
graph-aggregated model; the trainer offers an L2 pull instead, so pFedGraph's ``mu``
defaults to 0 (restarting from the aggregate already carries the graph) and can be raised.
Local trains alone (restart False, mu 0).

Reputation defaults to "similarity" for the market presets (a market must filter fake-model
sellers) and "none" for the baselines; robust aggregation is off unless named. The robust
aggregator is built (and so validated) by :func:`get`; the reputation name and parameters are
validated when :meth:`Mechanism.make_reputation` builds the tracker.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mechanisms import baselines, checks, ipfl, payments, pfedgraph
from mechanisms.similarity import dissimilarity


class MarketOutcome(NamedTuple):
    """One round's market result: graph A, payments P and the platform vector (net amount
    each participant pays the platform; zero for budget-balanced rules)."""

    A: np.ndarray
    P: np.ndarray
    platform: np.ndarray


def _real(low: float, high: float = np.inf, low_open: bool = False) -> Callable:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"{name} = {value!r} is not a real number")
        return checks.scalar(value, name, low, high, low_open)

    return check


def _integer(low: int) -> Callable:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} = {value!r} is invalid: allowed integers >= {low}")
        return int(value)

    return check


def _choice(*options: str) -> Callable:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ValueError(f"{name} = {value!r} is invalid: allowed {list(options)}")
        return value

    return check


def _name(optional: bool) -> Callable:
    def check(name: str, value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            allowed = "a non-empty string or None" if optional else "a non-empty string"
            raise ValueError(f"{name} = {value!r} is invalid: allowed {allowed}")
        return value

    return check


def _mapping(name: str, value: Any) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} = {value!r} is invalid: allowed a dict with string keys")
    return copy.deepcopy(value)


_CHECKS: dict[str, Callable] = {
    "lam": _real(0.0),
    "eta": _real(0.0, low_open=True),
    "alpha": _real(0.0, low_open=True),
    "mu": _real(0.0),
    "price": _real(0.0),
    "share": _real(0.0, 1.0),
    "n_permutations": _integer(1),
    "seed": _integer(0),
    "clearing": _choice("greedy", "exact"),
    "reputation": _name(optional=False),
    "reputation_params": _mapping,
    "robust": _name(optional=True),
    "robust_params": _mapping,
}

_RANGES = {
    "lam": "[0, inf)",
    "eta": "(0, inf)",
    "alpha": "(0, inf)",
    "mu": "[0, inf)",
    "price": "[0, inf)",
    "share": "[0, 1]",
    "n_permutations": "integer >= 1",
    "seed": "integer >= 0",
    "clearing": "'greedy' | 'exact'",
    "reputation": "reputation name",
    "reputation_params": "dict",
    "robust": "robust aggregator name or None",
    "robust_params": "dict",
}


def _defences(reputation: str) -> dict[str, Any]:
    return {"reputation": reputation, "reputation_params": {}, "robust": None, "robust_params": {}}


def _zero_outcome(A) -> MarketOutcome:
    m = A.shape[0]
    return MarketOutcome(A, np.zeros((m, m)), np.zeros(m))


def _ipfl_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    A = ipfl.clear(N, cost, K, D, p["lam"], eligible=eligible)
    return MarketOutcome(A, ipfl.payments(A, N, K, D, p["lam"]), np.zeros(A.shape[0]))


def _ipfl_exact_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    A = ipfl.clear_exact(N, cost, K, D, p["lam"], eligible=eligible)
    return MarketOutcome(A, ipfl.payments(A, N, K, D, p["lam"]), np.zeros(A.shape[0]))


def _vcg_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    return MarketOutcome(*payments.vcg(N, cost, K, D, p["lam"], eligible=eligible))


def _shapley_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    rule = ipfl.clear_exact if p["clearing"] == "exact" else ipfl.clear
    A = rule(N, cost, K, D, p["lam"], eligible=eligible)
    P = payments.shapley(A, N, K, p["share"], n_permutations=p["n_permutations"], seed=p["seed"])
    return MarketOutcome(A, P, np.zeros(A.shape[0]))


def _posted_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    A = payments.clear_posted(N, cost, K, D, p["lam"], p["price"], eligible=eligible)
    return MarketOutcome(A, payments.posted(A, N, p["price"]), np.zeros(A.shape[0]))


def _pfedgraph_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    W = pfedgraph.graph(N, D, p["alpha"], eligible=eligible)
    A = (W > 0) & ~np.eye(W.shape[0], dtype=bool)
    return _zero_outcome(A)


def _fedavg_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    return _zero_outcome(baselines.fedavg_graph(len(N), eligible=eligible))


def _local_market(p, N, cost, K, D, eligible) -> MarketOutcome:
    return _zero_outcome(baselines.local_graph(len(N)))


@dataclass(frozen=True)
class _Preset:
    defaults: dict[str, Any]
    market: Callable[..., MarketOutcome]
    aggregation: str  # "proxy" | "graph" | "average" | "own"
    restart: bool


_IPFL = {"lam": 1.0, "eta": 5.0}
_PRESETS: dict[str, _Preset] = {
    "ipfl": _Preset({**_IPFL, **_defences("similarity")}, _ipfl_market, "proxy", False),
    "ipfl-exact": _Preset({**_IPFL, **_defences("similarity")}, _ipfl_exact_market, "proxy", False),
    "vcg": _Preset({**_IPFL, **_defences("similarity")}, _vcg_market, "proxy", False),
    "shapley": _Preset(
        {
            **_IPFL,
            "share": 0.5,
            "clearing": "greedy",
            "n_permutations": 1000,
            "seed": 0,
            **_defences("similarity"),
        },
        _shapley_market,
        "proxy",
        False,
    ),
    "posted": _Preset(
        {**_IPFL, "price": 0.005, **_defences("similarity")}, _posted_market, "proxy", False
    ),
    "pfedgraph": _Preset(
        {"alpha": 0.8, "mu": 0.0, **_defences("none")}, _pfedgraph_market, "graph", True
    ),
    "fedavg": _Preset(_defences("none"), _fedavg_market, "average", True),
    "local": _Preset(_defences("none"), _local_market, "own", False),
}


def available() -> list[str]:
    """Names of the mechanism presets, in a fixed order."""
    return list(_PRESETS)


class Mechanism:
    """A named market rule: clearing, payments and aggregation wired from pure functions.

    Use :func:`get` to build one. Parameters are validated at construction and exposed by
    :meth:`get_params`; ``get(m.name, **m.get_params())`` rebuilds an equal mechanism.
    """

    def __init__(self, name: str, params: dict[str, Any]):
        self.name = name
        self._preset = _PRESETS[name]
        self._params = params
        self.restart: bool = self._preset.restart
        self.reputation: str = params["reputation"]
        self.reputation_params: dict = params["reputation_params"]
        self.robust: str | None = params["robust"]
        self.robust_params: dict = params["robust_params"]

    @property
    def mu(self) -> float:
        """Proximal strength toward the targets in next round's local training."""
        if self._preset.aggregation == "proxy":
            return self._params["lam"] / self._params["eta"]
        return self._params.get("mu", 0.0)

    def get_params(self) -> dict[str, Any]:
        """All parameters (market, aggregation, reputation and robust settings), copied."""
        return copy.deepcopy(self._params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"Mechanism({self.name!r}, {args})"

    def outcome(self, N, cost, K, D, eligible=None) -> MarketOutcome:
        """Clear the market on reported sizes N and costs, valuations K and dissimilarities
        D. `eligible` (bool (m,), optional) marks sellers allowed this round: ineligible
        sellers are never imported and earn nothing. Net payment of k is
        P[k].sum() + platform[k]."""
        N, cost, K, D, _ = checks.market(N, cost, K, D, 0.0)
        eligible = checks.mask(eligible, N.shape[0])
        return self._preset.market(self._params, N, cost, K, D, eligible)

    def market(self, N, cost, K, D, eligible=None) -> tuple[np.ndarray, np.ndarray]:
        """(A, P) of :meth:`outcome`."""
        out = self.outcome(N, cost, K, D, eligible)
        return out.A, out.P

    def targets(self, A, N, uploads, theta0, own) -> np.ndarray:
        """Next round's aggregation targets V (m, P) on the graph A.

        proxy (market presets): iPFL's cosine-gradient step from each own model; graph
        (pFedGraph): the pFedGraph weights, recomputed from the uploads and restricted to A
        plus self; average (FedAvg): data-size weighted average over A plus self; own
        (Local): the own models. Non-finite uploads never enter a target. With `robust`
        set, each buyer's weighted sum is replaced by the robust combiner.
        """
        kind = self._preset.aggregation
        N = checks.sizes(N)
        A = checks.graph(A, N.shape[0])
        own = np.asarray(own)
        if own.ndim != 2 or own.shape[0] != N.shape[0]:
            raise ValueError(f"own must have shape ({N.shape[0]}, P), got {own.shape}")
        if kind == "own":
            return own.astype(np.result_type(own.dtype, np.float32), copy=True)
        combiner = self._combiner()
        if kind == "proxy":
            eta = self._params["eta"]
            return ipfl.proxy_targets(A, N, uploads, theta0, own, eta, combiner=combiner)
        if kind == "graph":
            D = dissimilarity(uploads, theta0)
            W = pfedgraph.graph(N, D, self._params["alpha"], support=A)
        else:
            W = np.where(A | np.eye(N.shape[0], dtype=bool), N[None, :], 0.0)
        return baselines.average_targets(W, uploads, own, combiner=combiner)

    def make_reputation(self, n_clients: int, score_fn=None):
        """This mechanism's reputation tracker for n_clients participants."""
        from mechanisms import reputation

        kwargs = dict(self.reputation_params)
        if score_fn is not None:
            kwargs["score_fn"] = score_fn
        return reputation.make_reputation(self.reputation, n_clients, **kwargs)

    def _combiner(self):
        if self.robust is None:
            return None
        from mechanisms import robust

        return robust.make_combiner(self.robust, **self.robust_params)


def get(name: str, **overrides) -> Mechanism:
    """The preset `name` with parameters overridden, e.g. ``get("ipfl", lam=2.0)``.

    Unknown presets, unknown parameters and out-of-range values raise one ValueError that
    lists every problem with the allowed names or ranges.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown mechanism {name!r}: available {available()}")
    defaults = _PRESETS[name].defaults
    problems = []
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        allowed = ", ".join(f"{k} {_RANGES[k]}" for k in defaults)
        problems.append(f"unknown parameter(s) {unknown} for {name!r}; allowed: {allowed}")
    params = {}
    for key, default in defaults.items():
        try:
            params[key] = _CHECKS[key](key, overrides.get(key, default))
        except ValueError as err:
            problems.append(str(err))
    if not problems and params["robust"] is not None:
        from mechanisms import robust

        try:
            robust.make_combiner(params["robust"], **params["robust_params"])
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError(f"invalid parameters for mechanism {name!r}: " + "; ".join(problems))
    return Mechanism(name, params)
