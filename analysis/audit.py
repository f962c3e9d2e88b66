"""The ``modelmarket audit`` command: incentive audits of one mechanism on one market, and
the population files it reads.

Population file: the private truth of one market round, audited on the pure market layer.
Either JSON (``.json``), an object with these keys, or NumPy (``.npz``, arrays of the same
names, read with ``allow_pickle=False`` so a file cannot run code):

- ``N``: (m,) true data sizes, > 0
- ``cost``: (m,) true sharing cost per importer, >= 0
- ``K``: (m,) valuations, >= 0 (0: pure seller)
- ``D``: (m, m) dissimilarities 1 - cos in [0, 2], diagonal 0
- ``eligible`` (optional): (m,) booleans, sellers allowed to sell this round
- ``slots`` (optional): (m,) integers, the participant slot of each row

:func:`record_population` writes one from any :class:`MarketModel` after a step (its last
round, true sizes and costs). Without ``--population`` the command records one from a short
market: the default configuration for 3 rounds with the audited mechanism, overridable with
``--set``.

Outputs in ``--out``: population.npz (the audited market), regret.csv, regret_table.csv,
ir.csv, budget.csv, efficiency.csv, brd.csv (one row per start of the best-response
dynamics), brd_history.csv, and the plots misreport_curves.png, regret_heatmap.png,
brd_<start>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

import mechanisms
from analysis import incentives, plots
from analysis.incentives import DEFAULT_FACTORS, DEFAULT_GRID, Population

REQUIRED_KEYS = ("N", "cost", "K", "D")
OPTIONAL_KEYS = ("eligible", "slots")
RECORDING_ROUNDS = 3
BRD_STARTS = ("truthful", "random")


# --- population files ------------------------------------------------------------------
def population_from_model(model) -> Population:
    """The population of a model's last round: true sizes and costs of the participants
    who played it, their valuations, the round's dissimilarities and eligible sellers."""
    last = model.last_outcome
    if "D" not in last:
        raise ValueError("the model has not played a round yet: call model.step() first")
    slots = np.asarray(last["slots"], dtype=np.int64)
    players = [model.participants[s] for s in slots.tolist()]
    return Population(N=np.array([a.true_n for a in players], dtype=np.float64),
                      cost=np.array([a.true_cost for a in players], dtype=np.float64),
                      K=np.asarray(last["K"], dtype=np.float64), D=last["D"],
                      eligible=np.asarray(last["eligible"], dtype=bool), slots=slots)


def record_population(model, path: str | Path) -> Path:
    """Write the population of a model's last round to `path` (.json or .npz)."""
    return save_population(population_from_model(model), path)


def save_population(population: Population, path: str | Path) -> Path:
    """Write a population file (format in the module docstring), atomically."""
    path = Path(path)
    arrays = {"N": population.N, "cost": population.cost, "K": population.K,
              "D": population.D}
    for key in OPTIONAL_KEYS:
        if getattr(population, key) is not None:
            arrays[key] = getattr(population, key)
    if path.suffix not in (".json", ".npz"):
        raise ValueError(f"population file {path}: suffix {path.suffix!r} is invalid: "
                         "allowed '.json' or '.npz'")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            if path.suffix == ".json":
                text = json.dumps({k: v.tolist() for k, v in arrays.items()}, indent=1)
                handle.write(text.encode())
            else:
                np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_population(path: str | Path) -> Population:
    """Read a population file (.json or .npz); a malformed file is a ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"population file {path} does not exist")
    try:
        data = _read_arrays(path)
    except (ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"population file {path} cannot be read: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in data]
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        raise ValueError(f"population file {path}: missing keys {missing}, unknown keys "
                         f"{unknown}; allowed {list(REQUIRED_KEYS)} + optional "
                         f"{list(OPTIONAL_KEYS)}")
    try:
        return Population(**data)
    except ValueError as exc:
        raise ValueError(f"population file {path}: {exc}") from exc


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object with arrays N, cost, K and D")
        return {k: np.asarray(v) for k, v in raw.items()}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    raise ValueError(f"suffix {path.suffix!r} is invalid: allowed '.json' or '.npz'")


# --- the audit ---------------------------------------------------------------------------
def run_audit(mechanism, population: Population, out: str | Path, *,
              factors: Sequence[float] = DEFAULT_FACTORS, grid: Sequence[float] = DEFAULT_GRID,
              max_iter: int = 20, seed: int = 0, brd: bool = True,
              progress: bool = False) -> dict[str, Any]:
    """Run every pure-layer audit of `mechanism` on `population`, write the tables and
    plots into `out` (see the module docstring) and return the summary figures."""
    if brd:
        grid = incentives.check_dynamics(grid, max_iter)
    market = (*population.arrays,)
    where = {"eligible": population.eligible}
    name = getattr(mechanism, "name", type(mechanism).__name__)
    reg = incentives.regret(mechanism, *market, factors, progress=progress, **where)
    table = incentives.regret_table(reg)
    ir = incentives.ir_violations(mechanism, *market, **where)
    money = incentives.budget(mechanism, *market, **where)
    eff = incentives.efficiency(mechanism, *market, **where)
    tables = {"regret": _with_slots(reg, population),
              "regret_table": _with_slots(table, population),
              "ir": _with_slots(ir, population), "budget": pd.DataFrame([money]),
              "efficiency": pd.DataFrame([eff])}
    figures = {
        "misreport_curves": incentives.misreport_curves(reg, title=f"{name}: misreport curves"),
        "regret_heatmap": incentives.regret_heatmap(reg, title=f"{name}: gain from lying"),
    }
    summary: dict[str, Any] = {
        "mechanism": name, "participants": population.m, "epsilon": incentives.epsilon(reg),
        "worst_liar": _worst_liars(table), "ir_violations": int(ir["violation"].sum()),
        "ir_worst_shortfall": float(ir["shortfall"].max()) if len(ir) else 0.0,
        "budget": money, "efficiency": eff, "brd": {},
    }
    if brd:
        rows, histories = [], []
        for start in BRD_STARTS:
            result = incentives.best_response_dynamics(
                mechanism, *market, grid=grid, start=start, max_iter=max_iter, seed=seed,
                progress=progress, **where)
            eps, _ = incentives.epsilon_nash(mechanism, *market, result.profile, grid, **where)
            row = {"start": start, **result.summary(), "epsilon_nash": eps}
            rows.append(row)
            histories.append(result.history.assign(start=start))
            summary["brd"][start] = row
            figures[f"brd_{start}"] = incentives.brd_trajectory(
                result, title=f"{name}: best responses from a {start} start")
        tables["brd"] = pd.DataFrame(rows)
        tables["brd_history"] = pd.concat(histories, ignore_index=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_population(population, out / "population.npz")
    for key, frame in tables.items():
        frame.to_csv(out / f"{key}.csv", index=False)
    for key, fig in figures.items():
        plots.save(fig, out / f"{key}.png")
    summary["files"] = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    return summary


def _with_slots(frame: pd.DataFrame, population: Population) -> pd.DataFrame:
    """Add the participants' slots next to their row indices when the population knows them."""
    if population.slots is None:
        return frame
    frame = frame.copy()
    frame.insert(1, "slot", population.slots[frame["participant"].to_numpy()])
    return frame


def _worst_liars(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per dimension, the participant and factor of the largest gain from lying."""
    out = {}
    for dim, frame in table.groupby("dimension"):
        row = frame.sort_values("gain", ascending=False, kind="stable").iloc[0]
        out[str(dim)] = {"participant": int(row["participant"]),
                         "factor": float(row["best_factor"]), "gain": float(row["gain"])}
    return out


def format_summary(summary: dict[str, Any], out: str | Path) -> str:
    """The audit's summary as printed by the command."""
    eps, liars = summary["epsilon"], summary["worst_liar"]
    lines = [f"audit of {summary['mechanism']!r} on {summary['participants']} participants"]
    parts = []
    for dim, label in (("n", "N"), ("cost", "cost")):
        text = f"epsilon {label} = {_num(eps[dim])}"
        if dim in liars and liars[dim]["gain"] > 0:
            text += f" (participant {liars[dim]['participant']} at x{liars[dim]['factor']:g})"
        parts.append(text)
    lines.append("truthfulness: " + ", ".join(parts))
    lines.append(f"individual rationality: {summary['ir_violations']} of "
                 f"{summary['participants']} truthful participants lose money "
                 f"(worst shortfall {_num(summary['ir_worst_shortfall'])})")
    money = summary["budget"]
    state = "balanced" if money["balanced"] else (
        "surplus" if money["platform_surplus"] > 0 else "deficit")
    lines.append(f"budget: payments sum {_num(money['payments_sum'])}, platform surplus "
                 f"{_num(money['platform_surplus'])} ({state})")
    eff = summary["efficiency"]
    lines.append(f"welfare ratio: {_num(eff['ratio'])} (market welfare, lam = {eff['lam']:g}: "
                 f"{_num(eff['welfare'])} of {_num(eff['optimum'])}); social welfare ratio "
                 f"{_num(eff['social_ratio'])}")
    for start, row in summary["brd"].items():
        state = (f"converged after {row['iterations']} sweeps" if row["converged"] else
                 f"cycle after {row['iterations']} sweeps" if row["cycle"] else
                 f"not converged in {row['iterations']} sweeps")
        lines.append(f"best responses from {start}: {state}, welfare {_num(row['welfare'])} "
                     f"(truthful {_num(row['truthful_welfare'])}, optimum "
                     f"{_num(row['optimal_welfare'])}), price of anarchy "
                     f"{_num(row['price_of_anarchy'])}, epsilon-Nash {_num(row['epsilon_nash'])}")
    lines.append(f"results in {out}/: " + ", ".join(summary["files"]))
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


# --- the command -------------------------------------------------------------------------
def _factor_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r} is invalid: allowed comma-separated numbers > 0, e.g. 0.5,1,2")
    return values


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``audit`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "audit", help="audit a mechanism's incentives on one market",
        description="Misreport regret, individual rationality, budget balance, efficiency "
        "and best-response dynamics of one mechanism on one market (a population file, or "
        f"the last round of a {RECORDING_ROUNDS}-round default market).")
    parser.add_argument("--mechanism", required=True, choices=mechanisms.available(),
                        help="mechanism preset to audit")
    parser.add_argument("--population", metavar="FILE",
                        help="population file (.json or .npz with N, cost, K, D and optional "
                        "eligible, slots); default: record one from a short market")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the recording market (without "
                        "--population), e.g. --set n_participants=20 --set rounds=5")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="mechanism parameter, e.g. --param lam=2 (also used by the "
                        "recording market)")
    parser.add_argument("--factors", type=_factor_list, default=DEFAULT_FACTORS,
                        help="misreport factors, comma-separated (default %(default)s)")
    parser.add_argument("--grid", type=_factor_list, default=DEFAULT_GRID,
                        help="report grid of the best-response dynamics (default %(default)s)")
    parser.add_argument("--max-iter", type=int, default=20,
                        help="most best-response sweeps (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random start of the best-response dynamics")
    parser.add_argument("--no-brd", action="store_true", help="skip best-response dynamics")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=audit_command)
    return parser


def audit_command(args: argparse.Namespace) -> int:
    """Run the audit described by parsed ``audit`` arguments and print its summary."""
    from models.config import MarketConfig

    if not args.no_brd:
        incentives.check_dynamics(args.grid, args.max_iter)
    bad = [p for p in args.param if not p.partition("=")[0].strip() or "=" not in p]
    if bad:
        raise ValueError(f"--param {bad[0]!r}: expected KEY=VALUE, e.g. --param lam=2")
    base = MarketConfig(rounds=RECORDING_ROUNDS, mechanism=args.mechanism)
    if args.param:
        base = base.with_overrides([f"mechanism_params.{p}" for p in args.param])
    mechanism = mechanisms.get(args.mechanism, **base.mechanism_params)
    if args.population:
        if args.set:
            raise ValueError("--set configures the recording market; it cannot be combined "
                             "with --population")
        population = load_population(args.population)
    else:
        population = _recorded_population(base.with_overrides(args.set), quiet=args.quiet)
    summary = run_audit(mechanism, population, args.out, factors=args.factors, grid=args.grid,
                        max_iter=args.max_iter, seed=args.seed, brd=not args.no_brd,
                        progress=not args.quiet)
    print(format_summary(summary, args.out))
    return 0


def _recorded_population(cfg, quiet: bool) -> Population:
    """Run a short market and take its last round's population."""
    from models.market import MarketModel

    model = MarketModel(cfg)
    with tqdm(total=cfg.rounds, desc="recording market", unit="round", disable=quiet) as bar:
        while model.running:
            model.step()
            bar.update()
    population = population_from_model(model)
    model.release()
    return population
