"""pFedGraph's collaboration graph (Ye et al., ICML 2023) by exact simplex projection.

The reference solves, per client i, the QP

    min_w  alpha ||w||^2 + (D'_i - 2 alpha p)^T w   s.t.  w >= 0, sum(w) = 1,

with p the data-size shares and D'_ij = -cos_ij. Completing the square, this is the
Euclidean projection of y_i = p - D'_i / (2 alpha) onto the probability simplex, computed
here for all rows at once by the sort-based algorithm (Held et al. 1974; Duchi et al. 2008).

Reference behaviour kept: a cosine above 0.9 counts as 1 (D' = -1), and the diagonal
(cos = 1) gives every client a self weight.
"""

from __future__ import annotations

import numpy as np

from mechanisms import checks

SIMILAR_ENOUGH = 0.9


def project_simplex(Y: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """Row-wise Euclidean projection of Y (n, d) onto the probability simplex.

    `support` (bool (n, d), optional) restricts each row to its True entries (the others are
    0); every row needs at least one True entry.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or not np.isfinite(Y).all():
        raise ValueError(f"Y must be a finite 2-D array, got shape {Y.shape}")
    mask = np.ones(Y.shape, dtype=bool) if support is None else np.asarray(support, dtype=bool)
    if mask.shape != Y.shape or not mask.any(axis=1).all():
        raise ValueError("support must match Y's shape and keep at least one entry per row")
    order = np.argsort(np.where(mask, -Y, np.inf), axis=1, kind="stable")
    u = np.take_along_axis(np.where(mask, Y, 0.0), order, axis=1)
    kept = np.take_along_axis(mask, order, axis=1)
    css = np.cumsum(u, axis=1)
    k = np.arange(1, Y.shape[1] + 1)
    active = kept & (u - (css - 1.0) / k > 0)
    rho = active.sum(axis=1)
    shift = (np.take_along_axis(css, (rho - 1)[:, None], axis=1)[:, 0] - 1.0) / rho
    return np.where(mask, np.maximum(Y - shift[:, None], 0.0), 0.0)


def graph(N, D, alpha, *, eligible=None, support=None) -> np.ndarray:
    """W (m, m): row i is client i's aggregation weights (on the simplex, diagonal included).

    W_i = projection of p - D'_i / (2 alpha) onto the simplex, p = N / sum(N), D' = -cos with
    cos = 1 - D, and cos > 0.9 counted as 1. Ineligible sellers get weight 0 from the others;
    `support` (bool (m, m), optional) further restricts which edges may carry weight. Each
    client always keeps its own entry. Restricting to a support that contains the
    unrestricted solution's support leaves W unchanged.
    """
    N = checks.sizes(N)
    m = N.shape[0]
    D = checks.dissimilarities(D, m)
    alpha = checks.scalar(alpha, "alpha", low_open=True)
    allowed = np.broadcast_to(checks.mask(eligible, m)[None, :], (m, m))
    if support is not None:
        support = np.asarray(support, dtype=bool)
        if support.shape != (m, m):
            raise ValueError(f"support must have shape ({m}, {m}), got shape {support.shape}")
        allowed = allowed & support
    allowed = allowed | np.eye(m, dtype=bool)
    cos = 1.0 - D
    np.fill_diagonal(cos, 1.0)
    cos[cos > SIMILAR_ENOUGH] = 1.0
    Y = (N / N.sum())[None, :] + cos / (2.0 * alpha)
    return project_simplex(Y, allowed)
