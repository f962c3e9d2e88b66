"""Reputation filters: score each seller's uploads over rounds and exclude the bad ones.

An excluded seller cannot be imported and earns nothing; the mechanism reads ``eligible()``
once per round, after ``update``.

Scored reputations ("similarity", "validation") keep an exponential moving average per
client, ``r <- beta * r + (1 - beta) * s``, where s is the round's observation; a client's
first observation initialises r (a late arrival is not dragged toward an arbitrary prior).
Exclusion rule, applied after each update over the *active* clients (present, not yet
excluded, scored at least once), with mu their typical score::

    exclude i  if  r_i < mu - threshold * |mu| - margin

The relative term is RFFL's "below a fraction of the typical score"; taking |mu| keeps the
cutoff below mu when mu is negative, and the absolute ``margin`` keeps a gap when mu is near
zero, so a market of clients with similar scores never excludes anyone. The cutoff never
exceeds mu, so the best active client always stays. Exclusion is permanent, as in RFFL: an
excluded client stays out even if its later uploads look honest (otherwise an attacker could
alternate). Absent clients (``present[i] == False``) keep their score, are not eligible that
round, and are neither scored nor compared against.

"similarity" (Xu and Lyu's RFFL, 2020) observes each client's mean cosine to the other
clients' updates and takes mu as the mean score; its ``reference="median"`` variant observes
the cosine to the coordinate-wise median update and takes mu as the median score, which a
coordinated minority cannot drag. "validation" observes the accuracy of each upload on the
platform's validation data, with mu the median accuracy.

:func:`check_params` validates a reputation's name and parameters without building it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mechanisms import checks
from mechanisms.similarity import unit_rows

REPUTATIONS: tuple[str, ...] = ("none", "similarity", "validation")
REFERENCES: tuple[str, ...] = ("mean", "median")

ScoreFn = Callable[[np.ndarray], np.ndarray]


def _fraction(name: str, value: object) -> float:
    return checks.scalar(value, name, 0.0, 1.0, high_open=True)


def _non_negative(name: str, value: object) -> float:
    return checks.scalar(value, name)


def _norm_bound(name: str, value: object) -> float | None:
    return None if value is None else checks.scalar(value, name, 1.0)


def _reference(name: str, value: object) -> str:
    if value not in REFERENCES:
        raise ValueError(f"{name} = {value!r} is invalid: allowed one of {list(REFERENCES)}")
    return str(value)


_SCORED = {"beta": _fraction, "threshold": _non_negative, "margin": _non_negative}
_PARAMS: dict[str, dict[str, Callable[[str, object], object]]] = {
    "none": {},
    "similarity": {**_SCORED, "norm_bound": _norm_bound, "reference": _reference},
    "validation": dict(_SCORED),
}


def check_params(name: object, params: Mapping[str, object]) -> list[str]:
    """Every problem with reputation `name` and its parameters (empty when valid), each
    naming the parameter, the value and what is allowed. Builds nothing. ``score_fn`` is not
    a parameter: "validation" receives it when it is built."""
    if name not in REPUTATIONS:
        return [f"reputation = {name!r} is invalid: allowed one of {list(REPUTATIONS)}"]
    return checks.parameter_problems(f"reputation {name!r}", params, _PARAMS[name])


def _updates(uploads: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(uploads, dtype=np.float64) - np.asarray(theta0, dtype=np.float64)


def unit_updates(uploads: np.ndarray, theta0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm update directions (uploads - theta0) of the rows that have one, and which
    rows those are (finite and non-zero updates; huge finite ones do not overflow)."""
    unit, _, valid = unit_rows(_updates(uploads, theta0))
    return unit[valid], valid


def _usable(norms: np.ndarray, valid: np.ndarray, reference: np.ndarray,
            norm_bound: float | None) -> np.ndarray:
    """Valid rows not longer than norm_bound times the reference rows' median norm."""
    usable = valid.copy()
    if norm_bound is not None and (valid & reference).any():
        usable &= norms <= norm_bound * np.median(norms[valid & reference])
    return usable


def mean_cosines(uploads: np.ndarray, theta0: np.ndarray, reference: np.ndarray,
                 norm_bound: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean cosine to the updates of the OTHER `reference` rows.

    Returns (cosines, scored). A row whose update is non-finite, zero, or longer than
    `norm_bound` times the reference rows' median update norm gets -1 (always scored) and is
    left out of the others' means. Any other row is scored when at least one other usable
    reference row exists. One pass: the sum of the reference unit vectors, less one's own.
    """
    unit, norms, valid = unit_rows(_updates(uploads, theta0))
    usable = _usable(norms, valid, reference, norm_bound)
    peers = usable & reference
    own = np.where(peers, np.einsum("ij,ij->i", unit, unit), 0.0)
    others = peers.sum() - peers.astype(float)
    cos = np.full(len(unit), -1.0)
    fits = usable & (others > 0)
    total = unit[peers].sum(axis=0)
    cos[fits] = np.clip((unit[fits] @ total - own[fits]) / others[fits], -1.0, 1.0)
    return cos, fits | ~usable


def median_cosines(uploads: np.ndarray, theta0: np.ndarray, reference: np.ndarray,
                   norm_bound: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cosine to the coordinate-wise median update of the `reference` rows.

    Returns (cosines, scored). A row whose update is non-finite, zero, or longer than
    `norm_bound` times the reference rows' median update norm gets -1; such rows are also
    left out of the median. `scored` is False everywhere when no reference row remains.
    """
    U = _updates(uploads, theta0)
    unit, norms, valid = unit_rows(U)
    usable = _usable(norms, valid, reference, norm_bound)
    ref = usable & reference
    cos = np.full(len(U), -1.0)
    if not ref.any():
        return cos, np.zeros(len(U), dtype=bool)
    center, size, ok = unit_rows(np.median(U[ref], axis=0)[None, :])
    if not ok[0]:
        return cos, np.zeros(len(U), dtype=bool)
    cos[usable] = np.clip(unit[usable] @ center[0], -1.0, 1.0)
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
        self.beta = _fraction("beta", beta)
        self.threshold = _non_negative("threshold", threshold)
        self.margin = _non_negative("margin", margin)

    @abstractmethod
    def _observe(
        self, uploads: np.ndarray, theta0: np.ndarray, present: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """This round's observation per client (m,) and which clients were observed."""

    def _typical(self, scores: np.ndarray) -> float:
        """mu of the threshold rule: the median score."""
        return float(np.median(scores))

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
            mu = self._typical(self.scores_[active])
            cutoff = mu - self.threshold * abs(mu) - self.margin
            self.excluded_ |= active & (self.scores_ < cutoff)


class SimilarityReputation(_ScoredReputation):
    """RFFL-style reputation on update directions (updates are ``upload - theta0``).

    Default (``reference="mean"``): each round's observation is a client's mean cosine to
    the updates of the other present, non-excluded clients, and the cutoff is relative to
    the mean score. ``reference="median"``: the observation is the cosine to the
    coordinate-wise median update of the present, non-excluded clients (itself included) and
    the cutoff is relative to the median score. A coordinated minority moves a mean but not
    a median, so the median variant is the more robust choice against colluding attackers.

    An update that is non-finite or zero scores -1 and takes no part in the others'
    observations. ``norm_bound`` (default 5, None: off) also scores -1 any update longer
    than norm_bound times the median update norm: cosines are blind to scale, and a boosted,
    random or constant model can point along the honest updates (an all-ones upload had a
    cosine of about 0.8 to honest MNIST-1D updates). Defaults: beta = 0.5 (the first rounds'
    nearly random directions fade quickly), threshold = 0.5 and margin = 0.15 (first-round
    cosines scatter around zero by about 0.1).
    """

    name = "similarity"

    def __init__(self, n_clients: int, beta: float = 0.5, threshold: float = 0.5,
                 margin: float = 0.15, norm_bound: float | None = 5.0,
                 reference: str = "mean"):
        super().__init__(n_clients, beta=beta, threshold=threshold, margin=margin)
        self.norm_bound = _norm_bound("norm_bound", norm_bound)
        self.reference = _reference("reference", reference)

    def _typical(self, scores: np.ndarray) -> float:
        """mu of the threshold rule: the mean score (the median with reference="median")."""
        if self.reference == "median":
            return float(np.median(scores))
        return float(np.mean(scores))

    def _observe(self, uploads, theta0, present):
        obs = np.zeros(self.n_clients)
        observed = np.zeros(self.n_clients, dtype=bool)
        idx = np.flatnonzero(present)
        if idx.size == 0:
            return obs, observed
        cosines = median_cosines if self.reference == "median" else mean_cosines
        cos, scored = cosines(uploads[idx], theta0, ~self.excluded_[idx], self.norm_bound)
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

    ``params`` are beta, threshold and margin for the scored kinds (and norm_bound and
    reference for "similarity"); every problem is reported at once (:func:`check_params`).
    ``score_fn`` is required by "validation" and ignored by the others, so callers may
    always pass what they have.
    """
    problems = check_params(name, params)
    if problems:
        raise ValueError("; ".join(problems))
    if name == "none":
        return Reputation(n_clients)
    if name == "similarity":
        return SimilarityReputation(n_clients, **params)
    if score_fn is None:
        raise ValueError("reputation 'validation' needs score_fn(uploads) -> accuracies")
    return ValidationReputation(n_clients, score_fn, **params)
