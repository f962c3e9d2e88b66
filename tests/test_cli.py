"""The `modelmarket run` command: files, schemas, printed table, errors."""

import pandas as pd

from analysis.cli import main
from models.config import MarketConfig

FAST = ["--set", "rounds=2", "--set", "n_samples=2000", "--set", "local_steps=10",
        "--set", "min_size=20", "--quiet"]


def test_run_writes_the_promised_files_and_schemas(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *FAST[:-1], "--seed", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "ipfl market" in captured.err and "2/2" in captured.err  # the progress bar
    assert "role" in printed and "strategy" in printed and "exit" in printed
    agents = pd.read_csv(out / "agents.csv")
    model = pd.read_csv(out / "model.csv")
    assert {"round", "participant", "role", "strategy", "reported_n", "true_n",
            "reported_cost", "true_cost", "imports", "exports", "paid", "received", "utility",
            "wallet", "reputation", "accuracy", "active"} <= set(agents.columns)
    assert {"round", "welfare", "total_payments", "budget_surplus", "honest_accuracy",
            "active", "trades"} <= set(model.columns)
    assert len(agents) == 3 * 12 and list(model["round"]) == [0, 1, 2]
    for png in ["cumulative_utility", "accuracy", "wallet_flows", "graph"]:
        assert (out / f"{png}.png").stat().st_size > 1000
    used = MarketConfig.from_toml(out / "config.toml")
    assert used.seed == 3 and used.rounds == 2


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(MarketConfig(mechanism="fedavg", rounds=1).to_toml())
    out = tmp_path / "run"
    assert main(["run", "--config", str(cfg), *FAST, "--out", str(out)]) == 0
    used = MarketConfig.from_toml(out / "config.toml")
    assert used.mechanism == "fedavg" and used.rounds == 2  # --set wins over the file


def test_bad_values_exit_with_a_clear_message(tmp_path, capsys):
    assert main(["run", "--set", "rounds=-1", "--set", "mechanism=magic",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "rounds=-1" in err and "mechanism='magic'" in err
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
