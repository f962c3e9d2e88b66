"""Datasets, the mnist1d cache, local file readers and client partitions."""

from __future__ import annotations

import gzip
import math
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import models.data as data
from models.data import (
    DATASETS,
    PARTITIONS,
    client_arrays,
    label_distribution,
    load_dataset,
    partition,
    split_clients,
)

LABELS = np.random.default_rng(7).choice(10, size=600, p=np.linspace(1, 2, 10) / 15)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


# --- datasets -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist1d", "digits", "synthetic"])
def test_builtin_datasets_have_consistent_arrays(name, cache):
    ds = load_dataset(name, n_samples=200, seed=1, cache_dir=cache)
    assert ds.name == name and ds.n_classes == 10
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.ndim == 2 and ds.input_shape == ds.x_train.shape[1:]
    assert ds.x_test.shape[1:] == ds.input_shape
    assert len(ds.y_train) + len(ds.y_test) == 200
    assert set(np.unique(ds.y_train)) <= set(range(10))
    assert np.isfinite(ds.x_train).all()


@pytest.mark.parametrize("name", ["mnist1d", "digits", "synthetic"])
def test_same_seed_same_data_different_seed_differs(name, cache):
    a = load_dataset(name, n_samples=200, seed=3, cache_dir=cache)
    b = load_dataset(name, n_samples=200, seed=3, cache_dir=cache)
    c = load_dataset(name, n_samples=200, seed=4, cache_dir=cache)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_is_configurable():
    ds = load_dataset("synthetic", n_samples=300, seed=0, dim=7, n_classes=3, class_sep=3.0)
    assert ds.input_shape == (7,) and ds.n_classes == 3
    assert set(np.unique(ds.y_train)) == {0, 1, 2}
    assert abs(float(ds.x_train.mean())) < 1e-5


def test_mnist1d_leaves_global_random_state_alone(tmp_path):
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    load_dataset("mnist1d", n_samples=100, seed=5, cache_dir=tmp_path)
    assert np.random.random() == expected_np and random.random() == expected_py


def test_mnist1d_cache_is_reused(tmp_path, monkeypatch):
    first = load_dataset("mnist1d", n_samples=100, seed=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1

    def fail(args):
        raise AssertionError("regenerated despite a valid cache")

    monkeypatch.setattr(data, "_generate_mnist1d", fail)
    second = load_dataset("mnist1d", n_samples=100, seed=2, cache_dir=tmp_path)
    assert np.array_equal(first.x_train, second.x_train)
    assert np.array_equal(first.y_test, second.y_test)


def test_mnist1d_cache_keyed_by_arguments(tmp_path):
    load_dataset("mnist1d", n_samples=100, seed=2, cache_dir=tmp_path)
    load_dataset("mnist1d", n_samples=100, seed=2, cache_dir=tmp_path, shuffle_seq=True)
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 2


@pytest.mark.parametrize("damage", [b"not a zip file", None])
def test_corrupt_cache_is_regenerated(tmp_path, damage):
    first = load_dataset("mnist1d", n_samples=100, seed=2, cache_dir=tmp_path)
    (path,) = tmp_path.glob("mnist1d-*.npz")
    blob = path.read_bytes()
    path.write_bytes(damage if damage is not None else blob[: len(blob) // 2])
    again = load_dataset("mnist1d", n_samples=100, seed=2, cache_dir=tmp_path)
    assert np.array_equal(first.x_train, again.x_train)
    assert path.read_bytes() == blob
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELMARKET_CACHE", str(tmp_path / "env"))
    load_dataset("mnist1d", n_samples=100, seed=9)
    assert len(list((tmp_path / "env").glob("mnist1d-*.npz"))) == 1


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"name": "imagenet"}, r"name must be one of \('mnist1d'"),
    ({"name": "mnist1d", "n_samples": 3}, "n_samples must be an integer >= 10"),
    ({"name": "mnist1d", "bogus": 1}, "bogus"),
    ({"name": "digits", "n_samples": 5000}, "n_samples must be <= 1797"),
    ({"name": "digits", "test_fraction": 1.5}, r"test_fraction must be .*\(0, 1\)"),
    ({"name": "digits", "dim": 3}, "digits takes only test_fraction"),
    ({"name": "synthetic", "dim": 0}, "dim must be an integer >= 1"),
    ({"name": "synthetic", "n_classes": 1}, r"n_classes must be an integer in \[2, "),
    ({"name": "synthetic", "colour": 1}, "synthetic takes only dim"),
    ({"name": "fmnist"}, "root is required for fmnist"),
    ({"name": "cifar10"}, "root is required for cifar10"),
])
def test_invalid_dataset_arguments(kwargs, word, tmp_path):
    with pytest.raises(ValueError, match=word):
        load_dataset(cache_dir=tmp_path, **kwargs)


def test_dataset_names_are_listed():
    assert DATASETS == ("mnist1d", "digits", "synthetic", "fmnist", "cifar10")


# --- Fashion-MNIST and CIFAR-10 files -----------------------------------------------------

def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_fmnist(folder: Path, rng: np.random.Generator, compress: bool) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4)}
    for name, array in arrays.items():
        write_idx(folder / name, array, compress)
    return arrays


@pytest.mark.parametrize(("layout", "compress"), [("", False), ("FashionMNIST/raw", True)])
def test_fmnist_reader(tmp_path, layout, compress):
    arrays = make_fmnist(tmp_path / layout, np.random.default_rng(0), compress)
    ds = load_dataset("fmnist", root=tmp_path)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert np.array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    raw = arrays["train-images-idx3-ubyte"][:, None] / 255.0
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(ds.x_train, expected, atol=1e-5)


def test_fmnist_subsample_keeps_ratio(tmp_path):
    make_fmnist(tmp_path, np.random.default_rng(0), False)
    ds = load_dataset("fmnist", root=tmp_path, n_samples=12, seed=1)
    assert (len(ds.y_train), len(ds.y_test)) == (9, 3)


def test_fmnist_missing_files_name_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fmnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("fmnist", root=tmp_path / "nowhere")


def test_fmnist_truncated_file_is_an_error(tmp_path):
    make_fmnist(tmp_path, np.random.default_rng(0), False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_dataset("fmnist", root=tmp_path)


def make_cifar(folder: Path, rng: np.random.Generator, per_file: int = 2) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
        batch = rng.integers(0, 256, (per_file, 3073)).astype(np.uint8)
        batch[:, 0] %= 10
        (folder / name).write_bytes(batch.tobytes())
        records.append(batch)
    return records


@pytest.mark.parametrize("layout", ["", "cifar-10-batches-bin"])
def test_cifar10_reader(tmp_path, layout):
    records = make_cifar(tmp_path / layout, np.random.default_rng(1))
    ds = load_dataset("cifar10", root=tmp_path)
    train = np.concatenate(records[:5])
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    assert np.array_equal(ds.y_train, train[:, 0]) and np.array_equal(ds.y_test, records[5][:, 0])
    raw = train[:, 1:].reshape(10, 3, 32, 32) / 255.0
    mean = raw.mean(axis=(0, 2, 3), keepdims=True)
    std = raw.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(ds.x_train, (raw - mean) / std, atol=1e-5)


def test_cifar10_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        load_dataset("cifar10", root=tmp_path)
    make_cifar(tmp_path, np.random.default_rng(1))
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="test_batch.bin"):
        load_dataset("cifar10", root=tmp_path)


# --- partitions ---------------------------------------------------------------------------

def assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))
    assert all(p.dtype == np.int64 and np.array_equal(p, np.sort(p)) for p in parts)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_iid_covers_every_sample_once(m, seed):
    parts = partition(LABELS, m, "iid", seed=seed)
    assert_exact_cover(parts, len(LABELS))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 30), beta=st.floats(0.05, 50.0), seed=st.integers(0, 2**32 - 1),
       min_size=st.integers(1, 10))
def test_dirichlet_covers_every_sample_once(m, beta, seed, min_size):
    try:
        parts = partition(LABELS, m, "dirichlet", seed=seed, beta=beta, min_size=min_size)
    except ValueError as exc:  # very small beta with many clients: no draw is large enough
        assert "could not give every one" in str(exc) and beta < 0.5
        assume(False)
    assert_exact_cover(parts, len(LABELS))
    assert min(len(p) for p in parts) >= min_size


@settings(max_examples=30, deadline=None)
@given(clusters=st.integers(1, 4), per_cluster=st.integers(1, 6), beta=st.floats(0.1, 10.0),
       inner_beta=st.floats(0.5, 20.0), seed=st.integers(0, 2**32 - 1))
def test_cluster_covers_every_sample_once(clusters, per_cluster, beta, inner_beta, seed):
    m = clusters * per_cluster
    parts = partition(LABELS, m, "cluster", seed=seed, beta=beta, n_clusters=clusters,
                      inner_beta=inner_beta, min_size=5)
    assert_exact_cover(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 5


@settings(max_examples=40, deadline=None)
@given(m=st.integers(5, 40), s=st.integers(2, 10), seed=st.integers(0, 2**32 - 1))
def test_skew_covers_every_sample_and_limits_classes(m, s, seed):
    parts = partition(LABELS, m, "skew", seed=seed, classes_per_client=s)
    assert_exact_cover(parts, len(LABELS))
    assert all(len(np.unique(LABELS[p])) <= s for p in parts)


def test_skew_each_client_sees_its_classes():
    parts = partition(LABELS, 10, "skew", seed=0, classes_per_client=2)
    assert all(len(np.unique(LABELS[p])) == 2 for p in parts)


def test_cluster_clients_in_a_cluster_share_classes():
    labels = np.repeat(np.arange(10), 200)
    parts = partition(labels, 6, "cluster", seed=3, beta=0.05, n_clusters=3, inner_beta=100.0)
    dist = label_distribution(labels, parts, 10)
    within = [np.abs(dist[2 * k] - dist[2 * k + 1]).sum() for k in range(3)]
    across = [np.abs(dist[0] - dist[2]).sum(), np.abs(dist[0] - dist[4]).sum()]
    assert max(within) < min(across)


@pytest.mark.parametrize("method", PARTITIONS)
def test_partition_is_seeded(method):
    kw = {"seed": 11, "n_clusters": 3}
    a = partition(LABELS, 9, method, **kw)
    b = partition(LABELS, 9, method, **kw)
    c = partition(LABELS, 9, method, **{**kw, "seed": 12})
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"n_clients": 0, "method": "iid"}, r"n_clients must be an integer in \[1, 600\]"),
    ({"n_clients": 601, "method": "iid"}, r"n_clients must be an integer in \[1, 600\]"),
    ({"n_clients": 5, "method": "random"}, r"method must be one of \('iid'"),
    ({"n_clients": 5, "method": "dirichlet", "beta": 0.0}, "beta must be a finite number > 0"),
    ({"n_clients": 5, "method": "dirichlet", "beta": -1.0}, "beta must be a finite number > 0"),
    ({"n_clients": 5, "method": "dirichlet", "beta": math.inf},
     "beta must be a finite number > 0"),
    ({"n_clients": 5, "method": "dirichlet", "beta": "big"}, "beta must be a finite number"),
    ({"n_clients": 5, "method": "dirichlet", "min_size": 500},
     r"min_size must be an integer in \[1, 120\]"),
    ({"n_clients": 10, "method": "cluster", "n_clusters": 3},
     "n_clients must be a multiple of n_clusters=3"),
    ({"n_clients": 9, "method": "cluster", "inner_beta": 0.0},
     "inner_beta must be a finite number > 0"),
    ({"n_clients": 5, "method": "skew", "classes_per_client": 11},
     r"classes_per_client must be an integer in \[1, 10\]"),
    ({"n_clients": 4, "method": "skew", "classes_per_client": 2},
     "n_clients \\* classes_per_client must be >= 10"),
])
def test_invalid_partition_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        partition(LABELS, seed=0, **kwargs)


def test_impossible_min_size_gives_up_clearly():
    labels = np.repeat(np.arange(2), 50)
    with pytest.raises(ValueError, match="min_size"):
        partition(labels, 10, "dirichlet", seed=0, beta=1e-3, min_size=5)


def test_label_distribution_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2])
    dist = label_distribution(labels, [np.array([0, 1, 2]), np.array([3, 4, 5])], 4)
    np.testing.assert_allclose(dist, [[2 / 3, 1 / 3, 0, 0], [0, 0, 1, 0]])
    with pytest.raises(ValueError, match="n_classes"):
        label_distribution(labels, [np.arange(6)], 2)


def test_split_clients_is_a_seeded_disjoint_split():
    parts = partition(LABELS, 8, "dirichlet", seed=0)
    train, test = split_clients(parts, 0.25, seed=1)
    for part, tr, te in zip(parts, train, test, strict=True):
        assert np.array_equal(np.sort(np.concatenate([tr, te])), part)
        assert len(te) == int(np.floor(0.25 * len(part)))
    again, _ = split_clients(parts, 0.25, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(train, again, strict=True))
    tiny_train, tiny_test = split_clients([np.array([4])], 0.5, seed=0)
    assert tiny_train[0].tolist() == [4] and tiny_test[0].size == 0
    with pytest.raises(ValueError, match="test_fraction"):
        split_clients(parts, 1.0, seed=0)


def test_client_arrays_follow_parts():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    pairs = client_arrays(x, y, [np.array([1, 4]), np.array([0])])
    assert pairs[0][1].tolist() == [1, 4] and pairs[1][0].tolist() == [[0.0, 1.0]]
