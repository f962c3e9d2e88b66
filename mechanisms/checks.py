"""Input validation shared by the market functions and their audits: every error names the
argument, the bad value and the allowed range."""

from __future__ import annotations

import numpy as np


def numbers(x, name: str) -> np.ndarray:
    """`x` as a float64 array; booleans, strings and other non-numbers are a ValueError."""
    raw = np.asarray(x)
    if raw.dtype == np.bool_ or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == object):
        raise ValueError(f"{name} must hold numbers, got {raw.dtype} values")
    try:
        return raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers, got {raw.dtype} values") from None


def sizes(N, name: str = "N") -> np.ndarray:
    """Data sizes: a finite 1-D float64 array, every entry > 0."""
    arr = numbers(N, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of data sizes, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{k}] = {arr[k]!r} is invalid: data sizes must be finite and > 0")
    return arr


def per_client(x, m: int, name: str) -> np.ndarray:
    """A finite, non-negative per-participant vector of length m (a scalar is broadcast)."""
    arr = numbers(x, name)
    if arr.ndim == 0:
        arr = np.full(m, float(arr))
    if arr.shape != (m,):
        raise ValueError(f"{name} must be a scalar or have shape ({m},), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{k}] = {arr[k]!r} is invalid: allowed range is [0, inf)")
    return arr


def dissimilarities(D, m: int, name: str = "D") -> np.ndarray:
    """An (m, m) dissimilarity matrix with finite entries in [0, 2]."""
    arr = numbers(D, name)
    if arr.shape != (m, m):
        raise ValueError(f"{name} must have shape ({m}, {m}), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 2)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{name}[{i}, {j}] = {arr[i, j]!r} is invalid: allowed range is [0, 2]")
    return arr


def graph(A, m: int, name: str = "A") -> np.ndarray:
    """A boolean (m, m) import graph with a False diagonal."""
    arr = np.asarray(A)
    if arr.shape != (m, m):
        raise ValueError(f"{name} must have shape ({m}, {m}), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    if np.diagonal(arr).any():
        k = int(np.flatnonzero(np.diagonal(arr))[0])
        raise ValueError(f"{name}[{k}, {k}] is True: a participant cannot import its own model")
    return arr


def mask(eligible, m: int, name: str = "eligible") -> np.ndarray:
    """Optional boolean (m,) seller mask; None means everyone is eligible."""
    if eligible is None:
        return np.ones(m, dtype=bool)
    arr = np.asarray(eligible)
    if arr.shape != (m,) or arr.dtype != np.bool_:
        raise ValueError(
            f"{name} must be a boolean array of shape ({m},), got {arr.dtype} {arr.shape}"
        )
    return arr


def scalar(x, name: str, low: float = 0.0, high: float = np.inf, low_open: bool = False) -> float:
    """A finite real in [low, high] (or (low, high] when low_open)."""
    try:
        val = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {x!r} is not a real number") from None
    too_low = val <= low if low_open else val < low
    if not np.isfinite(val) or too_low or val > high:
        left = "(" if low_open else "["
        right = ")" if np.isinf(high) else "]"
        raise ValueError(f"{name} = {x!r} is out of range: allowed {left}{low}, {high}{right}")
    return val


def market(N, cost, K, D, lam):
    """Validate the common (N, cost, K, D, lam) market arguments; return them as float64."""
    N = sizes(N)
    m = N.shape[0]
    return (
        N,
        per_client(cost, m, "cost"),
        per_client(K, m, "K"),
        dissimilarities(D, m),
        scalar(lam, "lam"),
    )
