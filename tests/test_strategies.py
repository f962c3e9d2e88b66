import numpy as np
import pytest

from agents.strategies import Learning, Misreport, exp3_probabilities, make_strategy, report_arms


def test_misreport_reports_its_factors():
    action = Misreport(n_factor=2.0, cost_factor=0.5).decide(0, np.random.default_rng(0))
    assert (action.train, action.n_factor, action.cost_factor) == (True, 2.0, 0.5)


def test_free_rider_never_trains_and_fake_seller_does():
    rng = np.random.default_rng(0)
    free = make_strategy("free_rider", {"kind": "constant"}).decide(0, rng)
    fake = make_strategy("fake", {"attack": "sign_flip"}).decide(0, rng)
    assert not free.train and free.attack is not None
    assert fake.train and fake.attack is not None
    own = np.array([1.0, 2.0])
    np.testing.assert_array_equal(free.attack(own, np.empty((0, 2)), np.zeros(2), 0, rng),
                                  np.ones(2))


def test_bad_strategy_parameters_list_every_problem():
    with pytest.raises(ValueError) as info:
        make_strategy("learning", {"grid": [0.5, 2.0], "epsilon": 3, "algorithm": "ucb"})
    text = str(info.value)
    assert "must contain 1.0" in text and "epsilon=3" in text and "algorithm='ucb'" in text
    with pytest.raises(ValueError, match="kind='teleport'"):
        make_strategy("free_rider", {"kind": "teleport"})
    with pytest.raises(ValueError, match="allowed one of"):
        make_strategy("saint")


@pytest.mark.parametrize("params", [{"n_factor": 1e4}, {"cost_factor": 1e-4}, {"n_factor": 0}])
def test_misreport_factors_beyond_a_thousand_either_way_are_rejected(params):
    """Reports stay within the sizes a market takes (at most 10^12 apart)."""
    with pytest.raises(ValueError, match=r"allowed a number in \[0.001, 1000\]"):
        make_strategy("misreport", params)
    with pytest.raises(ValueError, match="grid="):
        make_strategy("learning", {"grid": [1.0, *params.values()]})


def test_arms_cover_the_grid():
    assert report_arms((0.5, 1.0), "n") == [(0.5, 1.0), (1.0, 1.0)]
    assert len(report_arms((0.5, 1.0, 2.0), "both")) == 9


@pytest.mark.parametrize("algorithm", ["epsilon_greedy", "exp3"])
def test_bandit_learns_the_most_profitable_report(algorithm):
    """Reward is highest when reporting twice the cost; the bandit must find that arm."""
    strategy = Learning(grid=(0.5, 1.0, 2.0), dimension="cost", algorithm=algorithm,
                        epsilon=0.1, gamma=0.2)
    rng = np.random.default_rng(1)
    noise = np.random.default_rng(2)
    for t in range(600):
        action = strategy.decide(t, rng)
        strategy.observe({0.5: 0.0, 1.0: 1.0, 2.0: 3.0}[action.cost_factor]
                         + noise.normal(0, 0.3))
    assert strategy.policy() == (1.0, 2.0)
    restored = Learning(grid=(0.5, 1.0, 2.0), dimension="cost", algorithm=algorithm)
    restored.load_state_dict(strategy.state_dict())
    assert restored.policy() == strategy.policy()


def test_exp3_probabilities_mix_in_exploration():
    p = exp3_probabilities(np.array([0.0, 100.0, 0.0]), gamma=0.3)
    assert p.sum() == pytest.approx(1.0)
    assert p.min() == pytest.approx(0.1)


def test_indifferent_learner_reports_the_truth_as_its_policy():
    assert Learning(grid=(0.5, 1.0, 2.0), algorithm="exp3").policy() == (1.0, 1.0)
    strategy = Learning(grid=(0.5, 1.0, 2.0))
    assert strategy.policy() == (1.0, 1.0)
    rng = np.random.default_rng(0)
    for t in range(20):
        strategy.decide(t, rng)
        strategy.observe(0.0)
    assert strategy.policy() == (1.0, 1.0)
