"""Small nets, batched local SGD for many clients, and evaluation of many models at once.

Parameters of all m clients live in one float32 tensor `params` of shape (m, P); a row is the
flattened parameter vector of one client in `named_parameters()` order. Two trainers share one
interface and the same minibatch draws:

- `LoopTrainer`: one nn.Module and one torch.optim.SGD per client, trained one after another.
  The reference semantics, and the faster path for small CNNs (they are FLOP-bound).
- `BatchedTrainer`: every selected client in one computation over a leading client dimension:
  hand-written batched-matmul forward and backward for the MLP (overhead-bound, so batching
  pays), torch.func.vmap(grad(functional_call)) for other architectures.

`make_trainer(engine="auto")` picks the measured faster path per architecture (see
benchmarks/bench_training.py).

Minibatches: each call to `train` draws, for each client from its own torch.Generator, a
stream of fresh random permutations of its n_i samples and cuts it into `steps` consecutive
batches of exactly `batch_size` indices. Every sample is used once per pass; a client with
fewer samples than the batch size has batches that span several passes (so a batch may repeat
a sample). Equal batch sizes let all clients share one batched computation.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from models.data import Dataset

ARCHS: tuple[str, ...] = ("mlp", "cnn")
ENGINES: tuple[str, ...] = ("auto", "batched", "loop")
ArrayLike = np.ndarray | Tensor
ClientData = Sequence[tuple[ArrayLike, ArrayLike]]
_EVAL_BUDGET = 1 << 23  # floats per activation tensor during evaluation


# --- nets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetSpec:
    """Architecture of every client's net.

    mlp: flattened input -> hidden dense layers (ReLU) -> n_classes.
    cnn: the Simple-CNN of the reference: conv 5x5 (6) -> pool 2 -> conv 5x5 (16) -> pool 2 ->
    dense `hidden` (120, 84) -> n_classes; input (C, H, W) with H, W >= 16.
    """

    arch: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: tuple[int, ...] = (120, 84)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be non-empty positive sizes, "
                             f"got {self.input_shape}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if self.arch == "cnn":
            if len(self.input_shape) != 3 or min(self.input_shape[1:]) < 16:
                raise ValueError(f"input_shape must be (C, H, W) with H, W >= 16 for the cnn, "
                                 f"got {self.input_shape}")


def spec_for(dataset: Dataset, arch: str | None = None,
             hidden: tuple[int, ...] = (120, 84)) -> NetSpec:
    """NetSpec for a dataset: the cnn for images, the mlp for vectors unless `arch` says."""
    if arch is None:
        arch = "cnn" if len(dataset.input_shape) == 3 else "mlp"
    return NetSpec(arch, dataset.input_shape, dataset.n_classes, hidden)


def _dense(widths: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))


class MLP(nn.Module):
    """Dense ReLU net on the flattened input."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.input_dims = len(spec.input_shape)
        widths = (math.prod(spec.input_shape), *spec.hidden, spec.n_classes)
        self.fc = _dense(widths)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(-self.input_dims)
        for layer in self.fc[:-1]:
            x = F.relu(layer(x))
        return self.fc[-1](x)


def _conv_out(size: int) -> int:
    """Spatial size after two (5x5 conv, 2x2 max-pool) stages."""
    return ((size - 4) // 2 - 4) // 2


class SimpleCNN(nn.Module):
    """Two 5x5 conv + max-pool stages, then a dense ReLU head."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        channels, height, width = spec.input_shape
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        widths = (16 * _conv_out(height) * _conv_out(width), *spec.hidden, spec.n_classes)
        self.fc = _dense(widths)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(-3)
        for layer in self.fc[:-1]:
            x = F.relu(layer(x))
        return self.fc[-1](x)


@cache
def _skeleton(spec: NetSpec) -> nn.Module:
    """A net used only as the structure for functional_call (its own weights are unused)."""
    return build_net(spec)


def build_net(spec: NetSpec, *, seed: int = 0) -> nn.Module:
    """The net for `spec`, initialised like torch's defaults but from its own generator.

    Built on the meta device first so the global torch random state is never touched.
    """
    with torch.device("meta"):
        net = MLP(spec) if spec.arch == "mlp" else SimpleCNN(spec)
    net = net.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=gen)
            bound = 1.0 / math.sqrt(module.weight[0].numel())
            nn.init.uniform_(module.bias, -bound, bound, generator=gen)
    return net


@cache
def param_shapes(spec: NetSpec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of every parameter in the fixed flattening order."""
    with torch.device("meta"):
        net = MLP(spec) if spec.arch == "mlp" else SimpleCNN(spec)
    return tuple((name, tuple(p.shape)) for name, p in net.named_parameters())


def n_params(spec: NetSpec) -> int:
    """P, the length of one flattened parameter vector."""
    return sum(math.prod(shape) for _, shape in param_shapes(spec))


def flatten(module: nn.Module) -> Tensor:
    """A detached copy of the module's parameters as one (P,) vector."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def unflatten(spec: NetSpec, vec: Tensor) -> dict[str, Tensor]:
    """Views of `vec` (..., P) as named parameters of shape (..., *shape)."""
    if vec.shape[-1] != n_params(spec):
        raise ValueError(f"vec must have {n_params(spec)} entries in its last dimension, "
                         f"got {vec.shape[-1]}")
    out, offset = {}, 0
    for name, shape in param_shapes(spec):
        size = math.prod(shape)
        out[name] = vec[..., offset:offset + size].reshape(*vec.shape[:-1], *shape)
        offset += size
    return out


def init_params(spec: NetSpec, seed: int) -> Tensor:
    """theta0: the common initial parameter vector for a master seed."""
    root = np.random.SeedSequence(seed)
    return flatten(build_net(spec, seed=int(root.generate_state(1, np.uint64)[0])))


def client_generators(seed: int, n_clients: int) -> list[torch.Generator]:
    """One torch.Generator per client from SeedSequence(seed).spawn(n_clients).

    spawn is prefix-stable, so client i's stream does not depend on n_clients.
    """
    children = np.random.SeedSequence(seed).spawn(n_clients)
    return [torch.Generator().manual_seed(int(c.generate_state(1, np.uint64)[0]))
            for c in children]


def batch_indices(gen: torch.Generator, n: int, steps: int, batch_size: int) -> Tensor:
    """(steps, batch_size) indices into n samples: consecutive cuts of random permutations."""
    passes = math.ceil(steps * batch_size / n)
    keys = torch.rand((passes, n), generator=gen, dtype=torch.float64)
    order = keys.argsort(dim=1, stable=True).reshape(-1)
    return order[:steps * batch_size].view(steps, batch_size)


# --- evaluation ---------------------------------------------------------------------------

def _activation_width(spec: NetSpec) -> int:
    if spec.arch == "cnn":
        _, height, width = spec.input_shape
        return 6 * (height - 4) * (width - 4)
    return max(math.prod(spec.input_shape), *spec.hidden, spec.n_classes)


def _mlp_logits(layers: list[Tensor], x: Tensor) -> Tensor:
    """Logits (k, n, classes) of k MLPs on shared x (n, d) or per-client x (k, n, d)."""
    out = x
    for depth in range(0, len(layers), 2):
        weight, bias = layers[depth], layers[depth + 1]
        out = torch.matmul(out, weight.transpose(1, 2)).add_(bias.unsqueeze(1))
        if depth + 2 < len(layers):
            out.relu_()
    return out


@torch.no_grad()
def predict(spec: NetSpec, params: ArrayLike, x: ArrayLike) -> Tensor:
    """Predicted labels (k, n) of k parameter vectors (k, P) on the shared inputs x (n, ...)."""
    params = torch.as_tensor(params, dtype=torch.float32)
    x = torch.as_tensor(x, dtype=torch.float32)
    k, n = params.shape[0], x.shape[0]
    preds = torch.empty((k, n), dtype=torch.int64)
    if spec.arch == "mlp":
        layers = [t.contiguous() for t in unflatten(spec, params).values()]
        x = x.reshape(n, -1)
        chunk = max(1, _EVAL_BUDGET // (max(k, 1) * _activation_width(spec)))
        for start in range(0, n, chunk):
            preds[:, start:start + chunk] = _mlp_logits(layers, x[start:start + chunk]).argmax(-1)
        return preds
    net = _skeleton(spec)
    chunk = max(1, _EVAL_BUDGET // _activation_width(spec))
    for row in range(k):
        weights = unflatten(spec, params[row])
        for start in range(0, n, chunk):
            logits = functional_call(net, weights, (x[start:start + chunk],))
            preds[row, start:start + chunk] = logits.argmax(-1)
    return preds


def class_correct(spec: NetSpec, params: ArrayLike, x: ArrayLike,
                  y: ArrayLike) -> np.ndarray:
    """(k, n_classes) number of correctly classified samples of each class, per model."""
    y = torch.as_tensor(y, dtype=torch.int64)
    hits = (predict(spec, params, x) == y).to(torch.float64)
    onehot = F.one_hot(y, spec.n_classes).to(torch.float64)
    return (hits @ onehot).numpy()


def weighted_class_accuracy(correct: np.ndarray, counts: np.ndarray,
                            label_dist: np.ndarray) -> np.ndarray:
    """acc_i = sum_c dist_ic * correct_ic / count_c over classes present in the test set.

    The reference's personalized accuracy; each row of label_dist is renormalised over the
    classes that have test samples.
    """
    present = counts > 0
    dist = np.asarray(label_dist, dtype=np.float64)[:, present]
    mass = dist.sum(axis=1)
    per_class = correct[:, present] / counts[present]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, (dist * per_class).sum(axis=1) / mass, np.nan)


def accuracy(spec: NetSpec, params: ArrayLike, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """(k,) plain accuracy of k parameter vectors on shared data; NaN for empty data."""
    if len(y) == 0:
        return np.full(len(params), np.nan)
    return class_correct(spec, params, x, y).sum(axis=1) / len(y)


def personalized_accuracy(spec: NetSpec, params: ArrayLike, x_test: ArrayLike,
                          y_test: ArrayLike, label_dist: np.ndarray) -> np.ndarray:
    """(k,) per-class accuracy on a global test set weighted by each client's label shares."""
    label_dist = np.asarray(label_dist, dtype=np.float64)
    if label_dist.shape != (len(params), spec.n_classes):
        raise ValueError(f"label_dist must have shape ({len(params)}, {spec.n_classes}), "
                         f"got {label_dist.shape}")
    counts = np.bincount(np.asarray(y_test, dtype=np.int64), minlength=spec.n_classes)
    correct = class_correct(spec, params, x_test, y_test)
    return weighted_class_accuracy(correct, counts.astype(np.float64), label_dist)


# --- batched gradients --------------------------------------------------------------------

def _mlp_loss_grad(weights: list[Tensor], x: Tensor, y: Tensor, grads: list[Tensor]) -> Tensor:
    """Mean cross-entropy of k MLPs on their own batches; writes d loss / d weights to grads.

    weights/grads alternate (k, out, in) matrices and (k, out) biases; x (k, B, d), y (k, B).
    """
    inputs, pre = [x], []
    out = x
    n_layers = len(weights) // 2
    for layer in range(n_layers):
        out = torch.baddbmm(weights[2 * layer + 1].unsqueeze(1), out,
                            weights[2 * layer].transpose(1, 2))
        if layer < n_layers - 1:
            pre.append(out)
            out = out.relu()
            inputs.append(out)
    log_probs = out.log_softmax(-1)
    target = y.unsqueeze(-1)
    loss = -log_probs.gather(2, target).squeeze(2).mean(1)
    delta = log_probs.exp_()
    delta.scatter_add_(2, target, torch.full(target.shape, -1.0))
    delta.div_(y.shape[1])
    for layer in reversed(range(n_layers)):
        torch.bmm(delta.transpose(1, 2), inputs[layer], out=grads[2 * layer])
        torch.sum(delta, dim=1, out=grads[2 * layer + 1])
        if layer:
            delta = torch.bmm(delta, weights[2 * layer])
            delta.mul_(pre[layer - 1] > 0)
    return loss.detach()


def _vmap_loss_grad(spec: NetSpec) -> Callable[..., Tensor]:
    """Batched loss-and-gradient for any architecture via torch.func."""
    net = _skeleton(spec)
    names = [name for name, _ in param_shapes(spec)]

    def loss_fn(weights: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(net, weights, (x,)), y)

    batched = vmap(grad_and_value(loss_fn))

    def loss_grad(weights: list[Tensor], x: Tensor, y: Tensor, grads: list[Tensor]) -> Tensor:
        grad_dict, loss = batched(dict(zip(names, weights, strict=True)), x, y)
        for out, name in zip(grads, names, strict=True):
            out.copy_(grad_dict[name])
        return loss.detach()

    return loss_grad


class _LayerMajor:
    """k parameter vectors stored layer by layer: each layer is one contiguous (k, *shape).

    Batched matmuls need contiguous per-layer blocks; keeping all layers in one flat buffer
    still lets the SGD update run as a few whole-buffer operations.
    """

    def __init__(self, spec: NetSpec, k: int) -> None:
        self.shapes = [shape for _, shape in param_shapes(spec)]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.k = k

    def views(self, flat: Tensor) -> list[Tensor]:
        out, offset = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            out.append(flat[offset:offset + self.k * size].view(self.k, *shape))
            offset += self.k * size
        return out

    def pack(self, rows: Tensor) -> Tensor:
        """(k, P) client-major rows -> flat layer-major buffer."""
        columns = torch.split(rows, self.sizes, dim=1)
        return torch.cat([c.reshape(-1) for c in columns])

    def unpack(self, flat: Tensor) -> Tensor:
        """Flat layer-major buffer -> (k, P) client-major rows."""
        return torch.cat([v.reshape(self.k, -1) for v in self.views(flat)], dim=1)


# --- trainers -----------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_positive(name: str, value: float, *, strict: bool = True) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value)
            and (value > 0 if strict else value >= 0)):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


class _Trainer(ABC):
    """Shared state and interface of both engines."""

    engine = ""

    def __init__(self, spec: NetSpec, client_data: ClientData, *, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 1e-5, batch_size: int = 64,
                 seed: int) -> None:
        _check_positive("lr", lr)
        _check_positive("momentum", momentum, strict=False)
        _check_positive("weight_decay", weight_decay, strict=False)
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if len(client_data) < 1:
            raise ValueError("client_data must hold at least one client's (x, y)")
        self.spec, self.lr, self.momentum = spec, float(lr), float(momentum)
        self.weight_decay, self.batch_size = float(weight_decay), int(batch_size)
        self.theta0 = init_params(spec, seed)
        self.params = self.theta0.repeat(len(client_data), 1)
        self._generators = client_generators(seed, len(client_data))
        self._x: list[Tensor] = []
        self._y: list[Tensor] = []
        for i, (x, y) in enumerate(client_data):
            self._x.append(self._as_inputs(x, f"client_data[{i}]"))
            self._y.append(self._as_labels(y, len(self._x[-1]), f"client_data[{i}]"))

    @property
    def n_clients(self) -> int:
        return self.params.shape[0]

    @property
    def sizes(self) -> np.ndarray:
        """Number of training samples of each client."""
        return np.array([len(y) for y in self._y], dtype=np.int64)

    def _as_inputs(self, x: ArrayLike, what: str) -> Tensor:
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if tuple(x.shape[1:]) != self.spec.input_shape or len(x) == 0:
            raise ValueError(f"{what} inputs must have shape (n >= 1, "
                             f"*{self.spec.input_shape}), got {tuple(x.shape)}")
        return x

    def _as_labels(self, y: ArrayLike, n: int, what: str) -> Tensor:
        y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        if y.shape != (n,) or y.min() < 0 or y.max() >= self.spec.n_classes:
            raise ValueError(f"{what} labels must have shape ({n},) and values in "
                             f"[0, {self.spec.n_classes}), got shape {tuple(y.shape)}")
        return y

    def _client_index(self, clients: Any) -> Tensor:
        idx = torch.as_tensor(np.asarray(clients, dtype=np.int64).reshape(-1))
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.n_clients):
            raise ValueError(f"clients must be indices in [0, {self.n_clients}), "
                             f"got {idx.tolist()}")
        if idx.unique().numel() != idx.numel():
            raise ValueError(f"clients must not repeat, got {idx.tolist()}")
        return idx

    def _rows(self, values: ArrayLike, k: int, what: str) -> Tensor:
        rows = torch.as_tensor(values, dtype=torch.float32)
        if rows.shape != (k, self.params.shape[1]):
            raise ValueError(f"{what} must have shape ({k}, {self.params.shape[1]}), "
                             f"got {tuple(rows.shape)}")
        return rows

    def train(self, clients: Any, steps: int, *, targets: ArrayLike | None = None,
              mu: float = 0.0) -> Tensor:
        """Local SGD for `clients` on L_i + (mu/2)||theta_i - v_i||^2; returns mean data loss.

        One call is one round: momentum buffers start at zero. targets (k, P) holds v_i for the
        k clients in order; it is required when mu > 0 and must be finite.
        """
        idx = self._client_index(clients)
        if not _is_int(steps) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        _check_positive("mu", mu, strict=False)
        target_rows = None
        if mu > 0:
            if targets is None:
                raise ValueError("targets are required when mu > 0")
            target_rows = self._rows(targets, idx.numel(), "targets")
            if not torch.isfinite(target_rows).all():
                raise ValueError("targets must be finite")
        if idx.numel() == 0:
            return torch.empty(0)
        batches = [batch_indices(self._generators[i], len(self._y[i]), int(steps),
                                 self.batch_size)
                   for i in idx.tolist()]
        return self._train(idx, batches, target_rows, float(mu))

    @abstractmethod
    def _train(self, idx: Tensor, batches: list[Tensor], targets: Tensor | None,
               mu: float) -> Tensor:
        """Train clients idx on their (steps, B) batch indices; return mean data losses."""

    def _selected(self, clients: Any) -> Tensor:
        return (torch.arange(self.n_clients) if clients is None
                else self._client_index(clients))

    def accuracy(self, x: ArrayLike | Sequence[ArrayLike], y: ArrayLike | Sequence[ArrayLike],
                 clients: Any = None) -> np.ndarray:
        """Plain accuracy of each selected client: on shared (x, y), or on per-client lists
        (x[i], y[i]) such as each client's own test split. Empty data gives NaN."""
        idx = self._selected(clients)
        rows = self.params[idx]
        if isinstance(x, np.ndarray | Tensor):
            return accuracy(self.spec, rows, x, y)
        if len(x) != idx.numel() or len(y) != idx.numel():
            raise ValueError(f"per-client x and y must hold {idx.numel()} entries, "
                             f"got {len(x)} and {len(y)}")
        return np.array([accuracy(self.spec, rows[r:r + 1], xi, yi)[0]
                         for r, (xi, yi) in enumerate(zip(x, y, strict=True))])

    def personalized_accuracy(self, x_test: ArrayLike, y_test: ArrayLike,
                              label_dist: np.ndarray, clients: Any = None) -> np.ndarray:
        """The reference's personalized accuracy of each selected client on a global test set;
        label_dist rows are the clients' training label distributions."""
        idx = self._selected(clients)
        return personalized_accuracy(self.spec, self.params[idx], x_test, y_test, label_dist)

    def set_params(self, clients: Any, values: ArrayLike) -> None:
        """Overwrite the parameters of `clients` with rows of values (k, P)."""
        idx = self._client_index(clients)
        self.params[idx] = self._rows(values, idx.numel(), "values")

    def set_data(self, client: int, x: ArrayLike, y: ArrayLike) -> None:
        """Replace one client's training data (an arrival in a pre-allocated slot)."""
        (i,) = self._client_index([client]).tolist()
        self._x[i] = self._as_inputs(x, "x")
        self._y[i] = self._as_labels(y, len(self._x[i]), "y")

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters, theta0 and generator states as plain tensors (safe to save as npz or
        with torch.save and to load with weights_only=True). Client data is not included."""
        return {"params": self.params.clone(), "theta0": self.theta0.clone(),
                "generator_states": torch.stack([g.get_state() for g in self._generators])}

    def load_state_dict(self, state: dict[str, ArrayLike]) -> None:
        """Restore a state_dict(); shapes must match this trainer."""
        missing = {"params", "theta0", "generator_states"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        params = torch.as_tensor(np.asarray(state["params"]), dtype=torch.float32)
        theta0 = torch.as_tensor(np.asarray(state["theta0"]), dtype=torch.float32)
        gens = torch.as_tensor(np.asarray(state["generator_states"]), dtype=torch.uint8)
        expected = self.state_dict()
        for name, value in (("params", params), ("theta0", theta0), ("generator_states", gens)):
            if value.shape != expected[name].shape:
                raise ValueError(f"state[{name!r}] must have shape "
                                 f"{tuple(expected[name].shape)}, got {tuple(value.shape)}")
        self.params, self.theta0 = params.clone(), theta0.clone()
        for gen, row in zip(self._generators, gens, strict=True):
            gen.set_state(row.clone())


def _sq_dist(net: nn.Module, anchor: list[Tensor]) -> Tensor:
    """||theta - v||^2 between the net's parameters and target tensors, differentiable."""
    return sum(((p - v) ** 2).sum() for p, v in zip(net.parameters(), anchor, strict=True))


class LoopTrainer(_Trainer):
    """One nn.Module + torch.optim.SGD per client, trained one client after another."""

    engine = "loop"

    def __init__(self, spec: NetSpec, client_data: ClientData, **kw: Any) -> None:
        super().__init__(spec, client_data, **kw)
        self._net = build_net(spec)

    def _train(self, idx: Tensor, batches: list[Tensor], targets: Tensor | None,
               mu: float) -> Tensor:
        net, losses = self._net, torch.empty(idx.numel())
        for row, client in enumerate(idx.tolist()):
            nn.utils.vector_to_parameters(self.params[client], net.parameters())
            anchor = (list(unflatten(self.spec, targets[row]).values())
                      if targets is not None else None)
            opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=self.momentum,
                                  weight_decay=self.weight_decay)
            x, y, total = self._x[client], self._y[client], 0.0
            for step in batches[row]:
                loss = F.cross_entropy(net(x[step]), y[step])
                objective = loss if anchor is None else loss + 0.5 * mu * _sq_dist(net, anchor)
                opt.zero_grad(set_to_none=True)
                objective.backward()
                opt.step()
                total += loss.item()
            losses[row] = total / len(batches[row])
            self.params[client] = flatten(net)
        return losses


class BatchedTrainer(_Trainer):
    """All selected clients in one computation over a leading client dimension."""

    engine = "batched"

    def __init__(self, spec: NetSpec, client_data: ClientData, **kw: Any) -> None:
        super().__init__(spec, client_data, **kw)
        self._loss_grad = _mlp_loss_grad if spec.arch == "mlp" else _vmap_loss_grad(spec)
        self._stacked: tuple[Tensor, Tensor, Tensor] | None = None

    def set_data(self, client: int, x: ArrayLike, y: ArrayLike) -> None:
        super().set_data(client, x, y)
        self._stacked = None

    def _all_data(self) -> tuple[Tensor, Tensor, Tensor]:
        """All clients' samples concatenated, and each client's offset into them."""
        if self._stacked is None:
            x = torch.cat(self._x)
            if self.spec.arch == "mlp":
                x = x.reshape(len(x), -1)
            offsets = torch.tensor(np.concatenate([[0], np.cumsum(self.sizes)[:-1]]))
            self._stacked = (x, torch.cat(self._y), offsets)
        return self._stacked

    def _train(self, idx: Tensor, batches: list[Tensor], targets: Tensor | None,
               mu: float) -> Tensor:
        x_all, y_all, offsets = self._all_data()
        k, steps, batch = idx.numel(), batches[0].shape[0], self.batch_size
        layout = _LayerMajor(self.spec, k)
        theta = layout.pack(self.params[idx])
        grad, buf = torch.empty_like(theta), torch.zeros_like(theta)
        weights, grads = layout.views(theta), layout.views(grad)
        anchor = layout.pack(targets) if targets is not None else None
        scratch = torch.empty_like(theta) if anchor is not None else None
        rows = torch.stack(batches, dim=1) + offsets[idx].view(1, k, 1)  # (steps, k, B)
        in_shape = x_all.shape[1:]
        total = torch.zeros(k)
        for step in range(steps):
            flat_rows = rows[step].reshape(-1)
            xb = x_all.index_select(0, flat_rows).view(k, batch, *in_shape)
            yb = y_all.index_select(0, flat_rows).view(k, batch)
            total += self._loss_grad(weights, xb, yb, grads)
            if anchor is not None:
                grad.add_(torch.sub(theta, anchor, out=scratch), alpha=mu)
            self._sgd_step(theta, grad, buf)
        self.params[idx] = layout.unpack(theta)
        return total / steps

    def _sgd_step(self, theta: Tensor, grad: Tensor, buf: Tensor) -> None:
        """torch.optim.SGD's update (dampening 0, no nesterov) on one flat buffer."""
        if self.weight_decay:
            grad.add_(theta, alpha=self.weight_decay)
        if self.momentum:
            buf.mul_(self.momentum).add_(grad)
            grad = buf
        theta.add_(grad, alpha=-self.lr)


def make_trainer(spec: NetSpec, client_data: ClientData, *, lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 1e-5, batch_size: int = 64,
                 seed: int, engine: str = "auto") -> LoopTrainer | BatchedTrainer:
    """A trainer for len(client_data) clients.

    engine "auto" takes the measured faster path: batched for the MLP (several times the
    loop), the loop for the CNN (batching FLOP-bound convolutions was no faster).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        engine = "batched" if spec.arch == "mlp" else "loop"
    cls = BatchedTrainer if engine == "batched" else LoopTrainer
    return cls(spec, client_data, lr=lr, momentum=momentum, weight_decay=weight_decay,
               batch_size=batch_size, seed=seed)
