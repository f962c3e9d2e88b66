"""Byzantine-robust aggregation of stacked vectors, pure numpy.

Every aggregator takes an (n, d) float array of n candidate vectors and returns one float64
vector of shape (d,). They replace the plain (weighted) mean inside a mechanism's
personalized aggregation, so a few hostile uploads cannot drag the result arbitrarily far.

Hostile input policy (shared by all aggregators):

- A row with any NaN or +-inf entry is dropped before aggregation and counted as one of the
  ``f`` faulty inputs: the rule then runs on the remaining rows with
  ``f_eff = max(f - dropped, 0)``, which keeps the same guarantee, since at most
  ``f - dropped`` of the remaining rows can still be faulty. Parameters derived from ``f``
  (Krum's neighbour count, Multi-Krum's selection size) are clipped to what the remaining
  rows allow.
- Huge finite rows are kept: each rule bounds their influence by itself. Intermediate
  overflow (a squared distance or a norm beyond float64's range) counts as an infinite
  distance, never as NaN.
- With no finite row left the result is the zero vector (``centered_clipping``: its centre).

``f`` is validated against the number of rows given (before dropping): 2 f < n for the
trimmed mean, n >= 2 f + 3 for Krum and Multi-Krum (Blanchard et al. 2017; with fewer rows a
group of f identical colluders outscores the honest rows). A ValueError names f, n and the
allowed range. Ties always break by the lowest row index.

``make_combiner`` wraps an aggregator as a drop-in replacement for the weighted sum ``w @ C``
used by the mechanism presets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from mechanisms import checks
from mechanisms.similarity import row_norms

logger = logging.getLogger(__name__)

AGGREGATORS: tuple[str, ...] = (
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
)

Combiner = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- validation


def _as_matrix(X: np.ndarray) -> np.ndarray:
    """X as a float64 (n, d) array, or ValueError."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be a 2-D (n, d) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"X must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_int(name: str, value: object, low: int, high: int, rule: str) -> int:
    """value as an int in [low, high], or ValueError naming the argument and the range."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name}={value} is out of range: {rule} (allowed {low}..{high})")
    return int(value)


def _check_f(f: object, n: int, name: str) -> int:
    """f within what `name` tolerates for n rows (:func:`max_f`), or ValueError."""
    if n < 1:
        raise ValueError(f"{name} needs at least one row, got n={n}")
    high = max_f(name, n)
    if name in ("krum", "multi_krum"):
        if high < 0:
            raise ValueError(f"{name} needs n >= 2*f + 3 >= 3 rows, got n={n}")
        rule = f"{name} needs n >= 2*f + 3 (Blanchard et al. 2017), n={n}"
    else:
        rule = f"{name} needs 0 <= f and 2*f < n={n}"
    return _check_int("f", f, 0, high, rule)


def max_f(name: str, n: int) -> int:
    """The largest f that aggregator `name` tolerates among n rows (-1: none): Krum and
    Multi-Krum need n >= 2 f + 3 (Blanchard et al. 2017), the others an honest majority,
    2 f < n."""
    if name in ("krum", "multi_krum"):
        return (n - 3) // 2
    return (n - 1) // 2


def _check_vector(name: str, value: object, d: int) -> np.ndarray:
    """value as a finite float64 (d,) vector, or ValueError."""
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


# --------------------------------------------------------------------------- internals


def _finite_rows(X: np.ndarray) -> tuple[np.ndarray, int]:
    """The rows of X without NaN/inf entries, and how many were dropped."""
    keep = np.all(np.isfinite(X), axis=1)
    dropped = int(X.shape[0] - keep.sum())
    if dropped:
        logger.debug("dropping %d non-finite rows of %d", dropped, X.shape[0])
        return X[keep], dropped
    return X, 0


def _coordinate_median(X: np.ndarray) -> np.ndarray:
    """Coordinate-wise median of finite rows by one sort (faster than np.median on axis 0).

    The two middle values are halved before adding, so huge values cannot overflow.
    """
    n = X.shape[0]
    S = np.sort(X, axis=0)
    return 0.5 * S[(n - 1) // 2] + 0.5 * S[n // 2]


def _squared_distances(X: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances from one Gram matrix; overflow gives inf.

    Rows are first centred on the coordinate-wise median (distances are translation
    invariant) so that close vectors far from the origin do not lose precision.
    """
    Xc = X - _coordinate_median(X)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", Xc, Xc)
        D2 = sq[:, None] + sq[None, :] - 2.0 * (Xc @ Xc.T)
    D2[~np.isfinite(D2)] = np.inf
    np.maximum(D2, 0.0, out=D2)
    return D2


def _krum_scores(X: np.ndarray, neighbours: int) -> np.ndarray:
    """Sum of squared distances from each row to its `neighbours` nearest other rows."""
    n = X.shape[0]
    if neighbours < 1 or n < 2:
        return np.zeros(n)
    D2 = _squared_distances(X)
    np.fill_diagonal(D2, np.inf)
    nearest = np.partition(D2, neighbours - 1, axis=1)[:, :neighbours]
    with np.errstate(over="ignore", invalid="ignore"):
        return nearest.sum(axis=1)


def _krum_neighbours(n: int, f: int, neighbours: object, name: str) -> int:
    """Validated neighbour count; the default n - f - 2 follows Blanchard et al. (2017) and
    is >= 1 whenever n >= 2 f + 3."""
    if neighbours is None:
        return n - f - 2
    return _check_int("neighbours", neighbours, 1, n - 1, f"{name} needs 1 <= neighbours < n={n}")


# --------------------------------------------------------------------------- aggregators


def median(X: np.ndarray) -> np.ndarray:
    """Coordinate-wise median of the rows of X (shape (d,))."""
    X = _as_matrix(X)
    if X.shape[0] < 1:
        raise ValueError(f"median needs at least one row, got n={X.shape[0]}")
    Xf, _ = _finite_rows(X)
    if Xf.shape[0] == 0:
        return np.zeros(X.shape[1])
    return _coordinate_median(Xf)


def trimmed_mean(X: np.ndarray, f: int) -> np.ndarray:
    """Coordinate-wise mean after dropping the f largest and f smallest values."""
    X = _as_matrix(X)
    f = _check_f(f, X.shape[0], "trimmed_mean")
    Xf, dropped = _finite_rows(X)
    n = Xf.shape[0]
    if n == 0:
        return np.zeros(X.shape[1])
    k = max(f - dropped, 0)
    return np.sort(Xf, axis=0)[k : n - k].mean(axis=0)


def krum(X: np.ndarray, f: int, neighbours: int | None = None) -> np.ndarray:
    """The row with the smallest sum of squared distances to its `neighbours` nearest rows.

    Default neighbours = n - f - 2 (Blanchard et al. 2017); ByzFL uses n - f - 1.
    """
    X = _as_matrix(X)
    f = _check_f(f, X.shape[0], "krum")
    k = _krum_neighbours(X.shape[0], f, neighbours, "krum")
    Xf, _ = _finite_rows(X)
    n = Xf.shape[0]
    if n == 0:
        return np.zeros(X.shape[1])
    scores = _krum_scores(Xf, min(k, n - 1))
    return Xf[int(np.argmin(scores))].copy()


def multi_krum(
    X: np.ndarray, f: int, m: int | None = None, neighbours: int | None = None
) -> np.ndarray:
    """Mean of the m rows with the best Krum scores (default m = n - f)."""
    X = _as_matrix(X)
    n_all = X.shape[0]
    f = _check_f(f, n_all, "multi_krum")
    k = _krum_neighbours(n_all, f, neighbours, "multi_krum")
    if m is not None:
        m = _check_int("m", m, 1, n_all, f"multi_krum needs 1 <= m <= n={n_all}")
    m = n_all - f if m is None else m
    Xf, _ = _finite_rows(X)
    n = Xf.shape[0]
    if n == 0:
        return np.zeros(X.shape[1])
    scores = _krum_scores(Xf, min(k, n - 1))
    chosen = np.argsort(scores, kind="stable")[: min(m, n)]
    return Xf[chosen].mean(axis=0)


def geometric_median(
    X: np.ndarray,
    tol: float = 1e-7,
    max_iter: int = 1000,
    *,
    nu: float = 1e-10,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """Geometric median by Weiszfeld's iteration, stopped when a step is <= tol * max(1, |z|).

    Distances are floored at `nu` (the smoothed Weiszfeld step of Pillutla et al.'s RFA), so a
    current estimate lying on a data point is well defined. The iteration starts at `init`
    (default: the coordinate-wise median). ByzFL's GeometricMedian is the case
    ``tol=0, max_iter=T, nu=nu, init=zeros``.
    """
    X = _as_matrix(X)
    if X.shape[0] < 1:
        raise ValueError(f"geometric_median needs at least one row, got n={X.shape[0]}")
    tol = checks.scalar(tol, "tol")
    max_iter = _check_int("max_iter", max_iter, 0, 10**9, "max_iter must be >= 0")
    nu = checks.scalar(nu, "nu", low_open=True)
    start = None if init is None else _check_vector("init", init, X.shape[1])
    Xf, _ = _finite_rows(X)
    if Xf.shape[0] == 0:
        return np.zeros(X.shape[1])
    z = _coordinate_median(Xf) if start is None else start.copy()
    for _ in range(max_iter):
        with np.errstate(over="ignore", invalid="ignore"):
            dist = row_norms(Xf - z)
        weights = np.where(np.isfinite(dist), 1.0 / np.maximum(dist, nu), 0.0)
        z_new = (weights @ Xf) / weights.sum()
        step = float(np.linalg.norm(z_new - z))
        z = z_new
        if step <= tol * max(1.0, float(np.linalg.norm(z))):
            break
    return z


def centered_clipping(
    X: np.ndarray,
    center: np.ndarray | None = None,
    tau: float = 10.0,
    iterations: int = 1,
) -> np.ndarray:
    """Centred clipping (Karimireddy et al. 2021): v <- v + mean_i clip_tau(x_i - v).

    Starts at `center` (zero when None); each difference is scaled down to norm at most tau.
    A difference whose norm overflows contributes nothing. Same update as ByzFL's
    CenteredClipping(m, L=iterations, tau=tau), averaged over the finite rows.
    """
    X = _as_matrix(X)
    n, d = X.shape
    if n < 1:
        raise ValueError(f"centered_clipping needs at least one row, got n={n}")
    tau = checks.scalar(tau, "tau")
    iterations = _check_int("iterations", iterations, 0, 10**9, "iterations must be >= 0")
    v = np.zeros(d) if center is None else _check_vector("center", center, d).copy()
    Xf, _ = _finite_rows(X)
    if Xf.shape[0] == 0:
        return v
    for _ in range(iterations):
        with np.errstate(over="ignore", invalid="ignore"):
            diff = Xf - v
        norms = row_norms(diff)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(norms > tau, tau / norms, 1.0)
        usable = np.isfinite(norms) & np.all(np.isfinite(diff), axis=1)
        factor = np.where(usable, factor, 0.0)
        diff[~usable] = 0.0
        v = v + (diff * factor[:, None]).mean(axis=0)
    return v


# --------------------------------------------------------------------------- combiner

_COMBINER_PARAMS: dict[str, tuple[str, ...]] = {
    "median": ("f",),
    "trimmed_mean": ("f",),
    "krum": ("f", "neighbours"),
    "multi_krum": ("f", "m", "neighbours"),
    "geometric_median": ("f", "tol", "max_iter", "nu"),
    "centered_clipping": ("f", "tau", "iterations"),
}


_BIG = 10**9


def _count(low: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        return _check_int(name, value, low, _BIG, f"{name} must be an integer >= {low}")

    return check


def _optional(check: Callable[[str, object], object]) -> Callable[[str, object], object]:
    return lambda name, value: None if value is None else check(name, value)


_PARAM_CHECKS: dict[str, Callable[[str, object], object]] = {
    "f": _count(0),
    "neighbours": _optional(_count(1)),
    "m": _optional(_count(1)),
    "tol": lambda name, value: checks.scalar(value, name),
    "max_iter": _count(0),
    "nu": lambda name, value: checks.scalar(value, name, low_open=True),
    "tau": _optional(lambda name, value: checks.scalar(value, name)),
    "iterations": _count(0),
}


def check_params(name: object, params: Mapping[str, object]) -> list[str]:
    """Every problem with robust aggregator `name` and its combiner parameters (empty when
    valid), each naming the parameter, the value and what is allowed. Builds nothing."""
    if name not in AGGREGATORS:
        return [f"unknown robust aggregator {name!r}; available: {', '.join(AGGREGATORS)}"]
    validators = {key: _PARAM_CHECKS[key] for key in _COMBINER_PARAMS[name]}
    return checks.parameter_problems(f"robust aggregator {name!r}", params, validators)


def _median_radius(C: np.ndarray, center: np.ndarray) -> float:
    """Median distance of the finite rows of C to center (0 when none is finite)."""
    finite, _ = _finite_rows(C)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = row_norms(finite - center)
    norms = norms[np.isfinite(norms)]
    return float(np.median(norms)) if norms.size else 0.0


def _aggregate(name: str, C: np.ndarray, f: int, params: dict[str, object]) -> np.ndarray:
    """Run aggregator `name` on C (n >= 1 rows) with f and its other parameters clipped to n."""
    n = C.shape[0]
    f = min(f, max_f(name, n))
    if f < 0:
        return median(C)
    if name == "median":
        return median(C)
    if name == "trimmed_mean":
        return trimmed_mean(C, f)
    if name == "geometric_median":
        return geometric_median(C, **params)
    if name == "centered_clipping":
        center = median(C)
        if params.get("tau") is not None:
            return centered_clipping(C, center=center, **params)
        rest = {key: value for key, value in params.items() if key != "tau"}
        return centered_clipping(C, center=center, tau=_median_radius(C, center), **rest)
    k = params.get("neighbours")
    k = None if k is None else min(int(k), n - 1)
    if name == "krum":
        return krum(C, f, neighbours=k)
    m = params.get("m")
    return multi_krum(C, f, m=None if m is None else min(int(m), n), neighbours=k)


def make_combiner(name: str, **params: object) -> Combiner:
    """A robust replacement for the weighted sum ``w @ C``: ``w.sum() * aggregator(C)``.

    The returned callable takes C (n, d) and weights w (n,) and returns a float64 (d,) vector.
    The individual weights are not used inside the robust statistic (a weighted statistic would
    let one contributor buy influence by inflating its weight); only their total scales the
    result, so the combiner is exact for a convex combination of identical rows.

    Every aggregator accepts ``f`` (ignored by those without one), so a sweep can vary the
    aggregator under one fault budget. ``f`` (default 1) is clipped, per call, to the largest
    value the aggregator accepts for the n rows given, so a buyer with few contributions still
    gets a result: n = 0 gives zeros, n = 1 gives that row times its weight. Krum and
    Multi-Krum need n >= 2 f + 3, so f is clipped to (n - 3) // 2; below 3 rows the
    coordinate-wise median (the mean of two rows) is used. Explicit ``neighbours`` and ``m``
    are clipped to n - 1 and n. Centred clipping starts at the coordinate-wise median of C (a
    zero centre would shrink whole models toward the origin) and, unless ``tau`` is given,
    clips at the median distance of the rows to that centre, a radius that follows the scale
    of the data.
    """
    problems = check_params(name, params)
    if problems:
        raise ValueError("; ".join(problems))
    f = int(params.get("f", 1))
    rest = {key: value for key, value in params.items() if key != "f"}

    def combine(C: np.ndarray, w: np.ndarray) -> np.ndarray:
        C = _as_matrix(C)
        w = np.asarray(w, dtype=np.float64)
        n, d = C.shape
        if w.shape != (n,):
            raise ValueError(f"w must have shape ({n},) to match C {C.shape}, got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("w must be finite")
        if n == 0:
            return np.zeros(d)
        return w.sum() * _aggregate(name, C, f, rest)

    return combine
