"""Input validation shared by the market functions and their audits: every error names the
argument, the bad value and the allowed range."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def _is_real(dtype: np.dtype) -> bool:
    """Integer or floating, not boolean."""
    return dtype != np.bool_ and (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    )


def numbers(x, name: str, keep_float32: bool = False) -> np.ndarray:
    """`x` as a float64 array (float32 kept as it is when `keep_float32`); booleans, complex
    numbers, strings and other non-numbers are a ValueError."""
    raw = np.asarray(x)
    if raw.dtype == object:
        try:
            return raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers, got {raw.dtype} values") from None
    if not _is_real(raw.dtype):
        raise ValueError(f"{name} must hold numbers (real), got {raw.dtype} values")
    if keep_float32 and raw.dtype == np.float32:
        return raw
    return raw.astype(np.float64)


SIZES = (1e-100, 1e100)  # data sizes allowed: the gain's powers of them stay within float64
SPREAD = 1e12  # the largest data size over the smallest in one market: their sums keep the
# digits of every size, so a pool less one seller never rounds to nothing
VALUATIONS = 1e100  # the largest K: sqrt(K / n) stays within float64 for every size allowed
POOLS = 1e150  # the largest pool (own data and imports) the gain takes


def sizes(N, name: str = "N") -> np.ndarray:
    """Data sizes: a finite 1-D float64 array, every entry in SIZES, the largest at most
    SPREAD times the smallest."""
    arr = numbers(N, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of data sizes, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < SIZES[0]) | (arr > SIZES[1])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{k}] = {arr[k]!r} is invalid: data sizes must be finite and "
                         f"in {interval(*SIZES)}")
    spread(arr, name)
    return arr


def spread(arr: np.ndarray, name: str) -> None:
    """Data sizes at most SPREAD apart (largest over smallest), or a ValueError."""
    if arr.size and arr.max() > SPREAD * arr.min():
        raise ValueError(f"{name} spans {arr.min():g} to {arr.max():g}: the largest data size "
                         f"may be at most {SPREAD:g} times the smallest")


def valuations(K, m: int, name: str = "K") -> np.ndarray:
    """Valuations: per_client, every entry at most VALUATIONS."""
    arr = per_client(K, m, name)
    if (arr > VALUATIONS).any():
        k = int(np.flatnonzero(arr > VALUATIONS)[0])
        raise ValueError(f"{name}[{k}] = {arr[k]!r} is invalid: allowed range is "
                         f"{interval(0.0, VALUATIONS)}")
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


def scalar(
    x,
    name: str,
    low: float = 0.0,
    high: float = np.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real in [low, high] (an end excluded when flagged open); booleans, strings
    and other non-numbers are a ValueError."""
    raw = np.asarray(x)
    if raw.ndim != 0 or not _is_real(raw.dtype):
        raise ValueError(f"{name} = {x!r} is not a real number")
    val = float(raw)
    too_low = val <= low if low_open else val < low
    too_high = val >= high if high_open else val > high
    if not np.isfinite(val) or too_low or too_high:
        allowed = interval(low, high, low_open, high_open)
        raise ValueError(f"{name} = {x!r} is out of range: allowed {allowed}")
    return val


def interval(low: float, high: float, low_open: bool = False, high_open: bool = False) -> str:
    """The interval as text, e.g. "[0, 1)" or "(0, inf)"."""
    left = "(" if low_open or np.isinf(low) else "["
    right = ")" if high_open or np.isinf(high) else "]"
    return f"{left}{low:g}, {high:g}{right}"


def market(N, cost, K, D, lam):
    """Validate the common (N, cost, K, D, lam) market arguments; return them as float64."""
    N = sizes(N)
    m = N.shape[0]
    return (
        N,
        per_client(cost, m, "cost"),
        valuations(K, m),
        dissimilarities(D, m),
        scalar(lam, "lam"),
    )


def parameter_problems(what: str, params: Mapping[str, object],
                       validators: Mapping[str, Callable[[str, object], object]]) -> list[str]:
    """One message per unknown or invalid entry of `params` for `what` (e.g. "reputation
    'similarity'"); each validator takes (name, value) and raises ValueError."""
    problems = []
    unknown = sorted(set(params) - set(validators))
    if unknown:
        problems.append(
            f"unknown parameter(s) {unknown} for {what}; allowed: {list(validators) or 'none'}"
        )
    for key, value in params.items():
        if key in validators:
            try:
                validators[key](key, value)
            except ValueError as err:
                problems.append(f"{what}: {err}")
    return problems
