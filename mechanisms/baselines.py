"""Baseline graphs (FedAvg: everyone imports everyone; Local: nobody imports) and the
weighted-average aggregation shared by the averaging presets (FedAvg, pFedGraph)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mechanisms import checks

if TYPE_CHECKING:
    from mechanisms.robust import Combiner


def fedavg_graph(m: int, *, eligible=None) -> np.ndarray:
    """A (m, m): every participant imports every eligible other participant."""
    allowed = checks.mask(eligible, m)
    return np.broadcast_to(allowed[None, :], (m, m)) & ~np.eye(m, dtype=bool)


def local_graph(m: int) -> np.ndarray:
    """A (m, m): nobody imports anything."""
    return np.zeros((m, m), dtype=bool)


def average_targets(W, uploads, own, combiner: Combiner | None = None) -> np.ndarray:
    """V (m, P): v_i = sum_j W_ij x_j with x_j = upload_j for j != i and x_i = own_i.

    Rows of W are non-negative weights (normalised here to sum to 1 over the entries used).
    Non-finite uploads never enter an average: their weight is dropped before normalising.
    `combiner(C, w)` (optional, e.g. a robust aggregator) replaces w @ C per client, with C
    the stacked models (own model first) and w their normalised weights.
    """
    uploads = np.asarray(uploads)
    own = np.asarray(own)
    W = np.asarray(W, dtype=np.float64)
    m = W.shape[0]
    if own.ndim != 2 or own.shape[0] != m or uploads.shape != own.shape or W.shape != (m, m):
        raise ValueError(
            f"W must be (m, m) and uploads/own (m, P) with the same m; got W {W.shape}, "
            f"uploads {uploads.shape}, own {own.shape}"
        )
    if not np.isfinite(W).all() or (W < 0).any():
        raise ValueError("W must hold finite, non-negative weights")
    dtype = np.result_type(uploads.dtype, own.dtype, np.float32)
    finite = np.isfinite(uploads).all(axis=1)
    weights = np.where(finite[None, :], W, 0.0)
    self_w = np.diagonal(W).copy()
    np.fill_diagonal(weights, 0.0)
    total = weights.sum(axis=1) + self_w
    lonely = total <= 0
    self_w = np.where(lonely, 1.0, self_w) / np.where(lonely, 1.0, total)
    weights = weights / np.where(lonely, 1.0, total)[:, None]
    if combiner is None:
        clean = np.where(finite[:, None], uploads, 0).astype(dtype, copy=False)
        V = weights.astype(dtype) @ clean
        V += self_w.astype(dtype)[:, None] * own.astype(dtype, copy=False)
        return V
    V = own.astype(dtype, copy=True)
    for i in range(m):
        others = np.flatnonzero(weights[i] > 0)
        if others.size == 0:
            continue
        C = np.concatenate([own[i][None, :], uploads[others]]).astype(dtype, copy=False)
        w = np.concatenate([[self_w[i]], weights[i, others]])
        V[i] = np.asarray(combiner(C, w), dtype=dtype)
    return V
