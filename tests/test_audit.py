"""Population files and the `audit` command."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from analysis import audit
from analysis.incentives import Population
from models.config import Group, MarketConfig
from models.market import MarketModel


def population(m: int = 5, seed: int = 0) -> Population:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=30) + 0.7 * rng.normal(size=(m, 30))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    D = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    K = np.full(m, 5e5)
    K[-1] = 0.0
    cost = np.ones(m)
    cost[0] = 1e6
    eligible = np.ones(m, dtype=bool)
    eligible[-2] = False
    return Population(N=rng.integers(100, 500, m).astype(float), cost=cost, K=K, D=D,
                      eligible=eligible, slots=np.arange(10, 10 + m))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelmarket")
    audit.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["audit", *argv])


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_population_round_trip(tmp_path, suffix):
    pop = population()
    path = audit.save_population(pop, tmp_path / f"market{suffix}")
    back = audit.load_population(path)
    for key in ("N", "cost", "K", "D", "eligible", "slots"):
        assert np.array_equal(getattr(back, key), getattr(pop, key)), key
    assert back.eligible.dtype == bool
    assert [p.name for p in tmp_path.iterdir()] == [f"market{suffix}"]  # no temporary left


def test_population_without_optional_keys(tmp_path):
    pop = population()
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({k: getattr(pop, k).tolist() for k in ("N", "cost", "K", "D")}))
    back = audit.load_population(path)
    assert back.eligible is None and back.slots is None and back.m == 5


def test_malformed_population_files_are_clear_errors(tmp_path):
    pop = population()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        audit.load_population(tmp_path / "missing.npz")
    missing = tmp_path / "missing_key.json"
    missing.write_text(json.dumps({"N": pop.N.tolist(), "cost": pop.cost.tolist()}))
    with pytest.raises(ValueError, match=r"missing keys \['K', 'D'\]"):
        audit.load_population(missing)
    extra = tmp_path / "extra.npz"
    np.savez(extra, N=pop.N, cost=pop.cost, K=pop.K, D=pop.D, secret=np.ones(2))
    with pytest.raises(ValueError, match="unknown keys"):
        audit.load_population(extra)
    objects = tmp_path / "objects.npz"
    np.savez(objects, N=np.array([{"x": 1}], dtype=object), cost=pop.cost, K=pop.K, D=pop.D)
    with pytest.raises(ValueError, match="objects.npz cannot be read"):
        audit.load_population(objects)
    truncated = tmp_path / "truncated.npz"
    audit.save_population(pop, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated.npz"):
        audit.load_population(truncated)
    bad_range = tmp_path / "bad.json"
    bad_range.write_text(json.dumps({"N": pop.N.tolist(), "cost": pop.cost.tolist(),
                                     "K": (-pop.K).tolist(), "D": pop.D.tolist()}))
    with pytest.raises(ValueError, match=r"bad.json: K\[0\]"):
        audit.load_population(bad_range)
    with pytest.raises(ValueError, match="suffix"):
        audit.save_population(pop, tmp_path / "market.csv")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("N", "abc", "N must hold numbers"),
    ("N", True, "N must hold numbers"),
    ("D", "diagonal", "zero diagonal"),
    ("D", "asymmetric", r"D must be symmetric: D\[0, 1\]"),
])
def test_population_files_with_wrong_values_name_the_field(tmp_path, key, value, message):
    pop = population()
    data = {"N": pop.N.tolist(), "cost": pop.cost.tolist(), "K": pop.K.tolist(),
            "D": pop.D.tolist()}
    if key == "N":
        data["N"] = [value] * pop.m
    else:
        D = pop.D.copy()
        if value == "diagonal":
            np.fill_diagonal(D, 0.5)
        else:
            D[0, 1] += 0.1
        data["D"] = D.tolist()
    path = tmp_path / "market.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        audit.load_population(path)


def test_population_recorded_from_a_model(tmp_path):
    cfg = MarketConfig(dataset="mnist1d", n_samples=2000, rounds=1, local_steps=5,
                       n_participants=5, min_size=20,
                       population=(Group(role="trader", count=3), Group(role="buyer", count=1),
                                   Group(role="seller", strategy="misreport", count=1,
                                         params={"n_factor": 2.0})))
    model = MarketModel(cfg)
    with pytest.raises(ValueError, match="step"):
        audit.population_from_model(model)
    model.step()
    pop = audit.load_population(audit.record_population(model, tmp_path / "round.npz"))
    assert np.array_equal(pop.N, [a.true_n for a in model.participants])  # truth, not reports
    assert np.array_equal(pop.D, model.last_outcome["D"])
    assert np.array_equal(pop.slots, np.arange(5))
    assert pop.K[-1] == 0.0 and pop.cost[3] == cfg.buyer_cost


def test_audit_command_writes_files_and_prints_summary(tmp_path, capsys):
    source = audit.save_population(population(), tmp_path / "market.json")
    out = tmp_path / "audit"
    args = parse(["--mechanism", "vcg", "--population", str(source), "--out", str(out),
                  "--factors", "0.5,1,2", "--grid", "0.5,1,2", "--max-iter", "4",
                  "--param", "lam=0.5", "--quiet"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    for text in ("epsilon N =", "epsilon cost =", "individual rationality:", "budget:",
                 "platform surplus", "welfare ratio:", "best responses from truthful",
                 "best responses from random", "price of anarchy"):
        assert text in printed, text
    expected = {"population.npz", "regret.csv", "regret_table.csv", "ir.csv", "budget.csv",
                "efficiency.csv", "brd.csv", "brd_history.csv", "misreport_curves.png",
                "regret_heatmap.png", "brd_truthful.png", "brd_random.png"}
    assert {p.name for p in out.iterdir()} == expected
    regret = pd.read_csv(out / "regret.csv")
    assert len(regret) == 5 * 2 * 3 and "slot" in regret.columns
    assert regret.loc[regret["dimension"] == "cost", "gain"].max() <= 1e-9  # VCG on cost
    assert pd.read_csv(out / "efficiency.csv")["lam"].item() == 0.5
    assert pd.read_csv(out / "budget.csv")["platform_surplus"].item() < 0
    assert pd.read_csv(out / "brd.csv")["start"].tolist() == ["truthful", "random"]


def test_audit_command_records_a_short_market(tmp_path, capsys):
    out = tmp_path / "derived"
    args = parse(["--mechanism", "ipfl", "--out", str(out), "--no-brd", "--quiet",
                  "--factors", "1,2", "--set", "n_samples=2000", "--set", "n_participants=4",
                  "--set", "local_steps=5", "--set", "rounds=1", "--set",
                  'population=[{role="trader", count=3}, {role="seller", count=1}]'])
    assert args.func(args) == 0
    assert "audit of 'ipfl' on 4 participants" in capsys.readouterr().out
    assert audit.load_population(out / "population.npz").m == 4
    assert not (out / "brd.csv").exists()
    assert pd.read_csv(out / "budget.csv")["platform_surplus"].item() == 0.0


def test_audit_command_rejects_bad_input(tmp_path):
    source = audit.save_population(population(), tmp_path / "market.npz")
    args = parse(["--mechanism", "ipfl", "--population", str(source), "--out", str(tmp_path),
                  "--set", "rounds=2"])
    with pytest.raises(ValueError, match="--set"):
        args.func(args)
    with pytest.raises(SystemExit):
        parse(["--mechanism", "ipfl", "--out", str(tmp_path), "--factors", "0,1"])
    with pytest.raises(SystemExit):
        parse(["--mechanism", "nonsense", "--out", str(tmp_path)])
    out = tmp_path / "never"
    for extra, message in ((["--grid", "0.5,2"], "must contain 1.0"),
                           (["--max-iter", "-1"], "max_iter = -1"),
                           (["--param", "lam"], "--param 'lam': expected KEY=VALUE")):
        args = parse(["--mechanism", "ipfl", "--population", str(source), "--out", str(out),
                      *extra])
        with pytest.raises(ValueError, match=message):
            args.func(args)
        assert not out.exists()  # rejected before any work or output
