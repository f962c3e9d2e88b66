"""One validated configuration for a market run.

`MarketConfig` holds every knob of a run. It is built from a dict or a TOML file, and every
invalid field is reported at once, each with its name, the bad value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mechanisms.checks import VALUATIONS

ROLES = ("trader", "buyer", "seller")
STRATEGIES = ("truthful", "misreport", "free_rider", "fake", "learning")
NETWORKS = ("auto", "mlp", "cnn")
CHURN = ("none", "ir_strict", "ir_prob")
PARAMETER_TABLES = ("mechanism_params", "reputation_params", "robust_params")


class ConfigError(ValueError):
    """Invalid configuration; `problems` lists one message per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


def _plain_scalars(instance: Any) -> None:
    """Store NumPy scalars of a frozen dataclass as the Python numbers they hold."""
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if isinstance(value, np.generic):
            object.__setattr__(instance, f.name, value.item())


@dataclass(frozen=True)
class Group:
    """A block of identical participants: role, strategy, and how many.

    Give `count` or `fraction` (of `n_participants`), or neither for "the rest".
    `params` are the strategy's parameters (e.g. `n_factor`, `attack`, `grid`).
    `valuation` and `cost` override the role defaults for this group.
    """

    role: str = "trader"
    strategy: str = "truthful"
    count: int | None = None
    fraction: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    valuation: float | None = None
    cost: float | None = None

    def __post_init__(self) -> None:
        _plain_scalars(self)


def default_population() -> tuple[Group, ...]:
    """The inclusive market: traders, buyers, sellers and one sign-flip seller (12 in all)."""
    return (
        Group(role="trader", count=6),
        Group(role="buyer", count=3),
        Group(role="seller", count=2),
        Group(role="seller", strategy="fake", count=1, params={"attack": "sign_flip"}),
    )


@dataclass(frozen=True)
class MarketConfig:
    """Every knob of one market run (defaults: the inclusive 12-participant market).

    `seed` drives every random stream of a run (partition, initial model, minibatches,
    strategies, churn); `data_seed` draws the dataset itself (generated or subsampled), which
    stays fixed across replicates unless changed. Churn: `ir_strict` participants leave after
    a round of negative realised utility; `ir_prob` ones leave after such a round with
    probability `churn_prob`. Each round a newcomer arrives with probability `arrival_prob`
    (at most `max_arrivals` in all), drawn from `arrival_population` with probability
    proportional to each group's count or fraction (1 when it gives neither).
    NumPy scalars are accepted and stored as Python numbers.
    """

    seed: int = 0
    rounds: int = 20
    # data
    dataset: str = "mnist1d"
    n_samples: int = 6000
    data_seed: int = 0
    data_root: str | None = None
    partition: str = "dirichlet"
    beta: float = 0.5
    n_clusters: int = 3
    inner_beta: float = 10.0
    classes_per_client: int = 5
    min_size: int = 40
    test_fraction: float = 0.2
    # local learning
    network: str = "auto"
    hidden: tuple[int, ...] = (120, 84)
    local_steps: int = 50
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5
    # population
    n_participants: int = 12
    population: tuple[Group, ...] = field(default_factory=default_population)
    valuation: float = 5e5
    cost: float = 1.0
    buyer_cost: float = 1e6
    endowment: float = 0.0
    # mechanism and defences
    mechanism: str = "ipfl"
    mechanism_params: Mapping[str, Any] = field(default_factory=dict)
    reputation: str | None = None
    reputation_params: Mapping[str, Any] = field(default_factory=dict)
    robust: str | None = None
    robust_params: Mapping[str, Any] = field(default_factory=dict)
    validation_size: int = 300
    # churn
    churn: str = "none"
    churn_prob: float = 0.2
    arrival_prob: float = 0.0
    max_arrivals: int = 0
    arrival_population: tuple[Group, ...] = (Group(),)

    def __post_init__(self) -> None:
        _plain_scalars(self)
        problems = validate(self)
        if problems:
            raise ConfigError(problems)

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarketConfig:
        """Build from plain data (e.g. parsed TOML); unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        problems = [f"{k}: unknown field (known: {', '.join(sorted(known))})" for k in unknown]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key in ("population", "arrival_population"):
                groups, group_problems = _groups_from_data(key, value)
                problems += group_problems
                kwargs[key] = groups
            elif key == "hidden" and isinstance(value, list):
                kwargs[key] = tuple(value)
            else:
                kwargs[key] = value
        try:
            config = cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(problems + exc.problems) from None
        if problems:
            raise ConfigError(problems)
        return config

    @classmethod
    def from_toml(cls, path: str | Path) -> MarketConfig:
        """Load a TOML file; a missing file or bad TOML is a clear error."""
        return cls.from_dict(read_toml(path, "config file"))

    def replace(self, **changes: Any) -> MarketConfig:
        """A copy with some fields changed (validated like the original)."""
        return MarketConfig.from_dict({**self.to_dict(), **changes})

    def with_overrides(self, assignments: list[str]) -> MarketConfig:
        """Apply `key=value` strings (values parsed as TOML, else kept as strings).

        Dotted keys reach into mapping fields: `mechanism_params.lam=2`.
        """
        data = self.to_dict()
        problems = []
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                problems.append(f"--set {item!r}: expected key=value")
                continue
            value = _parse_value(raw.strip())
            head, _, rest = key.strip().partition(".")
            if rest:
                table = data.get(head)
                if not isinstance(table, Mapping):
                    problems.append(f"{head}: not a table, cannot set {key.strip()}")
                    continue
                data[head] = {**table, rest: value}
            else:
                data[head] = value
        if problems:
            raise ConfigError(problems)
        return MarketConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/TOML friendly), the inverse of `from_dict`."""
        out = dataclasses.asdict(self)
        for key in ("population", "arrival_population"):
            out[key] = [_group_to_dict(g) for g in getattr(self, key)]
        out["hidden"] = list(self.hidden)
        for key in ("mechanism_params", "reputation_params", "robust_params"):
            out[key] = dict(getattr(self, key))
        return out

    def to_toml(self) -> str:
        """The configuration as TOML text (round-trips through `from_toml`)."""
        return _to_toml(self.to_dict())


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad TOML is a ConfigError naming `what`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError([f"{what}: {path} does not exist"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{what}: {path} is not valid TOML ({exc})"]) from exc


# validation -------------------------------------------------------------------------------
def validate(cfg: MarketConfig) -> list[str]:
    """All problems of a configuration, one message per bad field."""
    problems: list[str] = []

    def check(name: str, ok: bool, allowed: str) -> None:
        if not ok:
            problems.append(f"{name}={getattr(cfg, name)!r}: allowed {allowed}")

    check("seed", _is_int(cfg.seed) and cfg.seed >= 0, "an integer >= 0")
    check("rounds", _is_int(cfg.rounds) and cfg.rounds >= 1, "an integer >= 1")
    check("dataset", cfg.dataset in _datasets(), f"one of {', '.join(_datasets())}")
    check("n_samples", _is_int(cfg.n_samples) and cfg.n_samples >= 100, "an integer >= 100")
    check("data_seed", _is_int(cfg.data_seed) and cfg.data_seed >= 0, "an integer >= 0")
    check("partition", cfg.partition in _partitions(), f"one of {', '.join(_partitions())}")
    check("beta", _is_real(cfg.beta) and cfg.beta > 0, "a number > 0")
    check("n_clusters", _is_int(cfg.n_clusters) and cfg.n_clusters >= 1, "an integer >= 1")
    check("inner_beta", _is_real(cfg.inner_beta) and cfg.inner_beta > 0, "a number > 0")
    check("classes_per_client", _is_int(cfg.classes_per_client) and cfg.classes_per_client >= 1,
          "an integer >= 1")
    check("min_size", _is_int(cfg.min_size) and cfg.min_size >= 1, "an integer >= 1")
    check("test_fraction", _is_real(cfg.test_fraction) and 0 < cfg.test_fraction < 1,
          "a number in (0, 1)")
    check("network", cfg.network in NETWORKS, f"one of {', '.join(NETWORKS)}")
    check("hidden", isinstance(cfg.hidden, tuple) and len(cfg.hidden) >= 1
          and all(_is_int(h) and h >= 1 for h in cfg.hidden), "a non-empty list of integers >= 1")
    check("local_steps", _is_int(cfg.local_steps) and cfg.local_steps >= 1, "an integer >= 1")
    check("batch_size", _is_int(cfg.batch_size) and cfg.batch_size >= 1, "an integer >= 1")
    check("lr", _is_real(cfg.lr) and 0 < cfg.lr <= 10, "a number in (0, 10]")
    check("momentum", _is_real(cfg.momentum) and 0 <= cfg.momentum < 1, "a number in [0, 1)")
    check("weight_decay", _is_real(cfg.weight_decay) and cfg.weight_decay >= 0, "a number >= 0")
    check("n_participants", _is_int(cfg.n_participants) and cfg.n_participants >= 2,
          "an integer >= 2")
    check("valuation", _is_valuation(cfg.valuation), f"a number in [0, {VALUATIONS:g}]")
    check("cost", _is_real(cfg.cost) and cfg.cost >= 0, "a number >= 0")
    check("buyer_cost", _is_real(cfg.buyer_cost) and cfg.buyer_cost >= 0, "a number >= 0")
    check("endowment", _is_real(cfg.endowment), "a finite number")
    check("validation_size", _is_int(cfg.validation_size) and cfg.validation_size >= 10,
          "an integer >= 10 (test samples the platform keeps to score uploads)")
    check("churn", cfg.churn in CHURN, f"one of {', '.join(CHURN)}")
    check("churn_prob", _is_real(cfg.churn_prob) and 0 <= cfg.churn_prob <= 1,
          "a number in [0, 1]")
    check("arrival_prob", _is_real(cfg.arrival_prob) and 0 <= cfg.arrival_prob <= 1,
          "a number in [0, 1]")
    check("max_arrivals", _is_int(cfg.max_arrivals) and cfg.max_arrivals >= 0, "an integer >= 0")
    if cfg.partition == "cluster" and _is_int(cfg.n_participants) and _is_int(cfg.n_clusters) \
            and cfg.n_clusters >= 1 and cfg.n_participants % cfg.n_clusters:
        problems.append(f"n_participants={cfg.n_participants!r}: allowed a multiple of "
                        f"n_clusters={cfg.n_clusters} for the cluster partition")
    problems += _validate_data(cfg)
    problems += _validate_groups("population", cfg.population, cfg.n_participants)
    problems += _validate_groups("arrival_population", cfg.arrival_population, None)
    problems += _validate_arrivals(cfg)
    tables = [name for name in PARAMETER_TABLES if not isinstance(getattr(cfg, name), Mapping)]
    for name in tables:
        check(name, False, "a table of parameters")
    if not tables:
        problems += _validate_mechanism(cfg)
    return problems


def _validate_data(cfg: MarketConfig) -> list[str]:
    """Checks that need the dataset's facts: its size, where its files live, its inputs."""
    from models.data import BUNDLED_SIZES, FILE_DATASETS, IMAGE_DATASETS

    problems = []
    size = BUNDLED_SIZES.get(cfg.dataset)
    if size is not None and _is_int(cfg.n_samples) and cfg.n_samples > size:
        problems.append(f"n_samples={cfg.n_samples!r}: allowed at most {size} for "
                        f"dataset={cfg.dataset!r} (all of it)")
    if cfg.dataset in FILE_DATASETS:
        if cfg.data_root is None:
            problems.append(f"data_root=None: allowed the folder holding the {cfg.dataset} "
                            "files (nothing is downloaded)")
        elif not Path(str(cfg.data_root)).expanduser().is_dir():
            problems.append(f"data_root={cfg.data_root!r}: allowed an existing folder")
    vectors = cfg.dataset in _datasets() and cfg.dataset not in IMAGE_DATASETS
    if cfg.network == "cnn" and vectors:
        problems.append(f"network='cnn': allowed only for image datasets "
                        f"({', '.join(IMAGE_DATASETS)}); {cfg.dataset!r} holds vectors")
    if all(_is_int(v) and v >= 1 for v in (cfg.min_size, cfg.n_participants, cfg.n_samples)) \
            and cfg.min_size * cfg.n_participants > cfg.n_samples:
        problems.append(f"min_size={cfg.min_size!r}: allowed at most n_samples / "
                        f"n_participants = {cfg.n_samples // cfg.n_participants}")
    return problems


def _validate_arrivals(cfg: MarketConfig) -> list[str]:
    """Arrivals need groups with a positive total weight to draw newcomers from."""
    groups = cfg.arrival_population
    if not (_is_int(cfg.max_arrivals) and cfg.max_arrivals > 0 and _is_real(cfg.arrival_prob)
            and cfg.arrival_prob > 0 and isinstance(groups, tuple)
            and all(isinstance(g, Group) for g in groups)):
        return []
    weights = arrival_weights(groups)
    if not (np.all(np.isfinite(weights)) and weights.sum() > 0):
        return [f"arrival_population: group weights (count or fraction, 1 when neither) add "
                f"up to {weights.sum():g}; allowed a positive total when arrivals are on"]
    return []


def arrival_weights(groups: tuple[Group, ...]) -> np.ndarray:
    """Relative chance of each arrival group: its count or fraction, 1 when neither."""
    return np.array([g.count if g.count is not None else
                     g.fraction if g.fraction is not None else 1.0 for g in groups], dtype=float)


def _validate_groups(name: str, groups: Any, total: int | None) -> list[str]:
    """Roles, strategies and sizes of a population; counts must add up to `total`."""
    if not isinstance(groups, tuple) or not groups:
        return [f"{name}={groups!r}: allowed a non-empty list of groups"]
    problems = []
    for k, g in enumerate(groups):
        where = f"{name}[{k}]"
        if not isinstance(g, Group):
            problems.append(f"{where}={g!r}: allowed a table with role, strategy, count")
            continue
        if g.role not in ROLES:
            problems.append(f"{where}.role={g.role!r}: allowed one of {', '.join(ROLES)}")
        if g.strategy not in STRATEGIES:
            problems.append(
                f"{where}.strategy={g.strategy!r}: allowed one of {', '.join(STRATEGIES)}")
        if g.count is not None and g.fraction is not None:
            problems.append(f"{where}: give count or fraction, not both")
        if g.count is not None and not (_is_int(g.count) and g.count >= 0):
            problems.append(f"{where}.count={g.count!r}: allowed an integer >= 0")
        if g.fraction is not None and not (_is_real(g.fraction) and 0 <= g.fraction <= 1):
            problems.append(f"{where}.fraction={g.fraction!r}: allowed a number in [0, 1]")
        if g.valuation is not None and not _is_valuation(g.valuation):
            problems.append(f"{where}.valuation={g.valuation!r}: allowed a number in "
                            f"[0, {VALUATIONS:g}]")
        if g.cost is not None and not (_is_real(g.cost) and g.cost >= 0):
            problems.append(f"{where}.cost={g.cost!r}: allowed a number >= 0")
        if not isinstance(g.params, Mapping):
            problems.append(f"{where}.params={g.params!r}: allowed a table of parameters")
        elif g.strategy in STRATEGIES:
            problems += [f"{where}.params: {p}" for p in _strategy_problems(g)]
    if total is not None and not problems and _is_int(total) and total >= 2:
        try:
            counts = group_counts(groups, total)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
        else:
            if sum(counts) != total:
                problems.append(f"{name}: group counts add up to {sum(counts)}, "
                                f"allowed exactly n_participants={total}")
    return problems


def _strategy_problems(group: Group) -> list[str]:
    from agents.strategies import strategy_problems

    return strategy_problems(group.strategy, dict(group.params))


def _validate_mechanism(cfg: MarketConfig) -> list[str]:
    """The preset, its parameters and the defences, checked by the mechanisms layer itself."""
    import mechanisms

    if cfg.mechanism not in mechanisms.available():
        return [f"mechanism={cfg.mechanism!r}: allowed one of {', '.join(mechanisms.available())}"]
    problems = mechanisms.check_settings("mechanism", cfg.mechanism, mechanism_overrides(cfg))
    return [f"mechanism {cfg.mechanism!r} settings: {problem}" for problem in problems]


def mechanism_overrides(cfg: MarketConfig) -> dict[str, Any]:
    """Keyword arguments for `mechanisms.get` from the configuration."""
    kwargs = dict(cfg.mechanism_params)
    if cfg.reputation is not None:
        kwargs["reputation"] = cfg.reputation
    if cfg.reputation_params:
        kwargs["reputation_params"] = dict(cfg.reputation_params)
    if cfg.robust is not None:
        kwargs["robust"] = cfg.robust
    if cfg.robust_params:
        kwargs["robust_params"] = dict(cfg.robust_params)
    return kwargs


def group_counts(groups: tuple[Group, ...], total: int) -> list[int]:
    """Participants per group: counts as given, fractions by largest remainder, rest to the
    one group with neither (at most one such group)."""
    rest = [k for k, g in enumerate(groups) if g.count is None and g.fraction is None]
    if len(rest) > 1:
        raise ValueError("at most one group may omit both count and fraction")
    counts = [g.count or 0 for g in groups]
    fractional = [k for k, g in enumerate(groups) if g.fraction is not None]
    if fractional:
        exact = [groups[k].fraction * total for k in fractional]
        floors = [math.floor(x) for x in exact]
        budget = round(sum(exact)) - sum(floors)
        order = sorted(range(len(fractional)), key=lambda i: (floors[i] - exact[i], i))
        for rank, i in enumerate(order):
            counts[fractional[i]] = floors[i] + (1 if rank < budget else 0)
    if rest:
        left = total - sum(counts)
        if left < 0:
            raise ValueError(f"groups already hold {sum(counts)} > n_participants={total}")
        counts[rest[0]] = left
    return counts


# internals --------------------------------------------------------------------------------
def _groups_from_data(name: str, value: Any) -> tuple[Any, list[str]]:
    if not isinstance(value, list | tuple):
        return value, [f"{name}={value!r}: allowed a list of tables"]
    known = {f.name for f in dataclasses.fields(Group)}
    groups, problems = [], []
    for k, item in enumerate(value):
        if isinstance(item, Group):
            groups.append(item)
            continue
        if not isinstance(item, Mapping):
            problems.append(f"{name}[{k}]={item!r}: allowed a table")
            continue
        bad = sorted(set(item) - known)
        if bad:
            problems.append(f"{name}[{k}]: unknown keys {bad} (known: {', '.join(sorted(known))})")
            continue
        params = item.get("params", {})
        groups.append(Group(**{**item, "params": dict(params) if isinstance(params, Mapping)
                               else params}))
    return tuple(groups), problems


def _group_to_dict(group: Group) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(group).items() if v is not None}
    out["params"] = dict(group.params)
    return out


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _to_toml(data: Mapping[str, Any]) -> str:
    scalars, tables, arrays = [], [], []
    for key in sorted(data):
        value = data[key]
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            arrays.append((key, value))
        else:
            scalars.append(f"{key} = {_toml_value(value)}")
    lines = scalars
    for key, table in tables:
        lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in sorted(table.items())]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{key}]]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in item.items() if k != "params"]
            if item.get("params"):
                lines += [f"[{key}.params]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(item["params"].items())]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_valuation(value: Any) -> bool:
    """A valuation K that a market takes."""
    return _is_real(value) and 0 <= value <= VALUATIONS


def _datasets() -> tuple[str, ...]:
    from models.data import DATASETS

    return DATASETS


def _partitions() -> tuple[str, ...]:
    from models.data import PARTITIONS

    return PARTITIONS
