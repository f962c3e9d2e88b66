"""Parameter sweeps over `MarketModel`: `mesa.batch_run` for quick looks, `run_sweep` for real ones.

Quick sweeps with Mesa
----------------------
`mesa.batch_run(MarketModel, parameters={..., "seed": [0, 1, 2]}, ...)` works because
`MarketModel` accepts `MarketConfig` fields as keyword arguments. Mesa 3.3 pitfalls:

- `import mesa` (so any import of `models.market`) runs
  `multiprocessing.set_start_method("spawn", force=True)` for the whole program. Every process
  pool then starts fresh interpreters: the model class must be importable from a module (not
  defined in a notebook or in `__main__`), scripts need `if __name__ == "__main__":`, and
  each worker pays the torch import. The pool of this module asks for the spawn context
  explicitly, so it behaves the same whether or not Mesa was imported first.
- `mesa.Agent._ids` is a class-level table keyed by model: every model that created an agent
  stays referenced (agents, data, tensors) for the life of the process. `MarketModel` drops
  its entry when it finishes and `release()` drops it always. Mesa also stores a bound
  `step` wrapper on the instance, a reference cycle, so a model is freed only by the cycle
  collector: `run_sweep` calls `release()` after every run and runs full collections paced
  to cost at most a tenth of the time (`GarbagePacer`).
- Torch threads: run one process per core and one torch thread per process. `MarketModel`
  sets one torch thread in child processes (Mesa's pool included); `run_sweep` pins one torch
  thread and one BLAS thread around every run in any process (see Determinism).
- Data indexing: Mesa increments `model.steps` before calling `step`, and `MarketModel`
  collects at creation (round 0) and after every round, so collection `k` is round `k` and
  a run of R rounds holds R + 1 collections. `batch_run` reports the collections
  `range(0, model.steps, data_collection_period)` plus `model.steps - 1`, labelled `Step`.
  With the default `data_collection_period=-1` a run yields the rows of round R - 1 only
  (labelled `Step` R - 1), not the final state; with `data_collection_period=1` it yields
  rounds 0 .. R - 1; the final round R is never reported. Its loop
  `while model.running and model.steps <= max_steps` runs `max_steps + 1` rounds when
  `max_steps` < `rounds`. Rows are per participant (the model has agent reporters), so
  model-level values repeat on every row of a step. A population (a list of groups) is itself
  iterable: pass it as `"population": [groups]`. All `iterations` of a parameter set share
  its `seed`: vary `seed` as a parameter instead. For the final round, use `run_sweep` or
  `MarketModel.model_frame()`.

Real sweeps: `run_sweep`
------------------------
A `SweepSpec` is a set of `MarketConfig` fields common to all runs (`base`), a `grid` (the
cartesian product of value lists, first key varying slowest) or an explicit list of parameter
sets (`runs`), and a number of `replicates`. Parameter set `i`, replicate `j` runs with the seed
of `numpy.random.SeedSequence(seed).spawn(n_sets)[i].spawn(replicates)[j]` (the spawn key
`(i, j)`), reduced to 63 bits: a run's seed depends only on the master seed and its position,
so adding replicates or appending parameter sets keeps the existing runs' seeds. With
`common_seeds = true` every parameter set uses the seeds of set 0 (common random numbers:
replicate `j` of every set sees the same partition, initial model and minibatches, so the
sets differ only by their parameters). Every run
executes exactly `rounds` rounds (fewer only if the market stops, when fewer than two
participants remain).

The sweep returns one tidy frame: a row per run and round (round 0 is the initial state) with
the columns `run_id, point, replicate, seed`, one column per swept parameter (dotted names for
nested fields, e.g. `mechanism_params.lam`; a parameter named like a data column gets the
suffix `_param`; lists and tables as JSON text; empty where a set leaves a nested field to
its mechanism's default), then the model's columns. With `agents=True`
the per-participant data comes along in the same shape.

Determinism: results are identical whatever the executor (serial, process pool, Ray). Thread
counts change the last bits of reductions: torch's parallel sum of 4M floats differs by 2.4e-4
between one and two threads, and numpy's OpenBLAS (used by the reputation's cosines) gave
scores differing by 5.6e-17 between one thread (what Ray workers get) and two (a local
process on two cores). A tie or threshold can turn such a bit into a different market, so
every run uses one torch thread and one BLAS/OpenMP thread (`single_threaded`), restoring the
caller's settings afterwards; one thread per process is also the fastest way to fill cores.

Output folder: `manifest.json` (the spec, written first), `runs/<run_id>.npz` (one result per
finished run, written atomically as it completes: data only, no pickle),
`failures/<run_id>.json` (error, traceback and parameters of a run that raised) and, at the
end, `rounds.csv`, `agents.csv` (with `agents=True`) and `failures.csv`. `resume=True` keeps
every valid result and runs the rest (a corrupt or partial file is run again, and so is a
failed run); a spec differing from the manifest is refused.

SWEEP.toml
----------
::

    [sweep]                  # all optional
    replicates = 2           # runs per parameter set (default 1)
    seed = 0                 # master seed (default 0)
    rounds = 3               # rounds of every run (or set rounds in [base] or per set)
    common_seeds = false     # true: replicate j of every parameter set shares one seed

    [base]                   # MarketConfig fields shared by every run (not seed)
    dataset = "mnist1d"
    n_participants = 6
    [[base.population]]
    role = "trader"
    count = 6

    [grid]                   # value lists; all combinations are run
    mechanism = ["ipfl", "ipfl-exact"]
    mechanism_params.lam = [0.5, 1.0]   # nested fields by dotted key

    # or, instead of [grid], explicit parameter sets; a field a set omits keeps its base
    # value, and a table (mechanism_params = {lam = 2.0}) updates the base table:
    # [[runs]]
    # mechanism = "fedavg"
    # [[runs]]
    # mechanism_params = {lam = 2.0}

Unknown keys, empty lists, a seed outside `[sweep]` and bad `MarketConfig` values are all
reported at once as a `ConfigError`, each message naming the parameter sets it concerns.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from models import checkpoint
from models.config import ConfigError, MarketConfig, read_toml

log = logging.getLogger(__name__)

FORMAT = "modelmarket-sweep"
RUN_KIND = "modelmarket-sweep-run"
VERSION = 1
MANIFEST = "manifest.json"
RUNS_DIR = "runs"
FAILURES_DIR = "failures"
SWEEP_KEYS = ("replicates", "seed", "rounds", "common_seeds")
SECTIONS = ("sweep", "base", "grid", "runs")
RUN_COLUMNS = ("run_id", "point", "replicate", "seed")


class SweepError(ValueError):
    """An output folder that cannot hold or resume this sweep."""


# the specification --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its position, seed, swept parameters and full configuration."""

    index: int
    run_id: str
    point: int
    replicate: int
    seed: int
    params: Mapping[str, Any]
    config: Mapping[str, Any]


@dataclass(frozen=True)
class SweepSpec:
    """Parameter sets (a grid or an explicit list) x replicates, on a base configuration.

    Values are kept as plain data (what TOML or JSON holds); every problem is reported at
    once as a `ConfigError`.
    """

    base: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] | None = None
    runs: Sequence[Mapping[str, Any]] | None = None
    replicates: int = 1
    seed: int = 0
    rounds: int | None = None
    common_seeds: bool = False

    def __post_init__(self) -> None:
        for name in ("base", "grid", "runs"):
            object.__setattr__(self, name, _normalise_section(name, getattr(self, name)))
        problems = _structure_problems(self)
        if not problems:
            problems = _config_problems(self)
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """Build from the SWEEP.toml layout: `sweep`, `base`, `grid` or `runs`."""
        if not isinstance(data, Mapping):
            raise ConfigError([f"sweep spec={data!r}: allowed a table"])
        problems = [f"{key}: unknown section (known: {', '.join(SECTIONS)})"
                    for key in data if key not in SECTIONS]
        head = data.get("sweep", {})
        if not isinstance(head, Mapping):
            problems.append(f"sweep={head!r}: allowed a table with {', '.join(SWEEP_KEYS)}")
            head = {}
        problems += [f"sweep.{key}: unknown key (known: {', '.join(SWEEP_KEYS)})"
                     for key in head if key not in SWEEP_KEYS]
        try:
            spec = cls(base=data.get("base", {}), grid=data.get("grid"), runs=data.get("runs"),
                       **{k: head[k] for k in SWEEP_KEYS if k in head})
        except ConfigError as exc:
            raise ConfigError(problems + exc.problems) from None
        if problems:
            raise ConfigError(problems)
        return spec

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        """Load a SWEEP.toml file; a missing file or bad TOML is a `ConfigError`."""
        return cls.from_dict(read_toml(path, "sweep file"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the SWEEP.toml layout (the inverse of `from_dict`)."""
        head = {"replicates": self.replicates, "seed": self.seed}
        if self.common_seeds:
            head["common_seeds"] = True
        if self.rounds is not None:
            head["rounds"] = self.rounds
        out: dict[str, Any] = {"sweep": head, "base": dict(self.base)}
        if self.grid is not None:
            out["grid"] = {k: list(v) for k, v in self.grid.items()}
        if self.runs is not None:
            out["runs"] = [dict(r) for r in self.runs]
        return out

    @property
    def param_names(self) -> list[str]:
        """The swept parameters, in spec order."""
        if self.grid is not None:
            return list(self.grid)
        names: dict[str, None] = {}
        for params in self.runs or ():
            names.update(dict.fromkeys(params))
        return list(names)

    def points(self) -> list[dict[str, Any]]:
        """The parameter sets: grid combinations (first key slowest) or the explicit list."""
        if self.grid is not None:
            return grid_points(self.grid)
        if self.runs is not None:
            return [dict(r) for r in self.runs]
        return [{}]

    def expand(self) -> list[RunSpec]:
        """Every run, parameter set by parameter set, replicates innermost."""
        names = self.param_names
        runs = []
        for point, params in enumerate(self.points()):
            config = MarketConfig.from_dict(point_config(self.base, params, self.rounds))
            config_data = config.to_dict()
            values = {name: _lookup(config_data, name) for name in names}
            for replicate in range(self.replicates):
                seed = run_seed(self.seed, 0 if self.common_seeds else point, replicate)
                runs.append(RunSpec(
                    index=len(runs), run_id=run_id(point, replicate), point=point,
                    replicate=replicate, seed=seed, params=values,
                    config={**config_data, "seed": seed}))
        return runs


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of a grid, first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def run_seed(master: int, point: int, replicate: int) -> int:
    """Seed of run (point, replicate): `SeedSequence(master)` spawn key (point, replicate)."""
    sequence = np.random.SeedSequence(master, spawn_key=(point, replicate))
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def run_id(point: int, replicate: int) -> str:
    """File-name-safe identifier that sorts in run order."""
    return f"p{point:04d}-r{replicate:03d}"


def point_config(base: Mapping[str, Any], params: Mapping[str, Any],
                 rounds: int | None) -> dict[str, Any]:
    """Configuration data of one parameter set: base, then `rounds`, then the parameters."""
    config = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    if rounds is not None:
        config["rounds"] = rounds
    for key, value in params.items():
        _assign(config, key, value)
    return config


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if not rest:
        data[head] = value
        return
    nested = dict(data.get(head) or {})
    _assign(nested, rest, value)
    data[head] = nested


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    head, _, rest = key.partition(".")
    value = data.get(head)
    return _lookup(value, rest) if rest and isinstance(value, Mapping) else value


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables become dotted keys (TOML's `a.b = x` is the table `a = {b = x}`)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _plain(value: Any) -> Any:
    """JSON-like copy: dataclasses (e.g. population groups) become tables, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalise_section(name: str, value: Any) -> Any:
    """Plain data; grid values and parameter sets with dotted keys for nested fields."""
    if value is None:
        return None
    plain = _plain(value)
    if name == "grid" and isinstance(plain, dict):
        return _flatten(plain)
    if name == "runs" and isinstance(plain, list):
        return [_flatten(p) if isinstance(p, dict) else p for p in plain]
    return plain


def _config_fields() -> dict[str, bool]:
    """MarketConfig field names -> whether the field is a table (takes dotted keys)."""
    out = {}
    for f in dataclasses.fields(MarketConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        out[f.name] = isinstance(default, Mapping)
    return out


def _key_problems(where: str, key: str, fields: dict[str, bool]) -> list[str]:
    head, dot, _ = key.partition(".")
    if head == "seed":
        return [f"{where}.seed: run seeds derive from sweep.seed; remove it here"]
    if head not in fields:
        return [f"{where}.{key}: unknown field (known: {', '.join(sorted(fields))})"]
    if dot and not fields[head]:
        return [f"{where}.{key}: {head} is not a table, a dotted key cannot reach into it"]
    return []


def _structure_problems(spec: SweepSpec) -> list[str]:
    """Problems of the spec's shape: counts, seeds, sections and their keys."""
    problems = []
    if not _is_int(spec.replicates) or spec.replicates < 1:
        problems.append(f"sweep.replicates={spec.replicates!r}: allowed an integer >= 1")
    if not _is_int(spec.seed) or spec.seed < 0:
        problems.append(f"sweep.seed={spec.seed!r}: allowed an integer >= 0")
    if spec.rounds is not None and (not _is_int(spec.rounds) or spec.rounds < 1):
        problems.append(f"sweep.rounds={spec.rounds!r}: allowed an integer >= 1")
    if not isinstance(spec.common_seeds, bool):
        problems.append(f"sweep.common_seeds={spec.common_seeds!r}: allowed true or false")
    fields = _config_fields()
    if not isinstance(spec.base, Mapping):
        problems.append(f"base={spec.base!r}: allowed a table of MarketConfig fields")
    else:
        problems += [p for k in spec.base for p in _key_problems("base", k, fields)]
    if spec.grid is not None and spec.runs is not None:
        problems.append("grid and runs: give one of them, not both")
    if spec.grid is not None:
        problems += _grid_problems(spec.grid, fields)
    if spec.runs is not None:
        problems += _runs_problems(spec.runs, fields)
    swept = set(spec.param_names) if not problems else set()
    if spec.rounds is not None and isinstance(spec.base, Mapping) \
            and ("rounds" in spec.base or "rounds" in swept):
        problems.append("sweep.rounds: rounds is also set in base or per parameter set; "
                        "give it in one place")
    return problems


def _grid_problems(grid: Any, fields: dict[str, bool]) -> list[str]:
    if not isinstance(grid, Mapping) or not grid:
        return [f"grid={grid!r}: allowed a non-empty table of value lists"]
    problems = []
    for key, values in grid.items():
        problems += _key_problems("grid", key, fields)
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{key}={values!r}: allowed a non-empty list of values")
    return problems


def _runs_problems(runs: Any, fields: dict[str, bool]) -> list[str]:
    if not isinstance(runs, list) or not runs:
        return [f"runs={runs!r}: allowed a non-empty list of tables"]
    problems = []
    for k, params in enumerate(runs):
        if not isinstance(params, Mapping):
            problems.append(f"runs[{k}]={params!r}: allowed a table of MarketConfig fields")
            continue
        problems += [p for key in params for p in _key_problems(f"runs[{k}]", key, fields)]
    return problems


def _config_problems(spec: SweepSpec) -> list[str]:
    """MarketConfig problems of every parameter set, each naming the sets it concerns."""
    where: dict[str, list[int]] = {}
    points = spec.points()
    for k, params in enumerate(points):
        try:
            MarketConfig.from_dict(point_config(spec.base, params, spec.rounds))
        except ConfigError as exc:
            for problem in exc.problems:
                where.setdefault(problem, []).append(k)
    out = []
    for problem, sets in where.items():
        if len(sets) == len(points):
            out.append(problem if len(points) == 1 else f"{problem} (every parameter set)")
            continue
        shown = "; ".join(f"{k}: {_describe(points[k])}" for k in sets[:3])
        more = f"; and {len(sets) - 3} more" if len(sets) > 3 else ""
        out.append(f"{problem} (parameter set {shown}{more})")
    return out


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# one run --------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """The outcome of one run: its data as column arrays, or the error it raised."""

    run: RunSpec
    model: dict[str, np.ndarray] | None = None
    agents: dict[str, np.ndarray] | None = None
    error: str | None = None
    traceback: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run a block with one torch thread and one BLAS/OpenMP thread, then restore the
    caller's settings (thread counts change the last bits of reductions)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def execute_run(run: RunSpec, agents: bool = False) -> RunRecord:
    """Build the market, step it `rounds` times, return its data; an exception is recorded."""
    from models.market import MarketModel

    start = time.perf_counter()
    config = MarketConfig.from_dict(run.config)
    model = None
    try:
        with single_threaded():
            model = MarketModel(config)
            for _ in range(config.rounds):
                if not model.running:
                    break
                model.step()
            return RunRecord(run, model=frame_arrays(model.model_frame()),
                             agents=frame_arrays(model.agent_frame()) if agents else None,
                             elapsed=time.perf_counter() - start)
    except Exception as exc:
        return RunRecord(run, error=f"{type(exc).__name__}: {exc}",
                         traceback=traceback.format_exc(), elapsed=time.perf_counter() - start)
    finally:
        if model is not None:
            model.release()
        model = None
        forget_models(config)
        _GARBAGE.collect_if_due()


def forget_models(config: MarketConfig) -> None:
    """Drop Mesa's class-level references to models built from `config` (a constructor
    that raised after creating agents leaves one behind, out of reach of `release`)."""
    import mesa

    for model in [m for m in mesa.Agent._ids if getattr(m, "config", None) is config]:
        mesa.Agent._ids.pop(model, None)


class GarbagePacer:
    """Full garbage collections paced to take at most `share` of the wall time.

    A finished model is freed only by the cycle collector (Mesa stores a bound `step` wrapper
    on the instance), and a full collection costs 0.1-0.3 s in a process that imported torch:
    collecting after every run would dominate small runs, never collecting lets released
    models pile up between the interpreter's rare full collections.
    """

    def __init__(self, share: float = 0.1):
        self.share = share
        self._cost = 0.0
        self._last = -float("inf")

    def collect_if_due(self) -> bool:
        now = time.perf_counter()
        if now - self._last < self._cost / self.share:
            return False
        gc.collect()
        self._last = time.perf_counter()
        self._cost = self._last - now
        return True


_GARBAGE = GarbagePacer()


def frame_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns as plain numpy arrays (text as fixed-width unicode: storable without pickle)."""
    out = {}
    for name, column in frame.items():
        if column.dtype.kind in "biuf":
            out[str(name)] = column.to_numpy()
        else:
            out[str(name)] = np.asarray(column.astype(str).to_list(), dtype=str)
    return out


def arrays_frame(arrays: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Inverse of `frame_arrays`."""
    return pd.DataFrame({name: (values.tolist() if values.dtype.kind == "U" else values)
                         for name, values in arrays.items()})


# files ----------------------------------------------------------------------------------------
def run_path(out: Path, run: RunSpec) -> Path:
    return out / RUNS_DIR / f"{run.run_id}.npz"


def failure_path(out: Path, run: RunSpec) -> Path:
    return out / FAILURES_DIR / f"{run.run_id}.json"


def _run_meta(run: RunSpec) -> dict[str, Any]:
    return {"run_id": run.run_id, "point": run.point, "replicate": run.replicate,
            "seed": run.seed, "params": dict(run.params), "config": dict(run.config)}


def save_record(out: Path, record: RunRecord) -> Path:
    """Write a finished run atomically (data only: an npz archive with JSON metadata)."""
    path = run_path(out, record.run)
    checkpoint.save(path, {
        "kind": RUN_KIND, "version": VERSION, "run": _run_meta(record.run),
        "elapsed": record.elapsed, "model": record.model, "agents": record.agents,
        "columns": {"model": list(record.model or {}), "agents": list(record.agents or {})}})
    return path


def load_record(out: Path, run: RunSpec, agents: bool) -> RunRecord | None:
    """The stored result of `run`, or None when missing, unreadable or not this run's."""
    path = run_path(out, run)
    if not path.exists():
        return None
    try:
        state = checkpoint.load(path)
        ok = (state.get("kind") == RUN_KIND and state.get("version") == VERSION
              and _canonical(state["run"]) == _canonical(_run_meta(run)))
        model = _ordered(state["model"], state["columns"]["model"])
        rows = _valid_rows(model)
        part = _ordered(state["agents"], state["columns"]["agents"]) if agents else None
        ok = ok and rows > 0 and (not agents or _valid_rows(part) > 0)
    except (checkpoint.CheckpointError, KeyError, TypeError, AttributeError) as exc:
        log.warning("run %s: unreadable result %s (%s); running it again", run.run_id, path, exc)
        return None
    if not ok:
        log.warning("run %s: %s holds another or incomplete run; running it again",
                    run.run_id, path)
        return None
    return RunRecord(run, model=model, agents=part, elapsed=float(state.get("elapsed", 0.0)))


def _ordered(arrays: Any, columns: list[str]) -> dict[str, np.ndarray]:
    return {name: arrays[name] for name in columns}


def _valid_rows(arrays: dict[str, np.ndarray] | None) -> int:
    """Row count of equally long 1-d columns that include `round`; 0 if malformed."""
    if not arrays or "round" not in arrays:
        return 0
    shapes = {a.shape if isinstance(a, np.ndarray) else None for a in arrays.values()}
    if len(shapes) != 1:
        return 0
    (shape,) = shapes
    return shape[0] if shape is not None and len(shape) == 1 else 0


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Atomic CSV write."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _canonical(data: Any) -> str:
    return json.dumps(_plain(data), sort_keys=True)


def _manifest(spec: SweepSpec, agents: bool, runs: list[RunSpec]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(), "agents": agents,
            "runs": [{k: v for k, v in _run_meta(r).items() if k != "config"} for r in runs]}


def prepare_folder(out: Path, spec: SweepSpec, agents: bool, runs: list[RunSpec],
                   resume: bool) -> None:
    """Write the manifest of a new sweep, or check that `out` holds this very sweep."""
    path = out / MANIFEST
    if path.exists():
        if not resume:
            raise SweepError(f"{out} already holds a sweep ({MANIFEST}); pass resume=True "
                             "(--resume) to continue it, or choose another folder")
        _check_manifest(path, _manifest(spec, agents, runs))
        for stale in (out / RUNS_DIR).glob("*.tmp"):
            stale.unlink(missing_ok=True)
        return
    if resume:
        log.info("%s holds no sweep yet; starting it", out)
    write_json(path, _manifest(spec, agents, runs))


def _check_manifest(path: Path, expected: dict[str, Any]) -> None:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path} is not a readable sweep manifest ({exc})") from exc
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise SweepError(f"{path} is not a modelmarket sweep manifest")
    if saved.get("version") != VERSION:
        raise SweepError(f"{path}: sweep format version {saved.get('version')!r} is not "
                         f"supported (this release reads version {VERSION})")
    changed = [key for key in ("spec", "agents")
               if _canonical(saved.get(key)) != _canonical(expected[key])]
    if "spec" in changed:
        old, new = saved.get("spec") or {}, expected["spec"]
        changed = [f"spec.{k}" for k in SECTIONS
                   if _canonical(old.get(k)) != _canonical(new.get(k))] + changed[1:]
    if changed:
        raise SweepError(f"cannot resume: the sweep differs from the one in {path.parent} "
                         f"(changed: {', '.join(changed)}); use the original spec or a new "
                         "folder")


# executors ------------------------------------------------------------------------------------
class SerialExecutor(Executor):
    """Runs each submitted call at once, in this process (the default)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _init_worker() -> None:
    """One torch thread per worker; the worker exits when the sweep process dies."""
    import torch

    torch.set_num_threads(1)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    """Block until the sentinel of the parent process fires, then leave at once."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A local pool of `workers` spawned processes with one torch thread each."""
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers={workers!r}: allowed an integer >= 1")
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                               mp_context=multiprocessing.get_context("spawn"))


class RayExecutor(Executor):
    """`concurrent.futures` adapter over Ray tasks (`num_cpus=1` per task by default).

    Connects to the cluster at `address` (e.g. "auto", "ray://head:10001"), or starts a
    local Ray with `num_cpus` CPUs. Ray is started and shut down here only if it was not
    already running. The cluster's workers must be able to import this package.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 task_cpus: float = 1.0):
        import ray

        self._ray = ray
        self._task_cpus = task_cpus
        self._remote: dict[Callable[..., Any], Any] = {}
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, logging_level=logging.WARNING)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=self._task_cpus)(fn)
        return self._remote[fn].remote(*args, **kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def make_executor(workers: int | None = None, ray: bool = False,
                  ray_address: str | None = None, ray_cpus: int | None = None) -> Executor:
    """Serial (default), a process pool (`workers`), or Ray (`ray` or `ray_address`)."""
    if workers is not None and (ray or ray_address):
        raise ValueError(f"workers={workers!r} and ray: choose one executor")
    if ray or ray_address:
        return RayExecutor(ray_address, num_cpus=ray_cpus)
    if workers is not None:
        return process_pool(workers)
    return SerialExecutor()


# the runner -----------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Tidy results of a sweep.

    `frame`: one row per run and round; `agents`: one row per run, round and participant
    (with `agents=True`); `failures`: one row per run that raised; `runs`: one row per run
    with its status (`ok`, `resumed` or `failed`) and time in seconds.
    """

    frame: pd.DataFrame
    agents: pd.DataFrame | None
    failures: pd.DataFrame
    runs: pd.DataFrame
    out: Path | None = None


def run_sweep(spec: SweepSpec, out: str | Path | None = None, *,
              executor: Executor | None = None, workers: int | None = None,
              ray: bool = False, ray_address: str | None = None, resume: bool = False,
              agents: bool = False, progress: bool = True) -> SweepResult:
    """Run every run of `spec` and return the tidy results.

    With `out`, each finished run is written there as it completes, and `resume=True` skips
    the runs already stored. `executor` is any `concurrent.futures.Executor` (kept open);
    otherwise one is made from `workers` / `ray` / `ray_address` and shut down at the end.
    """
    if executor is not None and (workers is not None or ray or ray_address):
        raise ValueError("executor: give an executor or workers / ray / ray_address, not both")
    runs = spec.expand()
    folder = Path(out) if out is not None else None
    owned = executor is None
    executor = executor or make_executor(workers, ray, ray_address)
    done: dict[int, RunRecord] = {}
    if folder is not None:
        try:
            prepare_folder(folder, spec, agents, runs, resume)
        except BaseException:
            if owned:
                executor.shutdown(wait=False, cancel_futures=True)
            raise
        if resume:
            done = {r.index: rec for r in runs if (rec := load_record(folder, r, agents))}
            log.info("resuming %s: %d of %d runs already done", folder, len(done), len(runs))
    resumed = set(done)
    waiting = [r for r in runs if r.index not in done]
    bar = tqdm(total=len(runs), initial=len(done), desc="sweep", unit="run",
               disable=not progress)
    failed = 0

    def handle(record: RunRecord) -> None:
        nonlocal failed
        done[record.run.index] = record
        if record.ok:
            if folder is not None:
                save_record(folder, record)
                failure_path(folder, record.run).unlink(missing_ok=True)
        else:
            failed += 1
            log.warning("run %s failed: %s", record.run.run_id, record.error)
            if folder is not None:
                write_json(failure_path(folder, record.run), _failure_row(record))
        bar.set_postfix(done=len(done) - failed, failed=failed, refresh=False)
        bar.update()

    try:
        _drive(executor, waiting, agents, handle)
    finally:
        bar.close()
        if owned:
            executor.shutdown(wait=True, cancel_futures=True)
    result = collect(runs, done, resumed, spec.param_names, agents, folder)
    if folder is not None:
        write_outputs(folder, result)
    return result


def _drive(executor: Executor, waiting: list[RunSpec], agents: bool,
           handle: Callable[[RunRecord], None]) -> None:
    """Submit every run, handling each result as soon as it is done (a synchronous executor
    finishes a run at submission, so its result is written before the next run starts)."""
    pending: dict[Future, RunSpec] = {}
    for run in waiting:
        future = executor.submit(execute_run, run, agents)
        if future.done():
            handle(_outcome(future, run))
        else:
            pending[future] = run
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            handle(_outcome(future, pending.pop(future)))


def _outcome(future: Future, run: RunSpec) -> RunRecord:
    """The run's record; an executor failure (a crashed worker) is recorded as the error."""
    try:
        return future.result()
    except Exception as exc:
        return RunRecord(run, error=f"{type(exc).__name__}: {exc}",
                         traceback="".join(traceback.format_exception(exc)))


def _failure_row(record: RunRecord) -> dict[str, Any]:
    run = record.run
    return {"run_id": run.run_id, "point": run.point, "replicate": run.replicate,
            "seed": run.seed, "params": dict(run.params), "error": record.error,
            "traceback": record.traceback, "elapsed": record.elapsed}


def collect(runs: list[RunSpec], records: Mapping[int, RunRecord], resumed: set[int],
            param_names: list[str], agents: bool, out: Path | None = None) -> SweepResult:
    """Assemble the tidy frames in run order (independent of completion order)."""
    ok = [records[r.index] for r in runs if r.index in records and records[r.index].ok]
    bad = [records[r.index] for r in runs if r.index in records and not records[r.index].ok]
    frame = tidy(ok, param_names, "model")
    agent_frame = tidy(ok, param_names, "agents") if agents else None
    failures = pd.DataFrame(
        [{**_run_columns(rec.run, param_names, ()), "error": rec.error,
          "traceback": rec.traceback} for rec in bad],
        columns=[*RUN_COLUMNS, *param_names, "error", "traceback"])
    status = pd.DataFrame(
        [{**_run_columns(r, param_names, ()),
          "status": _status(records[r.index], r.index in resumed),
          "elapsed": records[r.index].elapsed} for r in runs if r.index in records])
    return SweepResult(frame, agent_frame, failures, status, out)


def _status(record: RunRecord, resumed: bool) -> str:
    if not record.ok:
        return "failed"
    return "resumed" if resumed else "ok"


def tidy(records: list[RunRecord], param_names: list[str], part: str) -> pd.DataFrame:
    """One frame from the records' `model` or `agents` data, run columns and parameters first."""
    frames = []
    for record in records:
        data = arrays_frame(getattr(record, part))
        front = pd.DataFrame([_run_columns(record.run, param_names, data.columns)] * len(data))
        frames.append(pd.concat([front, data], axis=1))
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *param_names])
    return pd.concat(frames, ignore_index=True)


def _run_columns(run: RunSpec, param_names: list[str], data_columns: Any) -> dict[str, Any]:
    columns = {"run_id": run.run_id, "point": run.point, "replicate": run.replicate,
               "seed": run.seed}
    for name in param_names:
        columns[param_column(name, data_columns)] = _cell(run.params.get(name))
    return columns


def param_column(name: str, data_columns: Any = ()) -> str:
    """Column of a swept parameter: its name, plus `_param` if a data column has that name."""
    return f"{name}_param" if name in data_columns or name in RUN_COLUMNS else name


def _cell(value: Any) -> Any:
    """A scalar as is; a list or table as compact JSON text."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def write_outputs(out: Path, result: SweepResult) -> None:
    """The combined CSV tables of a sweep."""
    write_csv(out / "rounds.csv", result.frame)
    if result.agents is not None:
        write_csv(out / "agents.csv", result.agents)
    write_csv(out / "failures.csv", result.failures.drop(columns="traceback"))


def summary(result: SweepResult, param_names: list[str]) -> pd.DataFrame:
    """Final-round means per parameter set (welfare, honest accuracy, trades) and run counts."""
    frame = result.frame
    if frame.empty:
        return pd.DataFrame()
    last = frame.loc[frame.groupby("run_id")["round"].idxmax()]
    keys = ["point", *(f"{n}_param" if f"{n}_param" in frame.columns else n
                       for n in param_names)]
    table = last.groupby(keys, dropna=False).agg(
        runs=("run_id", "count"), rounds=("round", "max"), welfare=("welfare", "mean"),
        honest_accuracy=("honest_accuracy", "mean"), trades=("trades", "mean"))
    return table.reset_index()


# command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of the sweep command."""
    parser.add_argument("spec", metavar="SWEEP.toml", help="sweep specification")
    parser.add_argument("--out", required=True, help="output folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="run on N local processes (one torch thread each)")
    where.add_argument("--ray", action="store_true", help="run on a local Ray")
    where.add_argument("--ray-address", metavar="ADDR",
                       help="run on the Ray cluster at ADDR (e.g. auto, ray://head:10001)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --out and run the rest")
    parser.add_argument("--agents", action="store_true",
                        help="also keep per-participant data (agents.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `sweep` command to a `modelmarket` sub-command parser."""
    parser = subparsers.add_parser(
        "sweep", help="run a parameter sweep (grid or list x replicates)",
        description="Run every parameter set of SWEEP.toml x its replicates and write one "
        "result file per run, then rounds.csv (and agents.csv) to --out.")
    add_arguments(parser)
    parser.set_defaults(func=sweep_command)
    return parser


def sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep, print a summary; exit status 1 when some runs failed."""
    spec = SweepSpec.from_toml(args.spec)
    result = run_sweep(spec, args.out, workers=args.workers, ray=args.ray,
                       ray_address=args.ray_address, resume=args.resume, agents=args.agents,
                       progress=not args.quiet)
    table = summary(result, spec.param_names)
    if not table.empty:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    counts = result.runs["status"].value_counts()
    print(f"\n{len(result.runs)} runs: {counts.get('ok', 0)} run, "
          f"{counts.get('resumed', 0)} resumed, {counts.get('failed', 0)} failed")
    print(f"results in {args.out}/: rounds.csv"
          + (", agents.csv" if args.agents else "") + ", failures.csv, runs/")
    return 1 if counts.get("failed", 0) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m analysis.sweeps SWEEP.toml --out DIR ...`"""
    parser = argparse.ArgumentParser(prog="python -m analysis.sweeps",
                                     description="Run a modelmarket parameter sweep.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return sweep_command(args)
    except (ConfigError, SweepError, ValueError) as exc:
        print(f"modelmarket sweep: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from analysis import sweeps

    sys.exit(sweeps.main())
