"""Nets, the loop and batched trainers, and evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data import Dataset, client_arrays, label_distribution, load_dataset, partition
from models.learning import (
    BatchedTrainer,
    LoopTrainer,
    NetSpec,
    batch_indices,
    build_net,
    client_generators,
    flatten,
    make_trainer,
    n_params,
    personalized_accuracy,
    spec_for,
    unflatten,
    weighted_class_accuracy,
)

MLP = NetSpec("mlp", (12,), 4, (16, 8))
CNN = NetSpec("cnn", (1, 16, 16), 3, (10, 6))


def clients(spec: NetSpec, sizes: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, *spec.input_shape)).astype(np.float32),
             rng.integers(0, spec.n_classes, n)) for n in sizes]


def pair(spec: NetSpec, data, **kw) -> tuple[LoopTrainer, BatchedTrainer]:
    kw = {"seed": 5, "batch_size": 8, **kw}
    return (make_trainer(spec, data, engine="loop", **kw),
            make_trainer(spec, data, engine="batched", **kw))


# --- nets ---------------------------------------------------------------------------------

def test_parameter_counts_match_the_reference_shapes():
    assert n_params(NetSpec("mlp", (40,), 10)) == 40 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    fmnist_cnn = 156 + 2416 + (256 * 120 + 120) + (120 * 84 + 84) + 850
    assert n_params(NetSpec("cnn", (1, 28, 28), 10)) == fmnist_cnn
    cifar_cnn = 456 + 2416 + (400 * 120 + 120) + (120 * 84 + 84) + 850
    assert n_params(NetSpec("cnn", (3, 32, 32), 10)) == cifar_cnn
    for spec in (MLP, CNN):
        assert n_params(spec) == sum(p.numel() for p in build_net(spec).parameters())


@pytest.mark.parametrize("spec", [MLP, CNN])
def test_flatten_unflatten_round_trip(spec):
    net = build_net(spec, seed=3)
    vec = flatten(net)
    assert vec.shape == (n_params(spec),)
    for (name, param), (name2, view) in zip(net.named_parameters(),
                                            unflatten(spec, vec).items(), strict=True):
        assert name == name2 and torch.equal(param, view)
    stacked = unflatten(spec, torch.stack([vec, 2 * vec]))
    assert all(v.shape[0] == 2 for v in stacked.values())
    with pytest.raises(ValueError, match="vec"):
        unflatten(spec, vec[:-1])


def test_build_net_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (flatten(build_net(MLP, seed=s)) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_spec_for_picks_architecture():
    ds = load_dataset("synthetic", n_samples=100, dim=5)
    assert spec_for(ds) == NetSpec("mlp", (5,), 10)
    x, y = np.zeros((4, 3, 32, 32), np.float32), np.zeros(4, np.int64)
    images = Dataset("images", x, y, x, y, 10)
    assert spec_for(images) == NetSpec("cnn", (3, 32, 32), 10)
    assert spec_for(images, arch="mlp", hidden=(7,)) == NetSpec("mlp", (3, 32, 32), 10, (7,))


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"arch": "rnn", "input_shape": (4,), "n_classes": 2}, "arch"),
    ({"arch": "mlp", "input_shape": (4,), "n_classes": 1}, "n_classes"),
    ({"arch": "mlp", "input_shape": (4,), "n_classes": 2, "hidden": (0,)}, "hidden"),
    ({"arch": "cnn", "input_shape": (64,), "n_classes": 2}, "input_shape"),
    ({"arch": "cnn", "input_shape": (1, 8, 8), "n_classes": 2}, "input_shape"),
])
def test_invalid_spec(kwargs, word):
    with pytest.raises(ValueError, match=word):
        NetSpec(**kwargs)


# --- minibatches --------------------------------------------------------------------------

def test_batches_cycle_through_permutations():
    gen = torch.Generator().manual_seed(0)
    idx = batch_indices(gen, 5, 4, 5).reshape(-1)
    for start in range(0, 20, 5):
        assert sorted(idx[start:start + 5].tolist()) == list(range(5))
    small = batch_indices(gen, 3, 2, 8)
    assert small.shape == (2, 8) and sorted(small.reshape(-1)[:6].tolist()) == [0, 0, 1, 1, 2, 2]


def test_client_generators_are_prefix_stable():
    few, many = client_generators(9, 3), client_generators(9, 6)
    for a, b in zip(few, many, strict=False):
        assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


# --- batched == loop ----------------------------------------------------------------------

def test_batched_mlp_matches_loop():
    data = clients(MLP, (40, 5, 23, 64))
    loop, batched = pair(MLP, data)
    for subset in ([0, 1, 2, 3], [3, 1]):
        loss_l, loss_b = loop.train(subset, 12), batched.train(subset, 12)
        torch.testing.assert_close(loss_b, loss_l, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched.params, loop.params, rtol=0, atol=1e-5)
    targets = torch.randn(2, n_params(MLP))
    loop.train([2, 0], 10, targets=targets, mu=0.3)
    batched.train([2, 0], 10, targets=targets, mu=0.3)
    torch.testing.assert_close(batched.params, loop.params, rtol=0, atol=1e-5)


def test_batched_cnn_matches_loop():
    data = clients(CNN, (12, 5, 20))
    loop, batched = pair(CNN, data, momentum=0.5, weight_decay=1e-3)
    targets = torch.randn(3, n_params(CNN)) * 0.1
    for _ in range(2):
        loop.train([0, 1, 2], 4, targets=targets, mu=0.2)
        batched.train([0, 1, 2], 4, targets=targets, mu=0.2)
    torch.testing.assert_close(batched.params, loop.params, rtol=0, atol=1e-5)


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_no_momentum_no_decay_is_plain_sgd(engine):
    data = clients(MLP, (30,))
    trainer = make_trainer(MLP, data, seed=1, momentum=0.0, weight_decay=0.0, engine=engine)
    reference = make_trainer(MLP, data, seed=1, momentum=0.0, weight_decay=0.0, engine="loop")
    trainer.train([0], 5)
    net = build_net(MLP)
    torch.nn.utils.vector_to_parameters(reference.theta0, net.parameters())
    gen = client_generators(1, 1)[0]
    x, y = (torch.as_tensor(a) for a in data[0])
    for step in batch_indices(gen, 30, 5, 64):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x[step]), y[step]).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.01 * p.grad
    torch.testing.assert_close(trainer.params[0], flatten(net), rtol=0, atol=1e-6)


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_only_selected_clients_change(engine):
    trainer = make_trainer(MLP, clients(MLP, (20, 20, 20)), seed=0, engine=engine)
    before = trainer.params.clone()
    losses = trainer.train([1], 3)
    assert losses.shape == (1,) and torch.isfinite(losses).all()
    assert torch.equal(trainer.params[[0, 2]], before[[0, 2]])
    assert not torch.equal(trainer.params[1], before[1])
    assert trainer.train([], 3).shape == (0,)


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_proximal_term_pulls_toward_target(engine):
    data = clients(MLP, (30, 30))
    trainer = make_trainer(MLP, data, seed=2, momentum=0.0, engine=engine)
    start = trainer.state_dict()
    targets = torch.randn(2, n_params(MLP))
    distances = []
    for mu in (0.0, 1.0, 10.0):
        trainer.load_state_dict(start)
        trainer.train([0, 1], 20, targets=targets, mu=mu)
        distances.append((trainer.params - targets).norm(dim=1))
    assert (distances[1] < distances[0]).all() and (distances[2] < distances[1]).all()


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_training_is_seeded(engine):
    data = clients(MLP, (25, 40))
    runs = []
    for seed in (4, 4, 5):
        trainer = make_trainer(MLP, data, seed=seed, engine=engine)
        trainer.train([0, 1], 6)
        runs.append(trainer.params)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_training_lowers_loss_on_mnist1d(tmp_path):
    ds = load_dataset("mnist1d", n_samples=600, seed=0, cache_dir=tmp_path)
    parts = partition(ds.y_train, 4, "dirichlet", seed=0, beta=0.5)
    trainer = make_trainer(spec_for(ds), client_arrays(ds.x_train, ds.y_train, parts), seed=0)
    assert isinstance(trainer, BatchedTrainer)
    before = trainer.accuracy(ds.x_test, ds.y_test)
    first = trainer.train(range(4), 30)
    last = trainer.train(range(4), 30)
    assert (last < first).all()
    assert trainer.accuracy(ds.x_test, ds.y_test).mean() > before.mean()


# --- evaluation ---------------------------------------------------------------------------

def constant_predictor(spec: NetSpec, label: int) -> torch.Tensor:
    """Parameters of a net that always predicts `label` (zero weights, one positive bias)."""
    vec = torch.zeros(n_params(spec))
    unflatten(spec, vec)[f"fc.{len(spec.hidden)}.bias"][label] = 1.0
    return vec


def test_personalized_accuracy_by_hand():
    spec = NetSpec("mlp", (3,), 3, ())
    trainer = make_trainer(spec, [(np.zeros((2, 3), np.float32), np.array([0, 1]))] * 2, seed=0)
    trainer.set_params([0, 1], torch.stack([constant_predictor(spec, 0),
                                            constant_predictor(spec, 2)]))
    x = np.zeros((6, 3), np.float32)
    y = np.array([0, 0, 1, 2, 2, 2])
    dist = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    # client 0 gets every class-0 sample right: 0.5 * 2/2; client 1 every class-2: 0.5 * 3/3
    np.testing.assert_allclose(trainer.personalized_accuracy(x, y, dist), [0.5, 0.5])
    np.testing.assert_allclose(trainer.accuracy(x, y), [2 / 6, 3 / 6])
    correct = np.array([[1.0, 0.0, 2.0]])
    counts = np.array([2.0, 0.0, 4.0])
    np.testing.assert_allclose(weighted_class_accuracy(correct, counts, [[0.25, 0.5, 0.25]]),
                               [(0.25 * 0.5 + 0.25 * 0.5) / 0.5])
    with pytest.raises(ValueError, match="label_dist"):
        personalized_accuracy(spec, trainer.params, x, y, dist[:1])


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_accuracy_on_own_splits(engine):
    data = clients(CNN, (10, 10))
    trainer = make_trainer(CNN, data, seed=0, engine=engine)
    per_client = trainer.accuracy([d[0] for d in data], [d[1] for d in data])
    shared = [trainer.accuracy(d[0], d[1], clients=[i])[0] for i, d in enumerate(data)]
    np.testing.assert_allclose(per_client, shared)
    empty = trainer.accuracy([data[0][0], data[1][0][:0]], [data[0][1], data[1][1][:0]])
    assert np.isnan(empty[1]) and not np.isnan(empty[0])


def test_accuracy_agrees_between_architectures_paths(tmp_path):
    ds = load_dataset("mnist1d", n_samples=300, seed=1, cache_dir=tmp_path)
    parts = partition(ds.y_train, 3, "iid", seed=0)
    trainer = make_trainer(spec_for(ds), client_arrays(ds.x_train, ds.y_train, parts), seed=0)
    trainer.train(range(3), 5)
    dist = label_distribution(ds.y_train, parts, 10)
    net = build_net(trainer.spec)
    for i in range(3):
        torch.nn.utils.vector_to_parameters(trainer.params[i], net.parameters())
        with torch.no_grad():
            hits = net(torch.as_tensor(ds.x_test)).argmax(1).numpy() == ds.y_test
        assert trainer.accuracy(ds.x_test, ds.y_test)[i] == pytest.approx(hits.mean())
        per_class = [hits[ds.y_test == c].mean() for c in range(10)]
        assert trainer.personalized_accuracy(ds.x_test, ds.y_test, dist)[i] == pytest.approx(
            float(np.dot(dist[i], per_class)))


# --- state and slots ----------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["loop", "batched"])
@pytest.mark.parametrize("fmt", ["torch", "npz"])
def test_state_dict_round_trip_resumes_exactly(engine, fmt, tmp_path):
    data = clients(MLP, (20, 9))
    straight = make_trainer(MLP, data, seed=3, engine=engine)
    straight.train([0, 1], 4)
    saved = straight.state_dict()
    straight.train([0, 1], 4)
    if fmt == "torch":
        torch.save(saved, tmp_path / "state.pt")
        loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    else:
        np.savez(tmp_path / "state.npz", **{k: v.numpy() for k, v in saved.items()})
        loaded = dict(np.load(tmp_path / "state.npz"))
    resumed = make_trainer(MLP, data, seed=99, engine=engine)
    resumed.load_state_dict(loaded)
    resumed.train([0, 1], 4)
    assert torch.equal(resumed.params, straight.params)
    with pytest.raises(ValueError, match="params"):
        resumed.load_state_dict({**saved, "params": saved["params"][:1]})


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_set_params_and_set_data_for_arrivals(engine):
    trainer = make_trainer(MLP, clients(MLP, (20, 20)), seed=0, engine=engine)
    trainer.train([0, 1], 3)
    trainer.set_params([1], trainer.theta0[None])
    assert torch.equal(trainer.params[1], trainer.theta0)
    x, y = clients(MLP, (7,), seed=1)[0]
    trainer.set_data(1, x, y)
    assert trainer.sizes.tolist() == [20, 7]
    trainer.train([1], 2)
    assert torch.isfinite(trainer.params).all()


@pytest.mark.parametrize(("call", "word"), [
    (lambda t: t.train([0], 0), "steps"),
    (lambda t: t.train([5], 1), "clients"),
    (lambda t: t.train([0, 0], 1), "clients"),
    (lambda t: t.train([0], 1, mu=1.0), "targets"),
    (lambda t: t.train([0], 1, mu=-1.0), "mu"),
    (lambda t: t.train([0], 1, targets=np.zeros((2, 3)), mu=1.0), "targets"),
    (lambda t: t.train([0], 1, targets=np.full((1, n_params(MLP)), np.nan), mu=1.0), "finite"),
    (lambda t: t.set_params([0], np.zeros((1, 3))), "values"),
    (lambda t: t.set_data(0, np.zeros((3, 5), np.float32), np.zeros(3)), "inputs"),
    (lambda t: t.set_data(0, np.zeros((3, 12), np.float32), np.full(3, 9)), "labels"),
])
def test_invalid_training_arguments(call, word):
    trainer = make_trainer(MLP, clients(MLP, (10, 10)), seed=0)
    with pytest.raises(ValueError, match=word):
        call(trainer)


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"lr": 0.0}, "lr"),
    ({"momentum": -0.1}, "momentum"),
    ({"weight_decay": float("nan")}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"),
    ({"engine": "gpu"}, "engine"),
    ({"seed": -1}, "seed"),
])
def test_invalid_trainer_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_trainer(MLP, clients(MLP, (10,)), **{"seed": 0, **kwargs})


def test_auto_engine_per_architecture():
    assert make_trainer(MLP, clients(MLP, (5,)), seed=0).engine == "batched"
    assert make_trainer(CNN, clients(CNN, (5,)), seed=0).engine == "loop"
