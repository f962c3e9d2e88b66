"""Datasets and client partitions.

Every dataset comes back as float32 inputs and int64 labels, already normalised: images are
shaped (n, C, H, W), vector data (n, d). Partitions split the training labels over m clients
with an explicit seed; they are disjoint and cover every sample exactly once.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mnist1d", "digits", "synthetic", "fmnist", "cifar10")
PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "cluster", "skew")
IMAGE_DATASETS: tuple[str, ...] = ("fmnist", "cifar10")
FILE_DATASETS: tuple[str, ...] = ("fmnist", "cifar10")  # read from a local folder
BUNDLED_SIZES: dict[str, int] = {"digits": 1797}  # samples a bundled dataset holds
SeedLike = int | np.random.SeedSequence | np.random.Generator
MAX_PARTITION_ATTEMPTS = 1000

_FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_TRAIN = tuple(f"data_batch_{k}.bin" for k in range(1, 6))
_CIFAR_TEST = "test_batch.bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays of one classification task."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train),
                            ("test", self.x_test, self.y_test)):
            if x.dtype != np.float32 or y.dtype != np.int64:
                raise ValueError(f"{split} arrays must be float32 inputs and int64 labels, "
                                 f"got {x.dtype} and {y.dtype}")
            if len(x) != len(y):
                raise ValueError(f"{split} inputs and labels differ in length: "
                                 f"{len(x)} != {len(y)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample: (d,) for vectors, (C, H, W) for images."""
        return tuple(self.x_train.shape[1:])


def default_cache_dir() -> Path:
    """Cache folder: $MODELMARKET_CACHE if set, else ~/.cache/modelmarket."""
    env = os.environ.get("MODELMARKET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modelmarket"


def load_dataset(name: str, *, n_samples: int | None = None, seed: int = 0,
                 root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, **kw: Any) -> Dataset:
    """Load a dataset by name.

    n_samples is the total number of samples (train + test): generated datasets are made that
    large (mnist1d rounds down to a multiple of its 10 classes; default 5000, synthetic 2000);
    bundled and file datasets keep a seeded random subset in their train/test ratio.
    Extra keywords by dataset: mnist1d takes the generator's arguments (train_split,
    shuffle_seq, ...); digits takes test_fraction; synthetic takes dim, n_classes, class_sep,
    test_fraction. fmnist and cifar10 are read from the folder `root` and never downloaded.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    if n_samples is not None and (not _is_int(n_samples) or n_samples < 10):
        raise ValueError(f"n_samples must be an integer >= 10 or None, got {n_samples!r}")
    if name == "mnist1d":
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return _load_mnist1d(n_samples, seed, cache, kw)
    allowed = {"digits": ("test_fraction",),
               "synthetic": ("dim", "n_classes", "class_sep", "test_fraction")}.get(name)
    if allowed is not None and set(kw) - set(allowed):
        raise ValueError(f"{name} takes only {', '.join(allowed)} as extra arguments, got "
                         f"{sorted(set(kw) - set(allowed))}")
    if name == "digits":
        return _load_digits(n_samples, seed, **kw)
    if name == "synthetic":
        return _make_synthetic(2000 if n_samples is None else n_samples, seed, **kw)
    if kw:
        raise ValueError(f"{name} takes no extra arguments, got {sorted(kw)}")
    if root is None:
        raise ValueError(f"root is required for {name}: the folder holding its files "
                         f"({_expected_files(name)}); nothing is downloaded")
    loader = _read_fmnist if name == "fmnist" else _read_cifar10
    x_tr, y_tr, x_te, y_te = loader(Path(root).expanduser())
    x_tr, y_tr, x_te, y_te = _subsample(x_tr, y_tr, x_te, y_te, n_samples, seed)
    x_tr, x_te = _standardize(x_tr, x_te)
    return Dataset(name, x_tr, y_tr, x_te, y_te, 10)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_positive(value: Any) -> bool:
    """A finite real number > 0 (booleans and strings are not numbers here)."""
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool) and math.isfinite(value) and value > 0)


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale with training statistics: per channel for images, globally otherwise."""
    axes = (0, 2, 3) if x_train.ndim == 4 else None
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (((x_train - mean) / std).astype(np.float32),
            ((x_test - mean) / std).astype(np.float32))


def _subsample(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
               n_samples: int | None, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded random subset of n_samples in total, keeping the train/test proportion."""
    total = len(y_tr) + len(y_te)
    if n_samples is None or n_samples >= total:
        return x_tr, y_tr, x_te, y_te
    rng = np.random.default_rng(seed)
    n_tr = max(1, round(n_samples * len(y_tr) / total))
    n_te = max(1, n_samples - n_tr)
    keep_tr = np.sort(rng.permutation(len(y_tr))[:n_tr])
    keep_te = np.sort(rng.permutation(len(y_te))[:n_te])
    return x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te]


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float,
           rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    order = rng.permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


# --- mnist1d -------------------------------------------------------------------------------

def _mnist1d_args(n_samples: int | None, seed: int, kw: dict[str, Any]) -> dict[str, Any]:
    """The generator's argument dict with our overrides; unknown keywords are an error."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    unknown = set(kw) - (set(args) - {"num_samples", "seed"})
    if unknown:
        allowed = sorted(set(args) - {"num_samples", "seed"})
        raise ValueError(f"unknown mnist1d arguments {sorted(unknown)}; allowed: {allowed}")
    args.update(kw)
    if n_samples is not None:
        args["num_samples"] = int(n_samples)
    args["seed"] = int(seed)
    return args


def _cache_key(args: dict[str, Any]) -> str:
    version = importlib.metadata.version("mnist1d")
    text = json.dumps({"args": args, "mnist1d": version}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run mnist1d's generator, restoring the global random states it reseeds."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x_train": np.asarray(data["x"], dtype=np.float32),
            "y_train": np.asarray(data["y"], dtype=np.int64),
            "x_test": np.asarray(data["x_test"], dtype=np.float32),
            "y_test": np.asarray(data["y_test"], dtype=np.int64)}


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """Arrays stored under `key`, or None when the file is missing, foreign or corrupt."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                raise ValueError("cache key mismatch")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        Dataset("mnist1d", n_classes=10, **arrays)
    except Exception as err:  # any unreadable cache is rebuilt, never fatal
        logger.warning("ignoring unreadable dataset cache %s (%s); regenerating", path, err)
        return None
    return arrays


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically (temporary file + rename); failure only logs a warning."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as fh:
            tmp_name = fh.name
            np.savez(fh, key=np.array(key), **arrays)
        os.replace(tmp_name, path)
    except OSError as err:
        logger.warning("could not write dataset cache %s (%s)", path, err)
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _load_mnist1d(n_samples: int | None, seed: int, cache_dir: Path,
                  kw: dict[str, Any]) -> Dataset:
    args = _mnist1d_args(n_samples, seed, kw)
    key = _cache_key(args)
    path = cache_dir / f"mnist1d-{key}.npz"
    arrays = _read_cache(path, key)
    if arrays is None:
        logger.info("generating mnist1d with %d samples (cached in %s)", args["num_samples"],
                    path)
        arrays = _generate_mnist1d(args)
        _write_cache(path, key, arrays)
    return Dataset("mnist1d", n_classes=10, **arrays)


# --- digits and synthetic -----------------------------------------------------------------

def _load_digits(n_samples: int | None, seed: int, test_fraction: float = 0.2) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    if n_samples is not None:
        if n_samples > len(y):
            raise ValueError(f"n_samples must be <= {len(y)} for digits, got {n_samples}")
        keep = np.sort(rng.permutation(len(y))[:n_samples])
        x, y = x[keep], y[keep]
    x_tr, y_tr, x_te, y_te = _split(x, y, test_fraction, rng)
    x_tr, x_te = _standardize(x_tr, x_te)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10)


def _make_synthetic(n_samples: int, seed: int, dim: int = 20, n_classes: int = 10,
                    class_sep: float = 1.0, test_fraction: float = 0.2) -> Dataset:
    """Gaussian mixture: class c ~ N(mu_c, I) with mu_c ~ N(0, class_sep^2 I)."""
    if not _is_int(dim) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    if not _is_int(n_classes) or not 2 <= n_classes <= n_samples:
        raise ValueError(f"n_classes must be an integer in [2, n_samples={n_samples}], "
                         f"got {n_classes!r}")
    if not class_sep > 0:
        raise ValueError(f"class_sep must be > 0, got {class_sep!r}")
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, class_sep, size=(n_classes, dim))
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    x = (means[y] + rng.normal(size=(n_samples, dim))).astype(np.float32)
    x_tr, y_tr, x_te, y_te = _split(x, y, test_fraction, rng)
    x_tr, x_te = _standardize(x_tr, x_te)
    return Dataset("synthetic", x_tr, y_tr, x_te, y_te, int(n_classes))


# --- Fashion-MNIST and CIFAR-10 from local files ------------------------------------------

def _expected_files(name: str) -> str:
    if name == "fmnist":
        return (", ".join(f"{f}[.gz]" for f in _FMNIST_FILES)
                + " directly in root or in root/FashionMNIST/raw")
    return (", ".join((*_CIFAR_TRAIN, _CIFAR_TEST))
            + " (CIFAR-10 binary version) directly in root or in root/cifar-10-batches-bin")


def _find_folder(root: Path, candidates: Sequence[Path], files: Sequence[str],
                 name: str, exists: Callable[[Path, str], bool]) -> Path:
    """The first candidate folder holding every file, else a FileNotFoundError saying what."""
    if not root.is_dir():
        raise FileNotFoundError(f"root folder {root} does not exist; put {_expected_files(name)}")
    for folder in candidates:
        if all(exists(folder, f) for f in files):
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{name} files not found (searched {searched}); "
                            f"put {_expected_files(name)}")


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _parse_idx(path: Path) -> np.ndarray:
    """Parse an unsigned-byte IDX file (the MNIST family format)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: header incomplete")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise ValueError(f"{path} holds {len(raw) - header} data bytes, its header says {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_fmnist(root: Path) -> tuple[np.ndarray, ...]:
    folder = _find_folder(root, (root, root / "FashionMNIST" / "raw"), _FMNIST_FILES, "fmnist",
                          lambda d, f: _idx_path(d, f) is not None)
    tr_x, tr_y, te_x, te_y = (_parse_idx(_idx_path(folder, f)) for f in _FMNIST_FILES)
    for images, labels, split in ((tr_x, tr_y, "train"), (te_x, te_y, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"fmnist {split} files in {folder} have inconsistent shapes "
                             f"{images.shape} and {labels.shape}")
    return (_to_unit(tr_x[:, None]), tr_y.astype(np.int64),
            _to_unit(te_x[:, None]), te_y.astype(np.int64))


def _to_unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise ValueError(f"{path} has {raw.size} bytes, not a multiple of the CIFAR-10 "
                         f"record size {_CIFAR_RECORD}")
    records = raw.reshape(-1, _CIFAR_RECORD)
    return _to_unit(records[:, 1:].reshape(-1, 3, 32, 32)), records[:, 0].astype(np.int64)


def _read_cifar10(root: Path) -> tuple[np.ndarray, ...]:
    folder = _find_folder(root, (root, root / "cifar-10-batches-bin"),
                          (*_CIFAR_TRAIN, _CIFAR_TEST), "cifar10",
                          lambda d, f: (d / f).is_file())
    train = [_read_cifar_batch(folder / f) for f in _CIFAR_TRAIN]
    x_te, y_te = _read_cifar_batch(folder / _CIFAR_TEST)
    x_tr = np.concatenate([b[0] for b in train])
    y_tr = np.concatenate([b[1] for b in train])
    if y_tr.max() > 9 or y_te.max() > 9:
        raise ValueError(f"CIFAR-10 labels in {folder} exceed 9: not the CIFAR-10 binary version")
    return x_tr, y_tr, x_te, y_te


# --- partitions ---------------------------------------------------------------------------

def partition(labels: np.ndarray, n_clients: int, method: str, *, seed: SeedLike,
              beta: float = 0.5, n_clusters: int = 3, inner_beta: float = 10.0,
              classes_per_client: int = 2, min_size: int = 10) -> list[np.ndarray]:
    """Split sample indices over n_clients; returns sorted, disjoint index arrays covering all.

    iid: equal random shares. dirichlet: per class, shares ~ Dir(beta). cluster: per class,
    shares over n_clusters ~ Dir(beta), then inside each cluster over its clients
    ~ Dir(inner_beta) (clients k*g .. (k+1)*g-1 form cluster k). skew: each client holds
    classes_per_client classes, assigned cyclically from a seeded class order so every class is
    held; a class is shared equally by its holders. dirichlet and cluster resample until every
    client has at least min_size samples; every method gives each client at least one sample.
    """
    labels = _check_labels(labels)
    n = len(labels)
    if not _is_int(n_clients) or not 1 <= n_clients <= n:
        raise ValueError(f"n_clients must be an integer in [1, {n}] (the number of samples), "
                         f"got {n_clients!r}")
    if method not in PARTITIONS:
        raise ValueError(f"method must be one of {PARTITIONS}, got {method!r}")
    rng = np.random.default_rng(seed)
    if method == "iid":
        parts = np.array_split(rng.permutation(n), n_clients)
    elif method == "skew":
        parts = _skew(labels, n_clients, classes_per_client, rng)
    else:
        parts = _resample_until_large(labels, n_clients, method, rng, beta=beta,
                                      n_clusters=n_clusters, inner_beta=inner_beta,
                                      min_size=min_size)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got shape "
                         f"{labels.shape} and dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {labels.min()}")
    return labels


def _split_by_shares(indices: np.ndarray, shares: np.ndarray) -> list[np.ndarray]:
    """Cut `indices` into len(shares) consecutive chunks proportional to `shares`."""
    cuts = (np.cumsum(shares)[:-1] * len(indices)).astype(np.int64)
    return np.split(indices, cuts)


def _dirichlet_split(labels: np.ndarray, indices: np.ndarray, n_groups: int, beta: float,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, split `indices` over n_groups by Dir(beta) shares.

    As in the reference partitioner, a group already holding its fair share (total / n_groups)
    gets nothing of later classes, which keeps sizes from drifting far apart. The shares are
    drawn over the open groups directly (the same law as masking a full Dirichlet draw and
    renormalising, without its underflow to all-zero shares at small beta).
    """
    out: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
    sizes = np.zeros(n_groups, dtype=np.int64)
    for cls in np.unique(labels[indices]):
        idx = rng.permutation(indices[labels[indices] == cls])
        open_groups = np.flatnonzero(sizes < len(indices) / n_groups)
        shares = rng.dirichlet(np.full(len(open_groups), beta))
        for k, chunk in zip(open_groups, _split_by_shares(idx, shares), strict=True):
            out[k].append(chunk)
            sizes[k] += len(chunk)
    return [np.concatenate(c) if c else np.empty(0, dtype=np.int64) for c in out]


def _cluster_parts(labels: np.ndarray, n_clients: int, n_clusters: int, beta: float,
                   inner_beta: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Dir(beta) over clusters, then Dir(inner_beta) over each cluster's clients."""
    per_cluster = n_clients // n_clusters
    parts: list[np.ndarray] = []
    for members in _dirichlet_split(labels, np.arange(len(labels)), n_clusters, beta, rng):
        parts.extend(_dirichlet_split(labels, members, per_cluster, inner_beta, rng))
    return parts


def _resample_until_large(labels: np.ndarray, n_clients: int, method: str,
                          rng: np.random.Generator, *, beta: float, n_clusters: int,
                          inner_beta: float, min_size: int) -> list[np.ndarray]:
    """Draw dirichlet/cluster partitions until every client holds >= min_size samples."""
    n = len(labels)
    if not _is_positive(beta):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    if not _is_int(min_size) or not 1 <= min_size <= n // n_clients:
        raise ValueError(f"min_size must be an integer in [1, {n // n_clients}] "
                         f"(samples / n_clients), got {min_size!r}")
    if method == "cluster":
        if not _is_int(n_clusters) or not 1 <= n_clusters <= n_clients:
            raise ValueError(f"n_clusters must be an integer in [1, n_clients={n_clients}], "
                             f"got {n_clusters!r}")
        if n_clients % n_clusters:
            raise ValueError(f"n_clients must be a multiple of n_clusters={n_clusters}, "
                             f"got {n_clients}")
        if not _is_positive(inner_beta):
            raise ValueError(f"inner_beta must be a finite number > 0, got {inner_beta!r}")
    for _ in range(MAX_PARTITION_ATTEMPTS):
        if method == "dirichlet":
            parts = _dirichlet_split(labels, np.arange(n), n_clients, beta, rng)
        else:
            parts = _cluster_parts(labels, n_clients, n_clusters, beta, inner_beta, rng)
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise ValueError(f"could not give every one of {n_clients} clients min_size={min_size} "
                     f"samples in {MAX_PARTITION_ATTEMPTS} draws of the {method} partition "
                     f"(beta={beta}); raise beta or lower min_size or n_clients")


def _skew(labels: np.ndarray, n_clients: int, classes_per_client: int,
          rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(labels)
    n_cls = len(classes)
    if not _is_int(classes_per_client) or not 1 <= classes_per_client <= n_cls:
        raise ValueError(f"classes_per_client must be an integer in [1, {n_cls}] (the number "
                         f"of classes), got {classes_per_client!r}")
    if n_clients * classes_per_client < n_cls:
        raise ValueError(f"n_clients * classes_per_client must be >= {n_cls} (the number of "
                         f"classes) so every class is held, got {n_clients} * "
                         f"{classes_per_client}")
    order = classes[rng.permutation(n_cls)]
    held = [order[(i * classes_per_client + np.arange(classes_per_client)) % n_cls]
            for i in range(n_clients)]
    chunks: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for cls in classes:
        holders = [i for i in range(n_clients) if cls in held[i]]
        idx = rng.permutation(np.flatnonzero(labels == cls))
        for i, chunk in zip(holders, np.array_split(idx, len(holders)), strict=True):
            chunks[i].append(chunk)
    parts = [np.concatenate(c) for c in chunks]
    if min(len(p) for p in parts) == 0:
        raise ValueError(f"skew partition left a client without samples: too few samples per "
                         f"class for n_clients={n_clients}; lower n_clients")
    return parts


def label_distribution(labels: np.ndarray, parts: Sequence[np.ndarray],
                       n_classes: int) -> np.ndarray:
    """(m, n_classes) share of each class in each client's samples; rows sum to 1."""
    labels = _check_labels(labels)
    if labels.max() >= n_classes:
        raise ValueError(f"n_classes must exceed the largest label {labels.max()}, "
                         f"got {n_classes}")
    dist = np.zeros((len(parts), n_classes), dtype=np.float64)
    for i, part in enumerate(parts):
        if len(part) == 0:
            raise ValueError(f"parts[{i}] is empty; every client needs at least one sample")
        dist[i] = np.bincount(labels[part], minlength=n_classes) / len(part)
    return dist


def split_clients(parts: Sequence[np.ndarray], test_fraction: float = 0.2, *,
                  seed: SeedLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split each client's indices into its own train and test parts (the "own test split").

    Client i keeps floor(test_fraction * n_i) samples for testing, capped so that at least one
    remains for training; a small client may therefore have an empty test part.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for i, part in enumerate(parts):
        if len(part) == 0:
            raise ValueError(f"parts[{i}] is empty; every client needs at least one sample")
        shuffled = rng.permutation(np.asarray(part, dtype=np.int64))
        n_test = min(int(np.floor(test_fraction * len(part))), len(part) - 1)
        test.append(np.sort(shuffled[:n_test]))
        train.append(np.sort(shuffled[n_test:]))
    return train, test


def client_arrays(x: np.ndarray, y: np.ndarray,
                  parts: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-client (inputs, labels) pairs, the `client_data` the trainers take."""
    return [(x[p], y[p]) for p in parts]
