"""Loop vs batched local training, measured side by side in one run after a warm-up.

MLP on mnist1d (batch 64, 50 iterations) for m = 10 and m = 50 clients, then the Simple-CNN
on Fashion-MNIST- and CIFAR-10-shaped random images, which justifies make_trainer's "auto"
choice per architecture. The last two lines are `batched_speedup_m10=<ratio>` and
`batched_speedup_m50=<ratio>` (loop time / batched time for the MLP).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from models.data import client_arrays, load_dataset, partition
from models.learning import NetSpec, make_trainer, spec_for


def time_train(trainer, steps: int, repeats: int) -> float:
    """Best wall time of training every client for `steps` iterations."""
    clients = list(range(trainer.n_clients))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train(clients, steps)
        best = min(best, time.perf_counter() - start)
    return best


def compare(spec: NetSpec, client_data, steps: int, repeats: int) -> tuple[float, float, float]:
    """(loop seconds, batched seconds, max |param difference|) on the same clients and seed."""
    loop = make_trainer(spec, client_data, seed=0, engine="loop")
    batched = make_trainer(spec, client_data, seed=0, engine="batched")
    for trainer in (loop, batched):
        trainer.train(list(range(trainer.n_clients)), 1)
    t_loop, t_batched = float("inf"), float("inf")
    for _ in range(repeats):
        t_loop = min(t_loop, time_train(loop, steps, 1))
        t_batched = min(t_batched, time_train(batched, steps, 1))
    diff = (loop.params - batched.params).abs().max().item()
    return t_loop, t_batched, diff


def random_images(shape: tuple[int, ...], n_clients: int, per_client: int,
                  rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.normal(size=(per_client, *shape)).astype(np.float32),
             rng.integers(0, 10, per_client)) for _ in range(n_clients)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cnn-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")

    rng = np.random.default_rng(0)
    for shape in ((1, 28, 28), (3, 32, 32)):
        spec = NetSpec("cnn", shape, 10)
        for m in (10, 50):
            t_loop, t_batched, diff = compare(spec, random_images(shape, m, 256, rng),
                                              args.cnn_steps, args.repeats)
            tag = "x".join(map(str, shape))
            print(f"cnn {tag} m={m}: loop {t_loop:.3f}s batched {t_batched:.3f}s "
                  f"max|diff|={diff:.1e}")
            print(f"cnn_{tag}_batched_speedup_m{m}={t_loop / t_batched:.2f}")

    data = load_dataset("mnist1d", n_samples=10_000, seed=0)
    spec = spec_for(data)
    ratios = {}
    for m in (10, 50):
        parts = partition(data.y_train, m, "dirichlet", seed=0, beta=0.5, min_size=20)
        client_data = client_arrays(data.x_train, data.y_train, parts)
        t_loop, t_batched, diff = compare(spec, client_data, args.steps, args.repeats)
        print(f"mlp mnist1d m={m}: loop {t_loop:.3f}s batched {t_batched:.3f}s "
              f"max|diff|={diff:.1e}")
        ratios[m] = t_loop / t_batched
    for m, ratio in ratios.items():
        print(f"batched_speedup_m{m}={ratio:.2f}")


if __name__ == "__main__":
    main()
