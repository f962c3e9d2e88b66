"""Incentive audits of market mechanisms: truthfulness, individual rationality, budget
balance, efficiency and equilibria of the report game.

The pure-layer audits take a mechanism (anything with ``outcome(N, cost, K, D, eligible)``
returning ``(A, P, platform)``, e.g. ``mechanisms.get("ipfl")``) and one market: TRUE data
sizes N, TRUE sharing costs ``cost``, valuations K, dissimilarities D and optionally the
sellers ``eligible`` this round. The full-simulation audits re-run :class:`MarketModel`.

Definitions used throughout:

- A *report profile* gives every participant a factor on each dimension: ``"n"`` (reported
  size = factor x true size) and ``"cost"`` (reported cost = factor x true cost). It is a
  mapping ``{"n": (m,), "cost": (m,)}``; a missing dimension means truthful (factor 1).
  A misreport changes only what the mechanism sees (clearing, payments and the platform
  vector); utility is always realised with the true values,
  ``U = mechanisms.ipfl.utilities(A, P, N_true, cost_true, K, platform)``.
- *Social welfare* of a profile: sum of realised utilities plus the platform's surplus,
  i.e. sum_i G_i(S_i; true N) - sum over edges of the seller's true cost (payments are
  transfers and cancel). This is the market model's ``welfare`` column.
- *Optimal welfare*: the largest social welfare over all graphs. It separates by buyer and
  is exactly :func:`mechanisms.ipfl.clear_exact` with ``lam = 0`` on the true values (the
  heterogeneity charge lam * D_ij * N_j / N_i is a clearing device, not a realised cost).
- *Market welfare* (for :func:`efficiency`): iPFL's clearing objective
  sum_i [G_i(S_i) - sum_{j in S_i} (c_j + lam D_ij N_j / N_i)] (:func:`mechanisms.ipfl.welfare`)
  on the mechanism's graph under truthful reports. Baselines whose graph is not chosen by
  welfare (fedavg, pfedgraph, local) are scored by the same objective on their own graph,
  so their market welfare can be negative.
- *Price of anarchy*: optimal welfare / equilibrium welfare. When the equilibrium welfare is
  <= 0 it is 1 if the optimum is 0 as well (nothing to gain) and +inf otherwise.
- Ratios of welfare (efficiency): welfare / optimum when the optimum is > 0; 1 when both
  are 0; NaN otherwise.

Common random numbers: every audit evaluates one fixed mechanism object, so a mechanism with
randomness must draw it from its own fixed seed (the ``shapley`` preset seeds each buyer's
estimate from its ``seed`` parameter). The audits check that identical reports give
identical outcomes and refuse a mechanism that does not.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator
from tqdm import tqdm

from agents.strategies import FACTORS
from mechanisms import checks, ipfl

log = logging.getLogger(__name__)

DIMENSIONS = ("n", "cost")
DEFAULT_FACTORS = (0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
DEFAULT_GRID = (0.5, 0.8, 1.0, 1.25, 2.0)
REGRET_COLUMNS = ["participant", "dimension", "factor", "utility", "truthful_utility", "gain"]
IMPROVEMENT_TOL = 1e-9
DISSIMILARITY_TOL = 1e-9  # a recorded D is symmetric with a zero diagonal up to rounding

Profile = Mapping[str, Any]


class MechanismLike(Protocol):
    """What the audits need from a mechanism: one round's outcome from reports."""

    def outcome(self, N, cost, K, D, eligible=None) -> Any: ...


# --- the market ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Population:
    """One market's private truth: TRUE sizes N, TRUE costs, valuations K (0: pure seller),
    dissimilarities D, optionally the eligible sellers and the participants' slots (rows of
    a recorded round). Validated and converted to float64 arrays on construction."""

    N: np.ndarray
    cost: np.ndarray
    K: np.ndarray
    D: np.ndarray
    eligible: np.ndarray | None = None
    slots: np.ndarray | None = None

    def __post_init__(self) -> None:
        N = checks.sizes(self.N)
        m = N.shape[0]
        set_ = object.__setattr__
        set_(self, "N", N)
        set_(self, "cost", checks.per_client(self.cost, m, "cost"))
        set_(self, "K", checks.per_client(self.K, m, "K"))
        D = checks.dissimilarities(self.D, m)
        if np.abs(np.diagonal(D)).max(initial=0.0) > DISSIMILARITY_TOL:
            raise ValueError(f"D must have a zero diagonal (1 - cos of a model with itself), "
                             f"got {np.diagonal(D)!r}")
        if np.abs(D - D.T).max(initial=0.0) > DISSIMILARITY_TOL:
            i, j = (int(v) for v in np.argwhere(np.abs(D - D.T) > DISSIMILARITY_TOL)[0])
            raise ValueError(f"D must be symmetric: D[{i}, {j}] = {D[i, j]!r} but "
                             f"D[{j}, {i}] = {D[j, i]!r}")
        set_(self, "D", D)
        if self.eligible is not None:
            set_(self, "eligible", checks.mask(self.eligible, m))
        if self.slots is not None:
            slots = np.asarray(self.slots)
            if slots.shape != (m,) or not np.issubdtype(slots.dtype, np.integer):
                raise ValueError(f"slots must be an integer array of shape ({m},), got "
                                 f"{slots.dtype} {slots.shape}")
            set_(self, "slots", slots.astype(np.int64))

    @property
    def m(self) -> int:
        return int(self.N.shape[0])

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(N, cost, K, D), to unpack into the audit functions."""
        return self.N, self.cost, self.K, self.D


def _vector(x, name: str, m: int | None = None, positive: bool = False) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or (m is not None and arr.shape != (m,)):
        want = "a 1-D array" if m is None else f"shape ({m},)"
        raise ValueError(f"{name} must have {want}, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | ((arr <= 0) if positive else (arr < 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        allowed = "(0, inf)" if positive else "[0, inf)"
        raise ValueError(f"{name}[{k}] = {arr[k]!r} is invalid: allowed range is {allowed}")
    return arr


def _outcome(mechanism: MechanismLike, pop: Population, F: np.ndarray):
    """The mechanism's (A, P, platform) on the reports of factor matrix F (m, 2)."""
    A, P, platform = mechanism.outcome(pop.N * F[:, 0], pop.cost * F[:, 1], pop.K, pop.D,
                                       pop.eligible)
    return np.asarray(A), np.asarray(P, dtype=np.float64), np.asarray(platform, dtype=np.float64)


def _utilities(mechanism: MechanismLike, pop: Population, F: np.ndarray) -> np.ndarray:
    A, P, platform = _outcome(mechanism, pop, F)
    return ipfl.utilities(A, P, pop.N, pop.cost, pop.K, platform)


def _welfare(mechanism: MechanismLike, pop: Population, F: np.ndarray) -> float:
    A, P, platform = _outcome(mechanism, pop, F)
    return float(ipfl.utilities(A, P, pop.N, pop.cost, pop.K, platform).sum() + platform.sum())


def _checked_utilities(mechanism: MechanismLike, pop: Population, F: np.ndarray) -> np.ndarray:
    """Utilities under the reports F, checking that the mechanism is deterministic (common
    random numbers across misreports depend on it)."""
    first, second = _utilities(mechanism, pop, F), _utilities(mechanism, pop, F)
    if not np.array_equal(first, second):
        name = getattr(mechanism, "name", type(mechanism).__name__)
        raise ValueError(f"mechanism {name!r} gives different outcomes for identical reports; "
                         "audits need a deterministic mechanism (fix its random seed)")
    return first


# --- profiles and arguments -----------------------------------------------------------------
def truthful_profile(m: int) -> dict[str, np.ndarray]:
    """Everyone reports the truth: factor 1 on both dimensions."""
    return {d: np.ones(m) for d in DIMENSIONS}


def _factor_matrix(profile: Profile | None, m: int, name: str = "profile") -> np.ndarray:
    """Profile mapping -> F (m, 2), columns in DIMENSIONS order."""
    F = np.ones((m, 2))
    if profile is None:
        return F
    if not isinstance(profile, Mapping):
        raise ValueError(f"{name} must be a mapping {{'n': (m,), 'cost': (m,)}}, "
                         f"got {type(profile).__name__}")
    unknown = sorted(set(profile) - set(DIMENSIONS))
    if unknown:
        raise ValueError(f"{name} has unknown dimension(s) {unknown}: allowed {list(DIMENSIONS)}")
    for k, dim in enumerate(DIMENSIONS):
        if dim in profile:
            F[:, k] = _vector(profile[dim], f"{name}[{dim!r}]", m=m, positive=True)
    return F


def _profile_dict(F: np.ndarray) -> dict[str, np.ndarray]:
    return {dim: F[:, k].copy() for k, dim in enumerate(DIMENSIONS)}


def _factors(factors: Iterable[float], name: str) -> tuple[float, ...]:
    """Report factors: a non-empty sequence within the range strategies allow."""
    values = tuple(float(f) for f in factors)
    low, high = FACTORS
    if not values or not all(low <= f <= high for f in values):
        raise ValueError(f"{name} = {values!r} is invalid: allowed a non-empty sequence of "
                         f"numbers in [{low:g}, {high:g}]")
    return values


def _dimensions(dimensions: Iterable[str]) -> tuple[str, ...]:
    dims = tuple(dimensions)
    if not dims or any(d not in DIMENSIONS for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(f"dimensions = {dims!r} is invalid: allowed a non-empty subset of "
                         f"{list(DIMENSIONS)}")
    return tuple(d for d in DIMENSIONS if d in dims)


def _participants(participants: Iterable[int] | int | None, m: int, name: str) -> np.ndarray:
    if participants is None:
        return np.arange(m)
    who = np.atleast_1d(np.asarray(participants))
    if who.ndim != 1 or not np.issubdtype(who.dtype, np.integer) or (
            who.size and (who.min() < 0 or who.max() >= m)):
        raise ValueError(f"{name} = {participants!r} is invalid: allowed participant "
                         f"indices in [0, {m - 1}]")
    return np.unique(who)


# --- truthfulness ---------------------------------------------------------------------------
def regret(mechanism: MechanismLike, N, cost, K, D, factors: Sequence[float] = DEFAULT_FACTORS,
           *, participants: Iterable[int] | int | None = None,
           dimensions: Iterable[str] = DIMENSIONS, eligible=None,
           progress: bool = False) -> pd.DataFrame:
    """Unilateral misreport sweep: for each participant (default all) and dimension, the
    utility realised (true values) when only it reports factor x its true size or cost.

    Columns: participant, dimension ("n" | "cost"), factor, utility, truthful_utility, gain
    (= utility - truthful_utility). Every participant has both dimensions (a pure seller's
    size matters to its buyers, a buyer's cost to nobody but still is audited). Factor 1 is
    the truthful report itself, so its gain is exactly 0.
    """
    pop = Population(N, cost, K, D, eligible)
    factors = _factors(factors, "factors")
    dims = _dimensions(dimensions)
    who = _participants(participants, pop.m, "participants")
    truth = _checked_utilities(mechanism, pop, np.ones((pop.m, 2)))
    rows = []
    for i in tqdm(who.tolist(), desc="misreport sweep", unit="participant",
                  disable=not progress):
        for dim in dims:
            k = DIMENSIONS.index(dim)
            for f in factors:
                if f == 1.0:
                    u = truth[i]
                else:
                    F = np.ones((pop.m, 2))
                    F[i, k] = f
                    u = _utilities(mechanism, pop, F)[i]
                rows.append((i, dim, f, float(u), float(truth[i]), float(u - truth[i])))
    return pd.DataFrame(rows, columns=REGRET_COLUMNS)


def _check_regret_frame(df: pd.DataFrame) -> None:
    missing = [c for c in REGRET_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks the regret columns {missing} (expected {REGRET_COLUMNS})")


def regret_table(df: pd.DataFrame) -> pd.DataFrame:
    """Best misreport per participant and dimension from a :func:`regret` (or
    :func:`simulate_misreport`) frame: columns participant, dimension, best_factor,
    truthful_utility, best_utility, gain. Ties go to the factor closest to the truth."""
    _check_regret_frame(df)
    ranked = df.assign(
        _dim=df["dimension"].map(DIMENSIONS.index),
        _distance=np.abs(np.log(df["factor"].to_numpy(dtype=float))),
    ).sort_values(["participant", "_dim", "gain", "_distance", "factor"],
                  ascending=[True, True, False, True, True], kind="stable")
    best = ranked.drop_duplicates(["participant", "dimension"])
    out = best.rename(columns={"factor": "best_factor", "utility": "best_utility"})
    return out[["participant", "dimension", "best_factor", "truthful_utility", "best_utility",
                "gain"]].reset_index(drop=True)


def epsilon(df: pd.DataFrame) -> dict[str, float]:
    """The largest gain from lying per dimension and overall: {"n", "cost", "max"}.
    Never negative (the truth is always an option); NaN for a dimension not audited."""
    _check_regret_frame(df)
    out = {}
    for dim in DIMENSIONS:
        gains = df.loc[df["dimension"] == dim, "gain"]
        out[dim] = max(0.0, float(gains.max())) if len(gains) else math.nan
    present = [v for v in out.values() if not math.isnan(v)]
    out["max"] = max(present) if present else math.nan
    return out


# --- utilities, welfare, IR, budget, efficiency ---------------------------------------------
def realised_utilities(mechanism: MechanismLike, N, cost, K, D, profile: Profile | None = None,
                       *, eligible=None) -> np.ndarray:
    """U (m,) realised with true values when participants report `profile` (None: truth)."""
    pop = Population(N, cost, K, D, eligible)
    return _utilities(mechanism, pop, _factor_matrix(profile, pop.m))


def social_welfare(mechanism: MechanismLike, N, cost, K, D, profile: Profile | None = None,
                   *, eligible=None) -> float:
    """Sum of realised utilities plus the platform's surplus under `profile` (None: truth)."""
    pop = Population(N, cost, K, D, eligible)
    return _welfare(mechanism, pop, _factor_matrix(profile, pop.m))


def optimal_welfare(N, cost, K, D, *, eligible=None) -> float:
    """The largest social welfare over all graphs (exact clearing with lam = 0)."""
    pop = Population(N, cost, K, D, eligible)
    return _optimal_welfare(pop)


def _optimal_welfare(pop: Population) -> float:
    A = ipfl.clear_exact(pop.N, pop.cost, pop.K, pop.D, 0.0, eligible=pop.eligible)
    return float(ipfl.utilities(A, np.zeros((pop.m, pop.m)), pop.N, pop.cost, pop.K).sum())


def ir_violations(mechanism: MechanismLike, N, cost, K, D, *, profile: Profile | None = None,
                  eligible=None, tol: float = 1e-9) -> pd.DataFrame:
    """Individual rationality in one market: for every truthful participant (all of them
    unless `profile` says otherwise), its realised utility, whether U < -tol and the
    shortfall max(0, -U). Columns: participant, utility, violation, shortfall."""
    pop = Population(N, cost, K, D, eligible)
    F = _factor_matrix(profile, pop.m)
    U = _utilities(mechanism, pop, F)
    truthful = np.flatnonzero((F == 1.0).all(axis=1))
    u = U[truthful]
    return pd.DataFrame({"participant": truthful, "utility": u, "violation": u < -tol,
                         "shortfall": np.maximum(-u, 0.0) + 0.0})


def budget(mechanism: MechanismLike, N, cost, K, D, *, profile: Profile | None = None,
           eligible=None, tol: float = 1e-9) -> dict[str, float | bool]:
    """Budget balance of one market: payments_sum (sum of P, 0 for any antisymmetric P),
    volume (total paid between participants), platform_surplus (sum of the platform vector:
    > 0 the platform keeps money, < 0 it subsidises) and balanced (both within tol)."""
    pop = Population(N, cost, K, D, eligible)
    _, P, platform = _outcome(mechanism, pop, _factor_matrix(profile, pop.m))
    payments_sum, surplus = float(P.sum()), float(platform.sum())
    return {"payments_sum": payments_sum, "volume": float(np.clip(P, 0.0, None).sum()),
            "platform_surplus": surplus,
            "balanced": abs(payments_sum) <= tol and abs(surplus) <= tol}


def _ratio(value: float, optimum: float, tol: float = 1e-12) -> float:
    if optimum > tol:
        return value / optimum
    return 1.0 if abs(value) <= tol and abs(optimum) <= tol else math.nan


def efficiency(mechanism: MechanismLike, N, cost, K, D, lam: float | None = None, *,
               eligible=None) -> dict[str, float]:
    """Welfare of the mechanism's graph under truthful reports against the exact optimum.

    `lam` (default: the mechanism's own ``lam``, else 1) weighs the heterogeneity charge of
    the market welfare. Returns lam, welfare and optimum (market welfare of the mechanism's
    graph and of :func:`mechanisms.ipfl.clear_exact`), ratio = welfare / optimum, and the
    same for social welfare (social_welfare, social_optimum, social_ratio).
    """
    pop = Population(N, cost, K, D, eligible)
    if lam is None:
        params = mechanism.get_params() if hasattr(mechanism, "get_params") else {}
        lam = float(params.get("lam", 1.0))
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam = {lam!r} is invalid: allowed range is [0, inf)")
    F = np.ones((pop.m, 2))
    A, _, _ = _outcome(mechanism, pop, F)
    best = ipfl.clear_exact(pop.N, pop.cost, pop.K, pop.D, lam, eligible=pop.eligible)
    value = ipfl.welfare(A, pop.N, pop.cost, pop.K, pop.D, lam)
    optimum = ipfl.welfare(best, pop.N, pop.cost, pop.K, pop.D, lam)
    social = _welfare(mechanism, pop, F)
    social_opt = _optimal_welfare(pop)
    return {"lam": lam, "welfare": value, "optimum": optimum, "ratio": _ratio(value, optimum),
            "social_welfare": social, "social_optimum": social_opt,
            "social_ratio": _ratio(social, social_opt)}


# --- runs of the market model -----------------------------------------------------------------
_RUN_COLUMNS = ("round", "participant", "active")


def _played(agents: pd.DataFrame, needed: Sequence[str]) -> pd.DataFrame:
    """Rows of an agents frame where the participant actually played the round: round >= 1
    and active, or the round it left (later rows of a departed participant are ignored)."""
    missing = [c for c in (*_RUN_COLUMNS, *needed) if c not in agents.columns]
    if missing:
        raise ValueError(f"agents frame lacks columns {missing} (use MarketModel.agent_frame())")
    frame = agents.sort_values(["participant", "round"], kind="stable")
    was_active = frame.groupby("participant")["active"].shift(fill_value=True).astype(bool)
    keep = (frame["round"] >= 1) & (frame["active"].astype(bool) | was_active)
    return frame[keep]


def ir_violations_from_run(agents: pd.DataFrame, *, strategies: Sequence[str] = ("truthful",),
                           tol: float = 1e-9) -> pd.DataFrame:
    """Individual rationality over a run, from ``MarketModel.agent_frame()``, among the
    participants whose strategy is in `strategies`. Per round: how many played
    (participants), how many realised U < -tol (violations) and the worst shortfall
    max(0, -U); cumulatively (everyone who has played so far, including those who left):
    how many have a cumulative utility < -tol and the worst cumulative shortfall."""
    played = _played(agents, ("strategy", "utility"))
    played = played[played["strategy"].isin(list(strategies))]
    rounds = sorted(agents.loc[agents["round"] >= 1, "round"].unique())
    U = played.pivot_table(index="round", columns="participant", values="utility",
                           aggfunc="sum").reindex(rounds)
    cumulative = U.fillna(0.0).cumsum().where(U.notna().cummax())
    out = pd.DataFrame({
        "participants": U.notna().sum(axis=1),
        "violations": (U < -tol).sum(axis=1),
        "worst_shortfall": (-U.min(axis=1)).clip(lower=0.0).fillna(0.0) + 0.0,
        "cumulative_violations": (cumulative < -tol).sum(axis=1),
        "worst_cumulative_shortfall": (-cumulative.min(axis=1)).clip(lower=0.0).fillna(0.0)
        + 0.0,
    }, index=pd.Index(rounds, name="round"))
    counts = ("participants", "violations", "cumulative_violations")
    return out.astype(dict.fromkeys(counts, "int64")).reset_index()


def budget_from_run(agents: pd.DataFrame) -> pd.DataFrame:
    """Budget balance over a run, from ``MarketModel.agent_frame()``: per round the money
    paid and received by participants (the ledger's settled amounts), the platform's
    surplus (paid - received: > 0 the platform keeps money, < 0 it subsidises) and its
    cumulative sum."""
    played = _played(agents, ("paid", "received"))
    rounds = sorted(agents.loc[agents["round"] >= 1, "round"].unique())
    sums = played.groupby("round")[["paid", "received"]].sum().reindex(rounds, fill_value=0.0)
    sums.index.name = "round"
    sums["surplus"] = sums["paid"] - sums["received"]
    sums["cumulative_surplus"] = sums["surplus"].cumsum()
    return sums.reset_index()


def simulate_misreport(config, participant: int, dimension: str,
                       factors: Sequence[float] = DEFAULT_FACTORS, rounds: int | None = None,
                       *, progress: bool = False) -> pd.DataFrame:
    """Re-run the full market once per factor with participant `participant` (its slot)
    playing ``misreport`` at that factor on `dimension`, everyone else unchanged.

    Every run uses the configuration's seed, so data, initial models, batches and the other
    participants' randomness are identical across factors (common random numbers). The
    participant becomes an honest uploader reporting factor x its truth; the truthful
    baseline is factor 1 (run once even if not in `factors`). Returns the regret columns
    (utility = its cumulative realised utility over the run) plus ``rounds`` (rounds it
    played), so :func:`regret_table` and :func:`epsilon` apply.
    """
    from models.config import MarketConfig
    from models.market import MarketModel

    cfg = config if isinstance(config, MarketConfig) else MarketConfig.from_dict(config)
    if rounds is not None:
        cfg = cfg.replace(rounds=rounds)
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension = {dimension!r} is invalid: allowed {list(DIMENSIONS)}")
    if isinstance(participant, bool) or not isinstance(participant, int | np.integer) or not (
            0 <= participant < cfg.n_participants):
        raise ValueError(f"participant = {participant!r} is invalid: allowed slots in "
                         f"[0, {cfg.n_participants - 1}]")
    factors = _factors(factors, "factors")
    runs = dict.fromkeys((1.0, *factors))
    for f in tqdm(list(runs), desc=f"misreport runs (participant {participant})", unit="run",
                  disable=not progress):
        model = MarketModel(_with_misreport(cfg, int(participant), dimension, f))
        while model.running:
            model.step()
        history = model.participants[int(participant)].history
        runs[f] = (float(sum(h["utility"] for h in history)), len(history))
        model.release()
    truth = runs[1.0][0]
    rows = [(int(participant), dimension, f, runs[f][0], truth, runs[f][0] - truth, runs[f][1])
            for f in factors]
    return pd.DataFrame(rows, columns=[*REGRET_COLUMNS, "rounds"])


def _with_misreport(cfg, slot: int, dimension: str, factor: float):
    """The configuration with participant `slot` alone switched to ``misreport``; groups
    are rewritten with explicit counts so every other slot keeps its group."""
    from models.config import Group, group_counts

    groups: list[Group] = []
    start = 0
    for group, count in zip(cfg.population, group_counts(cfg.population, cfg.n_participants),
                            strict=True):
        base = {"role": group.role, "strategy": group.strategy, "params": dict(group.params),
                "valuation": group.valuation, "cost": group.cost}
        if start <= slot < start + count:
            params = {"n_factor": 1.0, "cost_factor": 1.0, f"{dimension}_factor": factor}
            before, after = slot - start, start + count - slot - 1
            if before:
                groups.append(Group(**base, count=before))
            groups.append(Group(**{**base, "strategy": "misreport", "params": params}, count=1))
            if after:
                groups.append(Group(**base, count=after))
        elif count:
            groups.append(Group(**base, count=count))
        start += count
    return cfg.replace(population=tuple(groups))


# --- equilibria ------------------------------------------------------------------------------
def _candidates(grid: tuple[float, ...], dims: tuple[str, ...], current: np.ndarray
                ) -> list[np.ndarray]:
    """Every report (n, cost factors) a participant may choose: the grid on its strategic
    dimensions, its current factor on the others; ordered nearest-to-truth first."""
    axes = [grid if dim in dims else (float(current[k]),) for k, dim in enumerate(DIMENSIONS)]
    reports = [np.array(c) for c in itertools.product(*axes)]
    return sorted(reports, key=lambda r: float(np.abs(np.log(r)).sum()))


def _best_response(mechanism: MechanismLike, pop: Population, F: np.ndarray, i: int,
                   candidates: list[np.ndarray], current_utility: float, tol: float
                   ) -> tuple[np.ndarray, float]:
    """Participant i's best report against F; it keeps its current report unless another
    one gains more than tol (ties: nearest to the truth, then grid order)."""
    best, best_u = F[i].copy(), current_utility
    for report in candidates:
        if np.array_equal(report, F[i]):
            continue
        trial = F.copy()
        trial[i] = report
        u = float(_utilities(mechanism, pop, trial)[i])
        if u > best_u + tol * max(1.0, abs(best_u)):
            best, best_u = report, u
    return best, best_u


def epsilon_nash(mechanism: MechanismLike, N, cost, K, D, profile: Profile | None,
                 grid: Sequence[float] = DEFAULT_GRID, *, dimensions: Iterable[str] = DIMENSIONS,
                 strategic: Iterable[int] | None = None, eligible=None,
                 tol: float = 0.0) -> tuple[float, pd.DataFrame]:
    """How far `profile` is from a Nash equilibrium of the report game on `grid`.

    For every strategic participant (default all), its best unilateral deviation over the
    grid on `dimensions` (jointly), others fixed; a deviation counts when it gains more
    than `tol` (relative, floor 1; default 0: any gain). Returns (epsilon, frame): epsilon
    is the largest gain (0: `profile` is an equilibrium on the grid); the frame has one row
    per strategic participant with columns participant, n_factor, cost_factor, utility,
    best_n_factor, best_cost_factor, best_utility, gain.
    """
    pop = Population(N, cost, K, D, eligible)
    F = _factor_matrix(profile, pop.m)
    grid = _factors(grid, "grid")
    dims = _dimensions(dimensions)
    who = _participants(strategic, pop.m, "strategic")
    U = _checked_utilities(mechanism, pop, F)
    rows = []
    for i in who.tolist():
        report, u = _best_response(mechanism, pop, F, i, _candidates(grid, dims, F[i]),
                                   float(U[i]), tol)
        rows.append((i, F[i, 0], F[i, 1], float(U[i]), report[0], report[1], u, u - U[i]))
    frame = pd.DataFrame(rows, columns=["participant", "n_factor", "cost_factor", "utility",
                                        "best_n_factor", "best_cost_factor", "best_utility",
                                        "gain"])
    return (float(frame["gain"].max()) if len(frame) else 0.0), frame


@dataclass(frozen=True)
class BestResponseResult:
    """Outcome of :func:`best_response_dynamics`.

    converged: every strategic participant in a row kept its report (a pure Nash
    equilibrium on the grid);
    cycle: a sweep started from an earlier sweep's profile (the dynamics repeat forever);
    iterations: sweeps performed; profile: final factors {"n": (m,), "cost": (m,)};
    utilities: realised at the final profile; welfare, truthful_welfare, optimal_welfare:
    social welfare (module docstring) of the final profile, of truth and the optimum;
    price_of_anarchy: optimal / equilibrium welfare (:func:`price_of_anarchy`), NaN when the
    dynamics did not converge (no equilibrium to price); history: one row per sweep
    (0 = start) and strategic participant with its factors, utility and the profile's welfare.
    """

    converged: bool
    cycle: bool
    iterations: int
    profile: dict[str, np.ndarray]
    utilities: np.ndarray
    welfare: float
    truthful_welfare: float
    optimal_welfare: float
    price_of_anarchy: float
    history: pd.DataFrame = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The scalar results, e.g. for one row of a table."""
        return {"converged": self.converged, "cycle": self.cycle,
                "iterations": self.iterations, "welfare": self.welfare,
                "truthful_welfare": self.truthful_welfare,
                "optimal_welfare": self.optimal_welfare,
                "price_of_anarchy": self.price_of_anarchy}

    def profile_frame(self) -> pd.DataFrame:
        """The final profile as a table: participant, n_factor, cost_factor, utility."""
        return pd.DataFrame({"participant": np.arange(self.utilities.shape[0]),
                             "n_factor": self.profile["n"], "cost_factor": self.profile["cost"],
                             "utility": self.utilities})


def price_of_anarchy(optimal: float, equilibrium: float, tol: float = 1e-12) -> float:
    """optimal / equilibrium welfare; with equilibrium welfare <= 0: 1 if the optimum is 0
    too, +inf otherwise."""
    if equilibrium > tol:
        return optimal / equilibrium
    return 1.0 if abs(optimal) <= tol and abs(equilibrium) <= tol else math.inf


def _start_profile(start: str | Profile, pop: Population, who: np.ndarray,
                   grid: tuple[float, ...], dims: tuple[str, ...], seed: int) -> np.ndarray:
    if isinstance(start, str):
        if start == "truthful":
            return np.ones((pop.m, 2))
        if start == "random":
            rng = np.random.default_rng(seed)
            F = np.ones((pop.m, 2))
            for k, dim in enumerate(DIMENSIONS):
                if dim in dims:
                    F[who, k] = rng.choice(np.array(grid), size=who.size)
            return F
        raise ValueError(f"start = {start!r} is invalid: allowed 'truthful', 'random' or a "
                         "profile mapping")
    return _factor_matrix(start, pop.m, "start")


def check_dynamics(grid: Sequence[float], max_iter: int) -> tuple[float, ...]:
    """Validate the report grid (factors > 0, containing the truth 1) and the sweep limit of
    the best-response dynamics; return the grid as a tuple."""
    grid = _factors(grid, "grid")
    if 1.0 not in grid:
        raise ValueError(f"grid = {grid!r} must contain 1.0 (the truthful report)")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter = {max_iter!r} is invalid: allowed an integer >= 0")
    return grid


def best_response_dynamics(mechanism: MechanismLike, N, cost, K, D,
                           strategic: Iterable[int] | None = None,
                           grid: Sequence[float] = DEFAULT_GRID,
                           dimensions: Iterable[str] = DIMENSIONS,
                           start: str | Profile = "truthful", max_iter: int = 50, seed: int = 0,
                           *, eligible=None, tol: float = IMPROVEMENT_TOL,
                           progress: bool = False) -> BestResponseResult:
    """Round-robin best-response dynamics of the report game on a discrete grid.

    Each sweep visits the strategic participants (default all) in index order; each in
    turn switches to its best report on the grid (jointly over `dimensions`) against the
    current reports of everyone else, keeping its report unless another gains more than
    `tol` (relative, floor 1). It stops when every strategic participant in a row kept its
    report (converged: a pure Nash equilibrium on the grid; this may end mid-sweep), when a
    sweep starts from a profile seen at an earlier sweep start (cycle: round-robin dynamics
    are deterministic, so they would repeat forever), or after `max_iter` sweeps.
    One sweep costs |strategic| x (|grid|^|dimensions| - 1) market clearings.
    `start` is "truthful", "random" (uniform on the grid, from `seed`) or a profile.
    The grid must contain 1 (the truth is always available).
    """
    pop = Population(N, cost, K, D, eligible)
    grid = check_dynamics(grid, max_iter)
    dims = _dimensions(dimensions)
    who = _participants(strategic, pop.m, "strategic")
    F = _start_profile(start, pop, who, grid, dims, seed)
    U = _checked_utilities(mechanism, pop, F)
    history = [_snapshot(0, who, F, U, _welfare(mechanism, pop, F))]
    seen = {F.tobytes(): 0}
    converged, cycle = bool(who.size == 0), False
    sweeps = 0
    bar = tqdm(total=max_iter, desc="best-response sweeps", unit="sweep", disable=not progress)
    stable = 0  # consecutive best responses that changed nothing
    while sweeps < max_iter and not converged:
        sweeps += 1
        for i in who.tolist():
            report, _ = _best_response(mechanism, pop, F, i, _candidates(grid, dims, F[i]),
                                       float(U[i]), tol)
            if np.array_equal(report, F[i]):
                stable += 1
            else:
                F[i] = report
                U = _utilities(mechanism, pop, F)
                stable = 1
            if stable >= who.size:
                converged = True
                break
        history.append(_snapshot(sweeps, who, F, U, _welfare(mechanism, pop, F)))
        bar.update()
        if converged:
            break
        key = F.tobytes()
        if key in seen:
            cycle = True
            log.info("best-response dynamics cycle: sweep %d repeats sweep %d", sweeps,
                     seen[key])
            break
        seen[key] = sweeps
    bar.close()
    welfare = _welfare(mechanism, pop, F)
    optimum = _optimal_welfare(pop)
    return BestResponseResult(
        converged=converged, cycle=cycle, iterations=sweeps, profile=_profile_dict(F),
        utilities=U, welfare=welfare,
        truthful_welfare=_welfare(mechanism, pop, np.ones((pop.m, 2))),
        optimal_welfare=optimum,
        price_of_anarchy=price_of_anarchy(optimum, welfare) if converged else math.nan,
        history=pd.concat(history, ignore_index=True))


def _snapshot(sweep: int, who: np.ndarray, F: np.ndarray, U: np.ndarray,
              welfare: float) -> pd.DataFrame:
    return pd.DataFrame({"sweep": sweep, "participant": who, "n_factor": F[who, 0],
                         "cost_factor": F[who, 1], "utility": U[who], "welfare": welfare})


# --- plots -------------------------------------------------------------------------------------
def misreport_curves(df: pd.DataFrame, participants: Iterable[int] | None = None,
                     max_lines: int = 8, title: str | None = None) -> Figure:
    """Utility vs report factor, one panel per dimension, truth marked (dashed line at 1,
    dot at the truthful utility). Default participants: the `max_lines` with the largest
    gain from lying."""
    _check_regret_frame(df)
    if participants is None:
        order = df.groupby("participant")["gain"].max().sort_values(ascending=False,
                                                                     kind="stable")
        participants = order.index[:max_lines]
    chosen = df[df["participant"].isin(list(participants))]
    dims = [d for d in DIMENSIONS if (chosen["dimension"] == d).any()]
    fig = Figure(figsize=(5 * max(1, len(dims)), 4))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(dims)), squeeze=False)[0])
    for ax, dim in zip(axes, dims, strict=False):
        frames = chosen[chosen["dimension"] == dim].groupby("participant")
        colours = _colours(frames.ngroups)
        for (p, frame), colour in zip(frames, colours, strict=True):
            frame = frame.sort_values("factor")
            ax.plot(frame["factor"], frame["utility"], marker=".", color=colour, label=f"{p}")
            ax.plot([1.0], [frame["truthful_utility"].iloc[0]], "o", color=colour, mfc="white")
        ax.axvline(1.0, color="grey", ls="--", lw=0.8)
        _factor_axis(ax, "x", chosen["factor"].unique())
        ax.set(xlabel=f"report factor on {'data size' if dim == 'n' else 'cost'} "
               "(1 = truth)", ylabel="realised utility",
               title=f"Misreporting {'N' if dim == 'n' else 'cost'}")
        ax.legend(title="participant", fontsize=7, ncols=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def regret_heatmap(df: pd.DataFrame, title: str | None = None) -> Figure:
    """Gain from lying per participant (rows) and factor (columns), one panel per
    dimension; red: lying pays, blue: it costs."""
    _check_regret_frame(df)
    dims = [d for d in DIMENSIONS if (df["dimension"] == d).any()]
    fig = Figure(figsize=(5 * max(1, len(dims)), 0.35 * df["participant"].nunique() + 2))
    axes = fig.subplots(1, max(1, len(dims)), squeeze=False)[0]
    limit = float(np.abs(df["gain"]).max()) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    image = None
    for ax, dim in zip(axes, dims, strict=False):
        table = df[df["dimension"] == dim].pivot_table(index="participant", columns="factor",
                                                       values="gain", aggfunc="first")
        image = ax.imshow(table.to_numpy(), cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_xticks(range(table.shape[1]), [f"{f:g}" for f in table.columns], fontsize=7)
        ax.set_yticks(range(table.shape[0]), [str(p) for p in table.index], fontsize=7)
        ax.set(xlabel="report factor", ylabel="participant",
               title=f"Gain from misreporting {'N' if dim == 'n' else 'cost'}")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="utility gain vs truth")
    if title:
        fig.suptitle(title)
    return fig


def brd_trajectory(result: BestResponseResult, title: str | None = None) -> Figure:
    """Best-response dynamics over sweeps: each strategic participant's factors on N and
    cost, and the social welfare against truth and the optimum."""
    hist = result.history
    fig = Figure(figsize=(12, 3.8))
    ax_n, ax_c, ax_w = fig.subplots(1, 3)
    groups = hist.groupby("participant")
    for (p, frame), colour in zip(groups, _colours(groups.ngroups), strict=True):
        ax_n.plot(frame["sweep"], frame["n_factor"], marker=".", color=colour, label=str(p))
        ax_c.plot(frame["sweep"], frame["cost_factor"], marker=".", color=colour, label=str(p))
    for ax, what, col in ((ax_n, "N", "n_factor"), (ax_c, "cost", "cost_factor")):
        ax.axhline(1.0, color="grey", ls="--", lw=0.8)
        _factor_axis(ax, "y", hist[col].unique())
        ax.set(xlabel="sweep", ylabel=f"report factor on {what}", title=f"Reports of {what}")
    ax_n.legend(title="participant", fontsize=6, ncols=2)
    welfare = hist.groupby("sweep")["welfare"].first()
    ax_w.plot(welfare.index, welfare.values, marker="o", label="profile")
    ax_w.axhline(result.truthful_welfare, color="tab:green", ls="--", label="truthful")
    ax_w.axhline(result.optimal_welfare, color="black", ls=":", label="optimum")
    state = "converged" if result.converged else ("cycle" if result.cycle else "not converged")
    ax_w.set(xlabel="sweep", ylabel="social welfare",
             title=f"Welfare ({state}, PoA {result.price_of_anarchy:.3g})" if result.converged
             else f"Welfare ({state})")
    ax_w.legend(fontsize=7)
    for ax in (ax_n, ax_c, ax_w):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _colours(n: int) -> list:
    """Distinct line colours: tab10 up to 10 lines, tab20 up to 20, then a continuous map."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](k) for k in range(n)]
    if n <= 20:
        return [colormaps["tab20"](k) for k in range(n)]
    return [colormaps["viridis"](k / max(1, n - 1)) for k in range(n)]


def _factor_axis(ax, which: str, values) -> None:
    """A log-scaled factor axis (`which` "x" or "y") labelled at the factors themselves."""
    values = np.unique(np.asarray(values, dtype=float))
    getattr(ax, f"set_{which}scale")("log")
    getattr(ax, f"set_{which}ticks")(values, [f"{v:g}" for v in values])
    getattr(ax, f"{which}axis").set_minor_locator(NullLocator())
