"""Named mechanism presets: clearing + payments + aggregation (+ reputation and robust
aggregation by name), so analysis code treats every market rule alike.

Presets (defaults from the iPFL reference: lam = 1, eta = 5; pFedGraph: alpha = 0.8):

- ``ipfl``: greedy threshold clearing, iPFL payments, proxy targets.
- ``ipfl-exact``: welfare-optimal clearing, iPFL payments, proxy targets.
- ``vcg``: exact clearing, Clarke-pivot payments (platform deficit reported).
- ``shapley``: greedy clearing (``clearing="exact"`` optional), each buyer splits its
  realized gain among the sellers it imports from by Shapley values. ``share`` (default 1,
  the whole gain) scales what it pays; a smaller share leaves the buyer part of its gain.
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
sellers) and "none" for the baselines; robust aggregation is off unless named. :func:`get`
validates everything at once, the reputation's and the robust aggregator's names and
parameters included; :func:`check_settings` lists the same problems without building a
mechanism (for configuration validators).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
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


@dataclass(frozen=True)
class _Param:
    """A parameter's validator (returns the clean value or raises ValueError) and the text
    describing what it allows."""

    check: Callable[[str, Any], Any]
    allowed: str


def _real(low: float, high: float = np.inf, low_open: bool = False) -> _Param:
    def check(name: str, value: Any) -> float:
        return checks.scalar(value, name, low, high, low_open)

    return _Param(check, checks.interval(low, high, low_open))


def _integer(low: int) -> _Param:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} = {value!r} is invalid: allowed integers >= {low}")
        return int(value)

    return _Param(check, f"integer >= {low}")


def _choice(*options: str) -> _Param:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ValueError(f"{name} = {value!r} is invalid: allowed {list(options)}")
        return value

    return _Param(check, " | ".join(repr(o) for o in options))


def _name(optional: bool, what: str) -> _Param:
    def check(name: str, value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            allowed = f"{what} or None" if optional else what
            raise ValueError(f"{name} = {value!r} is invalid: allowed {allowed}")
        return value

    return _Param(check, f"{what} or None" if optional else what)


def _check_mapping(name: str, value: Any) -> dict:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} = {value!r} is invalid: allowed a dict with string keys")
    return copy.deepcopy(dict(value))


_PARAMS: dict[str, _Param] = {
    "lam": _real(0.0),
    "eta": _real(0.0, low_open=True),
    "alpha": _real(0.0, low_open=True),
    "mu": _real(0.0),
    "price": _real(0.0),
    "share": _real(0.0, 1.0),
    "n_permutations": _integer(1),
    "seed": _integer(0),
    "clearing": _choice("greedy", "exact"),
    "reputation": _name(optional=False, what="a reputation name"),
    "reputation_params": _Param(_check_mapping, "dict"),
    "robust": _name(optional=True, what="a robust aggregator name"),
    "robust_params": _Param(_check_mapping, "dict"),
}


def _defences(reputation: str) -> dict[str, Any]:
    return {"reputation": reputation, "reputation_params": {}, "robust": None, "robust_params": {}}


def _zero_outcome(A) -> MarketOutcome:
    return MarketOutcome(A, payments.none(A), np.zeros(A.shape[0]))


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
            "share": 1.0,
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


def _resolve(name: str, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The preset's validated parameters with `overrides` applied, and every problem."""
    from mechanisms import reputation, robust

    defaults = _PRESETS[name].defaults
    problems = []
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        allowed = ", ".join(f"{k} {_PARAMS[k].allowed}" for k in defaults)
        problems.append(f"unknown parameter(s) {unknown} for {name!r}; allowed: {allowed}")
    params: dict[str, Any] = {}
    for key, default in defaults.items():
        try:
            params[key] = _PARAMS[key].check(key, overrides.get(key, default))
        except ValueError as err:
            problems.append(str(err))
    if "reputation" in params and "reputation_params" in params:
        problems += reputation.check_params(params["reputation"], params["reputation_params"])
    if params.get("robust") is not None and "robust_params" in params:
        problems += robust.check_params(params["robust"], params["robust_params"])
    return params, problems


def check_settings(kind: str, name: Any, params: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem with a setting, without building anything (empty list: valid).

    `kind` is "mechanism" (`name` a preset, `params` the overrides :func:`get` would take,
    reputation and robust settings included), "reputation" (a reputation name and its
    parameters) or "robust" (an aggregator name, or None for none, and its combiner
    parameters). Each message names the parameter, the bad value and what is allowed, so a
    configuration can report all of them at once.
    """
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        return [f"{kind} parameters = {params!r} are invalid: allowed a dict"]
    if kind == "mechanism":
        if name not in _PRESETS:
            return [f"unknown mechanism {name!r}: available {available()}"]
        return _resolve(name, params)[1]
    if kind == "reputation":
        from mechanisms import reputation

        return reputation.check_params(name, params)
    if kind == "robust":
        from mechanisms import robust

        return [] if name is None else robust.check_params(name, params)
    raise ValueError(f"kind = {kind!r} is invalid: allowed 'mechanism', 'reputation', 'robust'")


def get(name: str, **overrides) -> Mechanism:
    """The preset `name` with parameters overridden, e.g. ``get("ipfl", lam=2.0)``.

    Unknown presets, unknown parameters and out-of-range values, including the reputation's
    and the robust aggregator's names and parameters, raise one ValueError that lists every
    problem with the allowed names or ranges (:func:`check_settings` returns the same list
    without raising).
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown mechanism {name!r}: available {available()}")
    params, problems = _resolve(name, overrides)
    if problems:
        raise ValueError(f"invalid parameters for mechanism {name!r}: " + "; ".join(problems))
    return Mechanism(name, params)
