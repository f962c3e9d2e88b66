"""Sweeps: specs and seeds, identical results on every executor, crash safety, failures."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mesa
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

from analysis.sweeps import (
    RayExecutor,
    SweepError,
    SweepSpec,
    execute_run,
    main,
    register,
    run_seed,
    run_sweep,
    sweep_command,
)
from models.config import ConfigError, MarketConfig
from models.market import MarketModel

REPO = Path(__file__).resolve().parents[1]
BASE = {"dataset": "mnist1d", "n_samples": 2000, "local_steps": 10, "n_participants": 4,
        "min_size": 20, "population": [{"role": "trader", "count": 3},
                                       {"role": "seller", "count": 1}]}
SPEC = {"sweep": {"replicates": 2, "seed": 11, "rounds": 2}, "base": BASE,
        "grid": {"mechanism": ["ipfl", "fedavg", "local"]}}


def toml_text(spec: dict) -> str:
    """The test spec as SWEEP.toml text (what a user would write)."""
    head = spec["sweep"]
    lines = ["[sweep]", *(f"{k} = {v}" for k, v in head.items()), "", "[base]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in spec["base"].items() if k != "population"]
    for group in spec["base"]["population"]:
        lines += ["", "[[base.population]]", *(f"{k} = {json.dumps(v)}"
                                               for k, v in group.items())]
    lines += ["", "[grid]", *(f"{k} = {json.dumps(v)}" for k, v in spec["grid"].items())]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted serial sweep every other executor and the resume must reproduce."""
    return run_sweep(SweepSpec.from_dict(SPEC), agents=True, progress=False)


# specs and seeds --------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(master=st.integers(0, 2**63), point=st.integers(0, 50), replicate=st.integers(0, 20))
def test_run_seed_is_the_spawned_child_of_the_master_seed(master, point, replicate):
    child = np.random.SeedSequence(master).spawn(point + 1)[point].spawn(replicate + 1)[replicate]
    assert run_seed(master, point, replicate) == int(child.generate_state(1, np.uint64)[0] >> 1)


def test_seeds_depend_only_on_master_seed_and_position():
    small = SweepSpec(base=BASE, grid={"lr": [0.01, 0.02]}, replicates=2, seed=5)
    grown = SweepSpec(base=BASE, grid={"lr": [0.01, 0.02, 0.05]}, replicates=3, seed=5)
    seeds = {(r.point, r.replicate): r.seed for r in grown.expand()}
    assert all(seeds[r.point, r.replicate] == r.seed for r in small.expand())
    assert len(set(seeds.values())) == len(seeds)
    other = SweepSpec(base=BASE, grid={"lr": [0.01, 0.02]}, replicates=2, seed=6)
    assert not {r.seed for r in other.expand()} & {r.seed for r in small.expand()}
    assert all(r.config["seed"] == r.seed for r in small.expand())


def test_grid_expands_in_order_and_dotted_keys_reach_nested_fields():
    spec = SweepSpec.from_dict({"sweep": {"replicates": 2, "rounds": 3},
                                "base": {**BASE, "mechanism_params": {"eta": 4.0}},
                                "grid": {"mechanism": ["ipfl", "vcg"],
                                         "mechanism_params": {"lam": [0.5, 2.0]}}})
    runs = spec.expand()
    assert spec.param_names == ["mechanism", "mechanism_params.lam"]
    assert [r.run_id for r in runs[:3]] == ["p0000-r000", "p0000-r001", "p0001-r000"]
    assert [(r.params["mechanism"], r.params["mechanism_params.lam"]) for r in runs[::2]] == [
        ("ipfl", 0.5), ("ipfl", 2.0), ("vcg", 0.5), ("vcg", 2.0)]
    assert runs[2].config["mechanism_params"] == {"eta": 4.0, "lam": 2.0}
    assert all(r.config["rounds"] == 3 for r in runs)
    assert SweepSpec.from_dict(spec.to_dict()) == spec


def test_explicit_runs_report_every_swept_field_with_its_effective_value():
    spec = SweepSpec(base={**BASE, "lr": 0.05}, runs=[{"mechanism": "fedavg"}, {"lr": 0.02}])
    runs = spec.expand()
    assert spec.param_names == ["mechanism", "lr"]
    assert [(r.params["mechanism"], r.params["lr"]) for r in runs] == [
        ("fedavg", 0.05), ("ipfl", 0.02)]


def test_spec_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        SweepSpec.from_dict({"sweep": {"replicates": 0, "workers": 2}, "extra": {},
                             "base": {**BASE, "seed": 3},
                             "grid": {"lr": [], "colour": ["red"], "seed": [1, 2]}})
    text = str(info.value)
    for expected in ("extra: unknown section", "sweep.workers: unknown key",
                     "sweep.replicates=0: allowed an integer >= 1", "base.seed: run seeds",
                     "grid.lr=[]: allowed a non-empty list", "grid.colour: unknown field",
                     "grid.seed: run seeds"):
        assert expected in text, expected
    with pytest.raises(ConfigError, match="grid and runs: give one"):
        SweepSpec(base=BASE, grid={"lr": [0.1]}, runs=[{"lr": 0.2}])
    with pytest.raises(ConfigError, match="sweep.rounds: rounds is also set"):
        SweepSpec(base={**BASE, "rounds": 2}, rounds=3)


def test_bad_market_values_name_the_parameter_sets_they_concern():
    with pytest.raises(ConfigError) as info:
        SweepSpec(base=BASE, grid={"lr": [0.01, 20.0], "momentum": [0.9, 0.5]})
    (problem,) = info.value.problems
    assert problem.startswith("lr=20.0: allowed a number in (0, 10]")
    assert "parameter set 2: lr=20.0, momentum=0.9; 3: lr=20.0, momentum=0.5" in problem
    with pytest.raises(ConfigError, match=r"mechanism='nope'.*\(every parameter set\)"):
        SweepSpec(base={**BASE, "mechanism": "nope"}, grid={"lr": [0.01, 0.02]})


def test_spec_files_missing_or_not_toml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SweepSpec.from_toml(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\nreplicates = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        SweepSpec.from_toml(bad)


def test_example_sweeps_are_valid():
    for path in sorted((REPO / "examples").glob("sweep*.toml")):
        assert SweepSpec.from_toml(path).expand(), path


# running ----------------------------------------------------------------------------------
def test_runs_execute_exactly_their_rounds_and_match_a_direct_run(reference):
    frame = reference.frame
    assert list(frame.columns[:6]) == ["run_id", "point", "replicate", "seed", "mechanism",
                                       "round"]
    assert frame.groupby("run_id")["round"].apply(list).map(lambda r: r == [0, 1, 2]).all()
    assert frame["run_id"].nunique() == 6 and reference.failures.empty
    run = SweepSpec.from_dict(SPEC).expand()[3]
    model = MarketModel(MarketConfig.from_dict(run.config))
    while model.running:
        model.step()
    mine = frame[frame["run_id"] == run.run_id].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[model.model_frame().columns], model.model_frame())
    agents = reference.agents[reference.agents["run_id"] == run.run_id].reset_index(drop=True)
    pd.testing.assert_frame_equal(agents[model.agent_frame().columns], model.agent_frame())
    model.release()


def test_process_pool_gives_identical_results(reference):
    pooled = run_sweep(SweepSpec.from_dict(SPEC), workers=2, agents=True, progress=False)
    pd.testing.assert_frame_equal(pooled.frame, reference.frame, check_exact=True)
    pd.testing.assert_frame_equal(pooled.agents, reference.agents, check_exact=True)


def test_ray_gives_identical_results(reference):
    executor = RayExecutor(num_cpus=2)
    try:
        result = run_sweep(SweepSpec.from_dict(SPEC), executor=executor, agents=True,
                           progress=False)
    finally:
        executor.shutdown()
    pd.testing.assert_frame_equal(result.frame, reference.frame, check_exact=True)
    pd.testing.assert_frame_equal(result.agents, reference.agents, check_exact=True)


def test_a_ray_cluster_address_runs_the_sweep_there(tmp_path, reference):
    ray = str(Path(sys.executable).with_name("ray"))
    port = 6390 + os.getpid() % 500
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([ray, "start", "--head", "--num-cpus=2", f"--port={port}",
                              "--include-dashboard=false"],
                             env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        spec_file, out = tmp_path / "sweep.toml", tmp_path / "out"
        spec_file.write_text(toml_text(SPEC))
        done = subprocess.run(
            [sys.executable, "-m", "analysis.sweeps", str(spec_file), "--out", str(out),
             "--ray-address", "auto", "--quiet"], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    stored = pd.read_csv(out / "rounds.csv")
    expected = reference.frame.reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[expected.columns], expected, check_dtype=False,
                                  rtol=1e-12)


def test_a_run_is_single_threaded_and_restores_the_callers_settings(monkeypatch):
    seen = []
    original = MarketModel.step

    def spy(model):
        blas = {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
        seen.append((torch.get_num_threads(), blas))
        original(model)

    monkeypatch.setattr(MarketModel, "step", spy)
    run = SweepSpec(base=BASE, rounds=1).expand()[0]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            callers = [(p["filepath"], p["num_threads"]) for p in threadpool_info()]
            assert execute_run(run).ok
            assert torch.get_num_threads() == 2
            assert [(p["filepath"], p["num_threads"]) for p in threadpool_info()] == callers
    finally:
        torch.set_num_threads(before)
    assert seen == [(1, {1})]


def test_killed_sweep_resumes_without_duplicate_or_missing_runs(tmp_path, reference):
    spec_file, out = tmp_path / "sweep.toml", tmp_path / "out"
    spec_file.write_text(toml_text(SPEC))
    child = subprocess.Popen(
        [sys.executable, "-m", "analysis.sweeps", str(spec_file), "--out", str(out), "--agents",
         "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while len(list(out.glob("runs/*.npz"))) < 2 and child.poll() is None:
        assert time.monotonic() < deadline, "the sweep wrote no results"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished = sorted(out.glob("runs/*.npz"))
    assert (out / "manifest.json").exists() and 2 <= len(finished) < 6
    finished[0].write_bytes(finished[0].read_bytes()[:100])  # a torn file is run again
    (out / "runs" / "p0002-r000.npz.tmp").write_bytes(b"partial")

    with pytest.raises(SweepError, match="already holds a sweep"):
        run_sweep(SweepSpec.from_dict(SPEC), out, agents=True, progress=False)
    changed = {**SPEC, "grid": {"mechanism": ["ipfl", "fedavg"]}}
    with pytest.raises(SweepError, match=r"changed: spec\.grid"):
        run_sweep(SweepSpec.from_dict(changed), out, resume=True, agents=True, progress=False)

    result = run_sweep(SweepSpec.from_dict(SPEC), out, resume=True, agents=True, progress=False)
    status = result.runs.set_index("run_id")["status"]
    assert (status == "resumed").sum() == len(finished) - 1
    assert status[finished[0].stem] == "ok"
    assert not list(out.glob("runs/*.tmp"))
    assert result.runs["run_id"].is_unique and len(result.runs) == 6
    pd.testing.assert_frame_equal(result.frame, reference.frame, check_exact=True)
    pd.testing.assert_frame_equal(result.agents, reference.agents, check_exact=True)
    stored = pd.read_csv(out / "rounds.csv")
    assert len(stored) == len(reference.frame) and stored["run_id"].nunique() == 6


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc, as in CI)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def test_pool_workers_do_not_outlive_a_killed_sweep(tmp_path):
    spec_file, out = tmp_path / "sweep.toml", tmp_path / "out"
    spec_file.write_text(toml_text(SPEC))
    child = subprocess.Popen(
        [sys.executable, "-m", "analysis.sweeps", str(spec_file), "--out", str(out),
         "--workers", "2", "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*.npz")) and child.poll() is None:
        assert time.monotonic() < deadline, "the sweep wrote no results"
        time.sleep(0.05)
    workers = _children(child.pid)
    assert len(workers) >= 2  # the pool's workers (and its resource tracker)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 30
    while (alive := {pid for pid in workers if Path(f"/proc/{pid}").exists()
                     and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]}):
        if time.monotonic() > deadline:
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"processes {sorted(alive)} outlived the killed sweep")
        time.sleep(0.1)


def test_bad_executor_arguments_leave_the_output_folder_untouched(tmp_path, capsys):
    spec_file, out = tmp_path / "sweep.toml", tmp_path / "out"
    spec_file.write_text(toml_text(SPEC))
    assert main([str(spec_file), "--out", str(out), "--workers", "0", "--quiet"]) == 2
    assert "workers=0" in capsys.readouterr().err
    assert not out.exists()


def test_a_failing_run_is_recorded_and_the_sweep_continues(tmp_path, capsys):
    spec = {**SPEC, "sweep": {"replicates": 1, "rounds": 1},
            "grid": {"min_size": [20, 450], "mechanism": ["ipfl"]}}
    spec_file, out = tmp_path / "sweep.toml", tmp_path / "out"
    spec_file.write_text(toml_text(spec))
    assert main([str(spec_file), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    printed = captured.out
    assert "2 runs: 1 run, 0 resumed, 1 failed" in printed
    bar = captured.err.strip().splitlines()[-1]  # runs done, failed, elapsed<ETA
    assert "2/2" in bar and "done=1" in bar and "failed=1" in bar and "<" in bar
    record = json.loads((out / "failures" / "p0001-r000.json").read_text())
    assert record["params"] == {"min_size": 450, "mechanism": "ipfl"}
    assert "min_size" in record["error"] and "Traceback" in record["traceback"]
    assert pd.read_csv(out / "rounds.csv")["run_id"].unique().tolist() == ["p0000-r000"]

    again = run_sweep(SweepSpec.from_dict(spec), out, resume=True, progress=False)
    assert again.runs.set_index("run_id")["status"].to_dict() == {
        "p0000-r000": "resumed", "p0001-r000": "failed"}
    assert again.failures[["run_id", "min_size"]].values.tolist() == [["p0001-r000", 450]]
    assert again.failures["error"].str.contains("ValueError").all()


@pytest.mark.parametrize("where", ["constructor", "step"])
def test_a_run_that_raises_leaves_no_model_behind(monkeypatch, where):
    def boom(*args, **kwargs):
        raise RuntimeError(f"broken {where}")

    if where == "constructor":  # raises after the participants exist
        monkeypatch.setattr("models.market.mesa.DataCollector", boom)
    else:
        monkeypatch.setattr(MarketModel, "_evaluate", boom)
    models = len(mesa.Agent._ids)
    record = execute_run(SweepSpec(base=BASE, rounds=1).expand()[0])
    assert record.error == f"RuntimeError: broken {where}" and record.model is None
    assert len(mesa.Agent._ids) == models


def test_memory_stays_flat_over_hundreds_of_runs():
    statm = Path("/proc/self/statm")  # the current resident set size (Linux, as in CI)

    def rss_mb() -> float:
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    tiny = {**BASE, "local_steps": 2, "n_participants": 3,
            "population": [{"role": "trader", "count": 3}]}
    run_sweep(SweepSpec(base=tiny, replicates=10, rounds=1), progress=False)
    before, models = rss_mb(), len(mesa.Agent._ids)
    result = run_sweep(SweepSpec(base=tiny, replicates=300, seed=1, rounds=1), progress=False)
    assert len(result.runs) == 300 and result.failures.empty
    assert len(mesa.Agent._ids) == models
    assert rss_mb() - before < 40  # one model kept alive costs ~1.5 MB here


# command line and mesa.batch_run ----------------------------------------------------------
def test_register_adds_the_sweep_command():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "s.toml", "--out", "d", "--workers", "2", "--resume"])
    assert (args.func, args.workers, args.resume, args.ray) == (sweep_command, 2, True, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "s.toml", "--out", "d", "--workers", "2", "--ray"])


def test_batch_run_reports_collections_up_to_the_last_but_one_round():
    params = {**BASE, "population": [BASE["population"]], "rounds": 2, "seed": [4]}
    direct = MarketModel(**{**BASE, "rounds": 2, "seed": 4})
    while direct.running:
        direct.step()
    rounds = direct.model_frame().set_index("round")["welfare"]
    for period, steps in ((-1, [1]), (1, [0, 1])):
        rows = pd.DataFrame(mesa.batch_run(MarketModel, parameters=params, number_processes=1,
                                           data_collection_period=period,
                                           display_progress=False))
        assert len(rows) == 4 * len(steps)  # one row per participant and step
        per_step = rows.drop_duplicates("Step").set_index("Step")["welfare"]
        assert per_step.index.tolist() == steps
        assert per_step.tolist() == rounds.loc[steps].tolist()
    direct.release()


def test_common_seeds_give_every_parameter_set_the_same_seeds():
    grid = {"mechanism": ["ipfl", "fedavg", "local"]}
    plain = SweepSpec(base=BASE, grid=grid, replicates=2).expand()
    common = SweepSpec(base=BASE, grid=grid, replicates=2, common_seeds=True).expand()
    assert len({r.seed for r in plain}) == 6
    assert [r.seed for r in common] == [r.seed for r in plain[:2]] * 3
    assert SweepSpec.from_dict(SweepSpec(base=BASE, grid=grid, common_seeds=True).to_dict()
                               ).common_seeds
    with pytest.raises(ConfigError, match="common_seeds"):
        SweepSpec(base=BASE, grid=grid, common_seeds="yes")
