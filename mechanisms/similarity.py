"""Pairwise model dissimilarity: D[i, j] = 1 - cos(upload_i - theta0, upload_j - theta0).

Uploads are hostile input: a row that is non-finite, or equal to theta0 (no update), has no
direction and is placed at the maximal distance 2 from every other row. theta0 must be
finite, and both must hold real numbers.

The overflow-safe row norms and normalisation here are the ones the whole market layer uses
(proxy targets, reputation, robust aggregation).
"""

from __future__ import annotations

import numpy as np

from mechanisms import checks


def _as_matrix(uploads: np.ndarray, theta0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (uploads, theta0) as floating arrays (float32 kept): real numbers
    only, theta0 finite (uploads may hold NaN/inf: hostile rows)."""
    uploads = checks.numbers(uploads, "uploads", keep_float32=True)
    theta0 = checks.numbers(theta0, "theta0", keep_float32=True)
    if uploads.ndim != 2:
        raise ValueError(f"uploads must be a 2-D array (m, P), got shape {uploads.shape}")
    if theta0.shape != (uploads.shape[1],):
        raise ValueError(
            f"theta0 must have shape ({uploads.shape[1]},) to match uploads, got {theta0.shape}"
        )
    if not np.isfinite(theta0).all():
        k = int(np.flatnonzero(~np.isfinite(theta0))[0])
        raise ValueError(f"theta0[{k}] = {theta0[k]!r} is invalid: theta0 must be finite")
    dtype = np.result_type(uploads.dtype, theta0.dtype)
    return uploads.astype(dtype, copy=False), theta0.astype(dtype, copy=False)


def _scaled_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows divided by their largest magnitude, so their norms cannot overflow.

    Returns (scaled, scale, finite, scaled_norm): non-finite rows become zero rows with
    scale 0; the true norm of a finite row is scale * scaled_norm."""
    finite = np.isfinite(X).all(axis=1)
    scale = np.where(finite, np.abs(np.where(finite[:, None], X, 0)).max(axis=1, initial=0), 0)
    safe = np.where(scale > 0, scale, 1).astype(X.dtype)
    scaled = np.where(finite[:, None], X / safe[:, None], 0)
    return scaled, scale, finite, np.linalg.norm(scaled, axis=1)


def row_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row without spurious overflow: inf for a row whose norm is
    beyond float range or that holds NaN/inf."""
    _, scale, finite, scaled_norm = _scaled_rows(X)
    with np.errstate(over="ignore"):
        norms = scale.astype(np.float64) * scaled_norm
    return np.where(finite, norms, np.inf)


def unit_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise the rows of X without overflow.

    Returns (unit, norm, valid): `valid` marks finite rows with a nonzero norm; invalid rows
    get a zero unit vector and norm 0. Rows are scaled by their largest magnitude before the
    norm, so huge finite rows do not overflow (a norm beyond float range is inf).
    """
    scaled, scale, finite, scaled_norm = _scaled_rows(X)
    valid = finite & (scale > 0)
    unit = scaled / np.where(valid, scaled_norm, 1)[:, None]
    with np.errstate(over="ignore"):
        norm = np.where(valid, scale.astype(np.float64) * scaled_norm, 0.0)
    return unit, norm, valid


def dissimilarity(uploads: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    """D (m, m) float64 with D[i, j] = 1 - cos(u_i - theta0, u_j - theta0), in [0, 2].

    One normalisation and one matrix product (no pair loop). The diagonal is 0; a row that is
    non-finite or equal to theta0 is at distance 2 from every other row. Float32 uploads are
    multiplied in float32 (cosines accurate to about 1e-6), float64 uploads in float64.
    """
    uploads, theta0 = _as_matrix(uploads, theta0)
    with np.errstate(over="ignore", invalid="ignore"):
        delta = uploads - theta0
    unit, _, valid = unit_rows(delta)
    cos = np.clip((unit @ unit.T).astype(np.float64), -1.0, 1.0)
    D = 1.0 - cos
    D[~valid, :] = 2.0
    D[:, ~valid] = 2.0
    np.fill_diagonal(D, 0.0)
    return D
