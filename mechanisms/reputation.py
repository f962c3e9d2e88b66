"""Reputation filters: score each seller's uploads over rounds and exclude the bad ones.

An excluded seller cannot be imported and earns nothing; the mechanism reads ``eligible()``
once per round, after ``update``.

Scored reputations ("similarity", "validation") keep an exponential moving average per
client, ``r <- beta * r + (1 - beta) * s``, where s is the round's observation; a client's
first observation initialises r (a late arrival is not dragged toward an arbitrary prior).
Exclusion rule, applied after each update over the *active* clients (present, not yet
excluded, scored at least once), with mu their median score (the attackers' own low scores
cannot drag the cutoff down with them)::

    exclude i  if  r_i < mu - threshold * |mu| - margin

The relative term is the RFFL-style "below a fraction of the typical score"; taking |mu|
keeps the cutoff below mu when mu is negative, and the absolute ``margin`` keeps a gap when mu
is near zero, so a market of clients with similar scores never excludes half of them. The
cutoff never exceeds the median, so at least half of the active clients always stay. Exclusion is
permanent, as in RFFL: an excluded client stays out even if its later uploads look honest
(otherwise an attacker could alternate). Absent clients (``present[i] == False``) keep their
score, are not eligible that round, and are neither scored nor compared against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

REPUTATIONS: tuple[str, ...] = ("none", "similarity", "validation")

ScoreFn = Callable[[np.ndarray], np.ndarray]


def _check_fraction(name: str, value: object, low: float, high: float | None, rule: str) -> float:
    """value as a finite float in [low, high) (no upper bound when high is None)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < low or (high is not None and v >= high):
        raise ValueError(f"{name}={value!r} is out of range: {rule}")
    return v


def unit_updates(uploads: np.ndarray, theta0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm update directions (uploads - theta0) and which rows have one.

    A row is valid when its update is finite and non-zero. Rows are scaled by their largest
    absolute entry before normalising, so huge finite uploads do not overflow.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        U = np.asarray(uploads, dtype=np.float64) - np.asarray(theta0, dtype=np.float64)
        peak = np.max(np.abs(U), axis=1) if U.shape[1] else np.zeros(U.shape[0])
    valid = np.all(np.isfinite(U), axis=1) & (peak > 0)
    V = U[valid] / peak[valid, None]
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return V, valid


def median_cosines(uploads: np.ndarray, theta0: np.ndarray, reference: np.ndarray,
                   norm_bound: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cosine to the coordinate-wise median update of the `reference` rows.

    Returns (cosines, scored). A row whose update is non-finite, zero, or longer than
    `norm_bound` times the reference rows' median update norm gets -1; such rows are also
    left out of the median. `scored` is False everywhere when no reference row remains.
    """
    V, valid = unit_updates(uploads, theta0)
    with np.errstate(over="ignore", invalid="ignore"):
        U = np.asarray(uploads, dtype=np.float64) - np.asarray(theta0, dtype=np.float64)
        norms = np.full(len(U), np.inf)
        norms[valid] = np.linalg.norm(U[valid], axis=1)
    usable = valid.copy()
    if norm_bound is not None and (valid & reference).any():
        usable &= norms <= norm_bound * np.median(norms[valid & reference])
    ref = usable & reference
    cos = np.full(len(U), -1.0)
    if not ref.any():
        return cos, np.zeros(len(U), dtype=bool)
    center = np.median(U[ref], axis=0)
    with np.errstate(over="ignore"):
        size = np.linalg.norm(center)
    if not np.isfinite(size) or size == 0:
        return cos, np.zeros(len(U), dtype=bool)
    cos[usable] = np.clip(V[usable[valid]] @ (center / size), -1.0, 1.0)
    return cos, np.ones(len(U), dtype=bool)


class Reputation:
    """The "none" reputation: nobody is ever excluded; absent clients are not eligible."""

    name = "none"

    def __init__(self, n_clients: int):
        if isinstance(n_clients, bool) or not isinstance(n_clients, int | np.integer):
            raise ValueError(f"n_clients must be an integer, got {n_clients!r}")
        if n_clients < 1:
            raise ValueError(f"n_clients={n_clients} is out of range: must be >= 1")
        self.n_clients = int(n_clients)
        self.scores_ = np.zeros(self.n_clients)
        self.excluded_ = np.zeros(self.n_clients, dtype=bool)
        self.seen_ = np.zeros(self.n_clients, dtype=bool)
        self.present_ = np.ones(self.n_clients, dtype=bool)

    def update(
        self, uploads: np.ndarray, theta0: np.ndarray, present: np.ndarray | None = None
    ) -> None:
        """Observe one round's uploads (m, P); `present` flags who took part (default all)."""
        self.present_ = self._check_update(uploads, theta0, present)

    def eligible(self) -> np.ndarray:
        """Bool (m,): sellers that may be imported this round."""
        return self.present_ & ~self.excluded_

    def state_dict(self) -> dict[str, Any]:
        """JSON-friendly state (name and numpy arrays), enough to resume exactly."""
        return {
            "name": self.name,
            "scores": self.scores_.copy(),
            "excluded": self.excluded_.copy(),
            "seen": self.seen_.copy(),
            "present": self.present_.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict of the same kind and size; ValueError otherwise."""
        if state.get("name") != self.name:
            raise ValueError(f"state is for reputation {state.get('name')!r}, not {self.name!r}")
        arrays = {}
        for key, dtype in (("scores", np.float64), ("excluded", bool), ("seen", bool),
                           ("present", bool)):
            arr = np.array(state[key], dtype=dtype)
            if arr.shape != (self.n_clients,):
                raise ValueError(
                    f"state {key!r} has shape {arr.shape}, expected ({self.n_clients},)"
                )
            arrays[key] = arr
        if not np.all(np.isfinite(arrays["scores"])):
            raise ValueError("state 'scores' must be finite")
        self.scores_, self.excluded_ = arrays["scores"], arrays["excluded"]
        self.seen_, self.present_ = arrays["seen"], arrays["present"]

    def _check_update(
        self, uploads: np.ndarray, theta0: np.ndarray, present: np.ndarray | None
    ) -> np.ndarray:
        """Validate update()'s arguments; return the presence mask."""
        uploads = np.asarray(uploads)
        if uploads.ndim != 2 or uploads.shape[0] != self.n_clients:
            raise ValueError(
                f"uploads must have shape ({self.n_clients}, P), got {uploads.shape}"
            )
        if np.shape(theta0) != (uploads.shape[1],):
            raise ValueError(
                f"theta0 must have shape ({uploads.shape[1]},), got {np.shape(theta0)}"
            )
        if present is None:
            return np.ones(self.n_clients, dtype=bool)
        mask = np.asarray(present)
        if mask.shape != (self.n_clients,) or mask.dtype != bool:
            raise ValueError(
                f"present must be a bool array of shape ({self.n_clients},), "
                f"got {mask.dtype} {mask.shape}"
            )
        return mask.copy()


class _ScoredReputation(Reputation, ABC):
    """EMA of per-round observations plus the threshold rule of the module docstring."""

    def __init__(
        self, n_clients: int, beta: float = 0.9, threshold: float = 0.5, margin: float = 0.05
    ):
        super().__init__(n_clients)
        self.beta = _check_fraction("beta", beta, 0.0, 1.0, "must be in [0, 1)")
        self.threshold = _check_fraction("threshold", threshold, 0.0, None, "must be >= 0")
        self.margin = _check_fraction("margin", margin, 0.0, None, "must be >= 0")

    @abstractmethod
    def _observe(
        self, uploads: np.ndarray, theta0: np.ndarray, present: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """This round's observation per client (m,) and which clients were observed."""

    def update(
        self, uploads: np.ndarray, theta0: np.ndarray, present: np.ndarray | None = None
    ) -> None:
        present = self._check_update(uploads, theta0, present)
        obs, observed = self._observe(np.asarray(uploads), np.asarray(theta0), present)
        first = observed & ~self.seen_
        again = observed & self.seen_
        self.scores_[first] = obs[first]
        self.scores_[again] = self.beta * self.scores_[again] + (1.0 - self.beta) * obs[again]
        self.seen_ |= observed
        self.present_ = present
        active = present & ~self.excluded_ & self.seen_
        if active.any():
            mu = float(np.median(self.scores_[active]))
            cutoff = mu - self.threshold * abs(mu) - self.margin
            self.excluded_ |= active & (self.scores_ < cutoff)


class SimilarityReputation(_ScoredReputation):
    """RFFL-style: each round's observation is the cosine between a client's update and the
    coordinate-wise median update of the present, non-excluded clients.

    Updates are ``upload - theta0``. The median is a reference a minority of attackers cannot
    steer (RFFL compares with the aggregate; a mean would follow the attackers). An update
    that is non-finite, zero, or longer than ``norm_bound`` times the median update norm (a
    boosted, random or constant model) scores -1 and stays out of the median; ``norm_bound``
    None disables the length check.
    """

    name = "similarity"

    def __init__(self, n_clients: int, beta: float = 0.9, threshold: float = 0.5,
                 margin: float = 0.05, norm_bound: float | None = 5.0):
        super().__init__(n_clients, beta=beta, threshold=threshold, margin=margin)
        self.norm_bound = (None if norm_bound is None else _check_fraction(
            "norm_bound", norm_bound, 1.0, None, "must be >= 1 (or None)"))

    def _observe(self, uploads, theta0, present):
        obs = np.zeros(self.n_clients)
        observed = np.zeros(self.n_clients, dtype=bool)
        idx = np.flatnonzero(present)
        if idx.size == 0:
            return obs, observed
        cos, scored = median_cosines(uploads[idx], theta0, ~self.excluded_[idx],
                                     self.norm_bound)
        obs[idx], observed[idx] = cos, scored
        return obs, observed


class ValidationReputation(_ScoredReputation):
    """Each round's observation is the accuracy of a client's upload on the platform's data.

    ``score_fn(uploads (k, P)) -> (k,)`` receives the finite uploads of present clients (in
    their original dtype) and returns accuracies in [0, 1]. A non-finite upload, or a
    non-finite accuracy, scores 0. Accuracies sit well above zero for every working model, so
    the default relative threshold is tighter than for cosines: excluded below 75 % of the
    median accuracy minus the margin.
    """

    name = "validation"

    def __init__(
        self,
        n_clients: int,
        score_fn: ScoreFn,
        beta: float = 0.9,
        threshold: float = 0.25,
        margin: float = 0.05,
    ):
        super().__init__(n_clients, beta=beta, threshold=threshold, margin=margin)
        if not callable(score_fn):
            raise ValueError(f"score_fn must be callable, got {score_fn!r}")
        self.score_fn = score_fn

    def _observe(self, uploads, theta0, present):
        obs = np.zeros(self.n_clients)
        observed = present.copy()
        finite = present & np.all(np.isfinite(uploads), axis=1)
        idx = np.flatnonzero(finite)
        if idx.size:
            acc = np.asarray(self.score_fn(uploads[idx]), dtype=np.float64)
            if acc.shape != (idx.size,):
                raise ValueError(
                    f"score_fn returned shape {acc.shape}, expected ({idx.size},)"
                )
            acc = np.where(np.isfinite(acc), acc, 0.0)
            if not np.all((acc >= 0.0) & (acc <= 1.0)):
                raise ValueError(f"score_fn must return accuracies in [0, 1], got {acc}")
            obs[idx] = acc
        return obs, observed


def make_reputation(
    name: str, n_clients: int, *, score_fn: ScoreFn | None = None, **params: object
) -> Reputation:
    """A reputation filter by name: "none", "similarity" or "validation".

    ``params`` are beta, threshold and margin for the scored kinds (and norm_bound for
    "similarity"). ``score_fn`` is required
    by "validation" and ignored by the others, so callers may always pass what they have.
    """
    if name not in REPUTATIONS:
        raise ValueError(f"unknown reputation {name!r}; available: {', '.join(REPUTATIONS)}")
    allowed = {"none": (), "similarity": ("beta", "threshold", "margin", "norm_bound"),
               "validation": ("beta", "threshold", "margin")}[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for reputation {name!r}; "
            f"allowed: {list(allowed) or 'none'}"
        )
    if name == "none":
        return Reputation(n_clients)
    if name == "similarity":
        return SimilarityReputation(n_clients, **params)
    if score_fn is None:
        raise ValueError("reputation 'validation' needs score_fn(uploads) -> accuracies")
    return ValidationReputation(n_clients, score_fn, **params)
