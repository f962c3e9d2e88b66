"""Participant behaviour as strategy objects.

A strategy turns a round into an `Action` (train or not, report factors on data size and
cost, upload transform) and may learn from the realised utility it observes afterwards.
Honest, misreporting, free-riding, fake-model and learning behaviour all fit this shape, so
one `Participant` class serves every agent (Mesa's `agents_by_type` does not see subclasses
as their parent).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.attacks import ATTACKS, FAKE_SELLERS, make_attack

Upload = Callable[..., np.ndarray]

DEFAULT_GRID = (0.5, 1.0, 2.0)
FACTORS = (1e-3, 1e3)  # report factors allowed: reports stay within the market's size range
_FACTOR_RANGE = f"[{FACTORS[0]:g}, {FACTORS[1]:g}]"


@dataclass(frozen=True)
class Action:
    """What a participant does in one round."""

    train: bool = True
    n_factor: float = 1.0
    cost_factor: float = 1.0
    attack: Upload | None = None


class Strategy:
    """Truthful behaviour: train, report the truth, upload the trained model."""

    name = "truthful"
    honest = True

    def decide(self, round_: int, rng: np.random.Generator) -> Action:
        """This round's action: whether to train, the report factors and the upload."""
        return Action()

    def observe(self, utility: float) -> None:
        """Learn from the realised utility of the last round (no-op unless learning)."""

    def get_params(self) -> dict[str, Any]:
        """The parameters the strategy was built with."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Learned state as JSON-safe data (empty for fixed strategies)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore learned state (nothing to restore for fixed strategies)."""


class Truthful(Strategy):
    pass


class Misreport(Strategy):
    """Report `n_factor` times the true data size and `cost_factor` times the true cost."""

    name = "misreport"
    honest = False

    def __init__(self, n_factor: float = 1.0, cost_factor: float = 1.0):
        self.n_factor = n_factor
        self.cost_factor = cost_factor
        self._action = Action(n_factor=n_factor, cost_factor=cost_factor)

    def decide(self, round_: int, rng: np.random.Generator) -> Action:
        return self._action

    def get_params(self) -> dict[str, Any]:
        return {"n_factor": self.n_factor, "cost_factor": self.cost_factor}


class _Uploader(Strategy):
    """Base for strategies whose upload is an attack transform of the own model."""

    honest = False
    trains = True

    def __init__(self, attack: str, **attack_params: Any):
        self.attack_name = attack
        self.attack_params = dict(attack_params)
        self.attack = make_attack(attack, **attack_params)
        self._action = Action(train=self.trains, attack=self.attack)

    def decide(self, round_: int, rng: np.random.Generator) -> Action:
        return self._action

    def get_params(self) -> dict[str, Any]:
        return {"attack": self.attack_name, **self.attack_params}

    def state_dict(self) -> dict[str, Any]:
        return _attack_state(self.attack)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if hasattr(self.attack, "load_state_dict"):
            self.attack.load_state_dict(state)


class FreeRider(_Uploader):
    """Never trains; uploads the model it holds (`plain`), disguised with noise, moved along
    the observed global change (`delta`), or any other upload transform (e.g. `constant`)."""

    name = "free_rider"
    trains = False

    def __init__(self, kind: str = "plain", **attack_params: Any):
        super().__init__(kind, **attack_params)

    def get_params(self) -> dict[str, Any]:
        return {"kind": self.attack_name, **self.attack_params}


class FakeSeller(_Uploader):
    """Trains its own model (for its own use) but sells a fake one."""

    name = "fake"


class Learning(Strategy):
    """A bandit over a grid of report factors, rewarded by realised utility.

    Arms are (n_factor, cost_factor) pairs; `dimension` picks which factors vary ("n",
    "cost" or "both"). `algorithm` is "epsilon_greedy" (sample means, explore with
    probability `epsilon`) or "exp3" (exponential weights with exploration `gamma`, rewards
    rescaled to [0, 1] by the largest absolute utility seen so far).
    """

    name = "learning"
    honest = False

    def __init__(self, grid: Sequence[float] = DEFAULT_GRID, dimension: str = "both",
                 algorithm: str = "epsilon_greedy", epsilon: float = 0.1, gamma: float = 0.1):
        self.grid = tuple(float(x) for x in grid)
        self.dimension = dimension
        self.algorithm = algorithm
        self.epsilon = epsilon
        self.gamma = gamma
        self.arms = report_arms(self.grid, dimension)
        k = len(self.arms)
        self.counts_ = np.zeros(k)
        self.values_ = np.zeros(k)
        self.log_weights_ = np.zeros(k)
        self.scale_ = 0.0
        self.last_arm_: int | None = None
        self._last_probs = np.full(k, 1.0 / k)

    def decide(self, round_: int, rng: np.random.Generator) -> Action:
        if self.algorithm == "exp3":
            probs = exp3_probabilities(self.log_weights_, self.gamma)
            arm = int(rng.choice(len(self.arms), p=probs))
            self._last_probs = probs
        else:
            arm = epsilon_greedy_arm(self.values_, self.counts_, self.epsilon, rng)
        self.last_arm_ = arm
        n_factor, cost_factor = self.arms[arm]
        return Action(n_factor=n_factor, cost_factor=cost_factor)

    def observe(self, utility: float) -> None:
        if self.last_arm_ is None or not math.isfinite(utility):
            return
        arm = self.last_arm_
        self.counts_[arm] += 1
        self.values_[arm] += (utility - self.values_[arm]) / self.counts_[arm]
        if self.algorithm == "exp3":
            self.scale_ = max(self.scale_, abs(utility))
            reward = 0.5 + 0.5 * utility / self.scale_ if self.scale_ > 0 else 0.5
            estimate = reward / self._last_probs[arm]
            self.log_weights_[arm] += self.gamma * estimate / len(self.arms)

    def policy(self) -> tuple[float, float]:
        """The arm currently believed best (the learned report factors); ties go to the arm
        nearest the truthful report (1, 1), so indifference never reads as a lie."""
        scores = (self.log_weights_ if self.algorithm == "exp3"
                  else np.where(self.counts_ > 0, self.values_, -np.inf))
        best = np.flatnonzero(scores >= scores.max() - 1e-12) if np.isfinite(
            scores.max()) else np.arange(len(self.arms))
        return min((self.arms[k] for k in best), key=_distance_from_truth)

    def get_params(self) -> dict[str, Any]:
        return {"grid": list(self.grid), "dimension": self.dimension,
                "algorithm": self.algorithm, "epsilon": self.epsilon, "gamma": self.gamma}

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts_.tolist(), "values": self.values_.tolist(),
                "log_weights": self.log_weights_.tolist(), "scale": self.scale_,
                "last_arm": self.last_arm_, "last_probs": self._last_probs.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts_ = np.asarray(state["counts"], dtype=float)
        self.values_ = np.asarray(state["values"], dtype=float)
        self.log_weights_ = np.asarray(state["log_weights"], dtype=float)
        self.scale_ = float(state["scale"])
        self.last_arm_ = state["last_arm"]
        self._last_probs = np.asarray(state["last_probs"], dtype=float)


def _distance_from_truth(arm: tuple[float, float]) -> float:
    return abs(math.log(arm[0])) + abs(math.log(arm[1]))


def report_arms(grid: Sequence[float], dimension: str) -> list[tuple[float, float]]:
    """(n_factor, cost_factor) arms for a grid of factors along one or both dimensions."""
    grid = tuple(float(x) for x in grid)
    if dimension == "n":
        return [(f, 1.0) for f in grid]
    if dimension == "cost":
        return [(1.0, f) for f in grid]
    return list(itertools.product(grid, grid))


def epsilon_greedy_arm(values: np.ndarray, counts: np.ndarray, epsilon: float,
                       rng: np.random.Generator) -> int:
    """Untried arms first (lowest index), then explore with probability epsilon, else exploit;
    one uniform draw per call keeps the random stream aligned across arms."""
    explore, pick = rng.random(), int(rng.integers(len(values)))
    untried = np.flatnonzero(counts == 0)
    if untried.size:
        return int(untried[0])
    return pick if explore < epsilon else int(np.argmax(values))


def exp3_probabilities(log_weights: np.ndarray, gamma: float) -> np.ndarray:
    """EXP3 arm probabilities: softmax of the weights mixed with uniform exploration."""
    w = np.exp(log_weights - log_weights.max())
    return (1 - gamma) * w / w.sum() + gamma / len(w)


STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    "truthful": Truthful,
    "misreport": Misreport,
    "free_rider": FreeRider,
    "fake": FakeSeller,
    "learning": Learning,
}


def make_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """Build a strategy by name; invalid parameters raise ValueError listing every problem."""
    params = dict(params or {})
    problems = strategy_problems(name, params)
    if problems:
        raise ValueError(f"strategy {name!r}: " + "; ".join(problems))
    return STRATEGY_CLASSES[name](**params)


def strategy_problems(name: str, params: Mapping[str, Any]) -> list[str]:
    """Every problem with a strategy's parameters (empty when valid)."""
    if name not in STRATEGY_CLASSES:
        return [f"strategy={name!r}: allowed one of {', '.join(STRATEGY_CLASSES)}"]
    problems: list[str] = []

    def factor(key: str) -> None:
        value = params.get(key, 1.0)
        if not _is_factor(value):
            problems.append(f"{key}={value!r}: allowed a number in {_FACTOR_RANGE}")

    if name == "truthful" and params:
        problems.append(f"unexpected parameters {sorted(params)} (truthful takes none)")
    elif name == "misreport":
        _unknown(params, {"n_factor", "cost_factor"}, problems)
        factor("n_factor")
        factor("cost_factor")
    elif name == "free_rider":
        kind = params.get("kind", "plain")
        if kind not in ATTACKS:
            problems.append(f"kind={kind!r}: allowed one of {', '.join(ATTACKS)}")
        else:
            problems += _attack_problems(kind, {k: v for k, v in params.items() if k != "kind"})
    elif name == "fake":
        attack = params.get("attack", "sign_flip")
        if attack not in FAKE_SELLERS:
            problems.append(f"attack={attack!r}: allowed one of {', '.join(FAKE_SELLERS)}")
        else:
            problems += _attack_problems(
                attack, {k: v for k, v in params.items() if k != "attack"})
    elif name == "learning":
        _unknown(params, {"grid", "dimension", "algorithm", "epsilon", "gamma"}, problems)
        grid = params.get("grid", DEFAULT_GRID)
        if not (isinstance(grid, list | tuple) and grid
                and all(_is_factor(x) for x in grid)):
            problems.append(f"grid={grid!r}: allowed a non-empty list of numbers in "
                            f"{_FACTOR_RANGE}")
        elif 1.0 not in [float(x) for x in grid]:
            problems.append(f"grid={grid!r}: must contain 1.0 (the truthful report)")
        if params.get("dimension", "both") not in ("n", "cost", "both"):
            problems.append(f"dimension={params['dimension']!r}: allowed n, cost or both")
        if params.get("algorithm", "epsilon_greedy") not in ("epsilon_greedy", "exp3"):
            problems.append(
                f"algorithm={params['algorithm']!r}: allowed epsilon_greedy or exp3")
        for key in ("epsilon", "gamma"):
            value = params.get(key, 0.1)
            if not (_is_real(value) and 0 <= value <= 1):
                problems.append(f"{key}={value!r}: allowed a number in [0, 1]")
    return problems


def _attack_problems(attack: str, params: dict[str, Any]) -> list[str]:
    try:
        make_attack(attack, **params)
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return []


def _attack_state(attack: Any) -> dict[str, Any]:
    return attack.state_dict() if hasattr(attack, "state_dict") else {}


def _unknown(params: Mapping[str, Any], known: set[str], problems: list[str]) -> None:
    extra = sorted(set(params) - known)
    if extra:
        problems.append(f"unknown parameters {extra} (allowed: {', '.join(sorted(known))})")


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_factor(value: Any) -> bool:
    """A real report factor within FACTORS."""
    return _is_real(value) and FACTORS[0] <= value <= FACTORS[1]
