import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ConfigError, Group, MarketConfig, group_counts


def test_default_config_is_the_inclusive_market():
    cfg = MarketConfig()
    counts = group_counts(cfg.population, cfg.n_participants)
    assert sum(counts) == cfg.n_participants == 12
    roles = {g.role for g in cfg.population}
    assert roles == {"trader", "buyer", "seller"}
    assert any(g.strategy == "fake" and g.params.get("attack") == "sign_flip"
               for g in cfg.population)
    assert cfg.mechanism == "ipfl" and cfg.dataset == "mnist1d"


def test_every_bad_field_is_reported_at_once_with_value_and_range():
    with pytest.raises(ConfigError) as info:
        MarketConfig.from_dict({"rounds": 0, "beta": -1.0, "lr": "fast", "dataset": "imagenet",
                                "mechanism": "nope", "churn_prob": 2.0, "colour": "red"})
    text = str(info.value)
    problems = info.value.problems
    for field, value in [("rounds", "0"), ("beta", "-1.0"), ("lr", "'fast'"),
                         ("dataset", "'imagenet'"), ("mechanism", "'nope'"),
                         ("churn_prob", "2.0")]:
        assert any(p.startswith(f"{field}={value}") and "allowed" in p for p in problems), field
    assert "colour: unknown field" in text
    assert "ipfl" in text  # the allowed mechanisms are listed


def test_group_problems_name_the_group_and_field():
    with pytest.raises(ConfigError) as info:
        MarketConfig.from_dict({"n_participants": 4, "population": [
            {"role": "king", "count": 2},
            {"strategy": "misreport", "count": 2, "params": {"n_factor": -1}},
        ]})
    problems = info.value.problems
    assert any(p.startswith("population[0].role='king'") for p in problems)
    assert any("population[1].params" in p and "n_factor=-1" in p for p in problems)


def test_valuations_beyond_what_a_market_takes_are_reported():
    with pytest.raises(ConfigError) as info:
        MarketConfig.from_dict({"valuation": 1e101, "n_participants": 4, "population": [
            {"count": 3}, {"count": 1, "valuation": 2e101}]})
    problems = info.value.problems
    assert any(p.startswith("valuation=1e+101: allowed a number in [0, 1e+100]")
               for p in problems)
    assert any(p.startswith("population[1].valuation=2e+101") for p in problems)
    assert MarketConfig.from_dict({"valuation": 1e100}).valuation == 1e100


def test_counts_must_add_up():
    with pytest.raises(ConfigError, match="add up to 3, allowed exactly n_participants=4"):
        MarketConfig.from_dict({"n_participants": 4, "population": [{"count": 3}]})


def test_cluster_partition_needs_a_multiple_of_clusters():
    with pytest.raises(ConfigError, match="multiple of n_clusters=3"):
        MarketConfig(partition="cluster", n_participants=10,
                     population=(Group(count=None),))


def test_mechanism_parameters_are_checked_by_the_mechanism_layer():
    with pytest.raises(ConfigError, match="mechanism 'ipfl' settings"):
        MarketConfig(mechanism_params={"lam": -1.0})


def test_every_mechanism_reputation_and_robust_problem_is_listed():
    with pytest.raises(ConfigError) as info:
        MarketConfig(mechanism_params={"lam": -1.0}, reputation="simlarity",
                     robust="krum", robust_params={"f": -1, "colour": 2})
    problems = [p for p in info.value.problems if p.startswith("mechanism 'ipfl' settings")]
    assert len(problems) == 4
    text = "\n".join(problems)
    for part in ("lam = -1.0", "'simlarity'", "f=-1", "colour"):
        assert part in text, part


def test_dataset_facts_are_checked_before_any_data_is_built(tmp_path):
    with pytest.raises(ConfigError) as info:
        MarketConfig(dataset="digits", network="cnn", min_size=600)
    problems = info.value.problems
    assert any(p.startswith("n_samples=6000: allowed at most 1797") for p in problems)
    assert any(p.startswith("network='cnn': allowed only for image datasets") for p in problems)
    assert any(p.startswith("min_size=600: allowed at most") for p in problems)
    with pytest.raises(ConfigError, match="data_root=None: allowed the folder"):
        MarketConfig(dataset="fmnist")
    with pytest.raises(ConfigError, match="allowed an existing folder"):
        MarketConfig(dataset="cifar10", data_root=str(tmp_path / "nowhere"))
    assert MarketConfig(dataset="digits", n_samples=1797).n_samples == 1797


def test_malformed_tables_are_reported_not_raised():
    with pytest.raises(ConfigError) as info:
        MarketConfig.from_dict({"mechanism_params": 5, "population": [
            {"count": 12, "params": 5}]})
    problems = info.value.problems
    assert "mechanism_params=5: allowed a table of parameters" in problems
    assert "population[0].params=5: allowed a table of parameters" in problems


def test_arrivals_need_a_positive_total_weight():
    with pytest.raises(ConfigError, match="add up to 0; allowed a positive total"):
        MarketConfig(max_arrivals=2, arrival_prob=0.5, arrival_population=(Group(count=0),))
    assert MarketConfig(max_arrivals=0, arrival_population=(Group(count=0),)).max_arrivals == 0


def test_numpy_scalars_are_stored_as_python_numbers():
    cfg = MarketConfig(seed=np.int64(3), lr=np.float32(0.5), rounds=np.int32(2),
                       population=(Group(count=np.int64(12)),))
    assert (cfg.seed, cfg.rounds, cfg.population[0].count) == (3, 2, 12)
    assert type(cfg.seed) is int and type(cfg.lr) is float and cfg.lr == 0.5
    assert "seed = 3" in cfg.to_toml()


def test_toml_round_trip(tmp_path):
    cfg = MarketConfig(rounds=7, mechanism_params={"lam": 2.0}, population=(
        Group(role="trader", count=10),
        Group(role="seller", strategy="fake", count=2, params={"attack": "gaussian",
                                                                "sigma": 0.5}),
    ))
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert MarketConfig.from_toml(path) == cfg


def test_overrides_reach_nested_tables():
    cfg = MarketConfig().with_overrides(["rounds=3", "mechanism_params.lam=2.5",
                                         "partition=iid"])
    assert cfg.rounds == 3 and cfg.mechanism_params["lam"] == 2.5 and cfg.partition == "iid"
    with pytest.raises(ConfigError, match="expected key=value"):
        MarketConfig().with_overrides(["rounds"])
    with pytest.raises(ConfigError, match="rounds: not a table"):
        MarketConfig().with_overrides(["rounds.x=1"])


def test_missing_or_broken_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        MarketConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        MarketConfig.from_toml(bad)


@settings(max_examples=60, deadline=None)
@given(total=st.integers(2, 200),
       fractions=st.lists(st.floats(0, 0.3), min_size=1, max_size=3))
def test_fractions_and_rest_always_fill_the_population(total, fractions):
    groups = tuple(Group(fraction=f) for f in fractions) + (Group(),)
    counts = group_counts(groups, total)
    assert sum(counts) == total
    for count, f in zip(counts, fractions, strict=False):
        assert abs(count - f * total) < 1 + 1e-9
