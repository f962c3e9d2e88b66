"""Upload transforms of dishonest participants: fake-model sellers and free-riders.

Every attack is called the same way::

    upload = attack(own, honest_uploads, theta0, round, rng)

- ``own`` (P,): the attacker's current parameter vector. For a free-rider, which never trains,
  this is the model it holds: the model it received (restart presets) or the initial model.
- ``honest_uploads`` (n, P): this round's uploads of honest participants; n may be 0. Rows
  with NaN/inf are ignored. The omniscient attacks (ALIE, IPM) use them; free-riders only use
  what they saw in EARLIER rounds (see ``DeltaFreeRider`` and ``DisguisedFreeRider``).
- ``theta0`` (P,): the common initial parameter vector; an *update* is ``upload - theta0``.
- ``round``: the communication round, counted from 0.
- ``rng``: a numpy Generator, the only source of randomness (required by the attacks that
  draw: ``shuffle``, ``gaussian``, ``disguised``; a ValueError otherwise).

The result has shape (P,) and the floating dtype of ``own`` (float64 when ``own`` is
integer). Every attack is a function with keyword-only parameters, and every entry of
``ATTACKS`` is such a function, callable the uniform way. The free-riders that remember
earlier rounds (``disguised``, ``delta``) take that memory as keyword parameters; their
small callable classes (``STATEFUL``) keep it between rounds and have ``state_dict()`` /
``load_state_dict()`` with JSON-friendly scalars and numpy arrays (no pickle needed).
``make_attack(name, **params)`` is the entry point for a participant: it validates the
parameters and returns a ready-to-call attack, a fresh stateful object for those two
(``hasattr(attack, "state_dict")`` tells whether it has state).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np

from mechanisms import checks

Attack = Callable[[np.ndarray, np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------- internals


def _check_inputs(
    own: np.ndarray, honest_uploads: np.ndarray, theta0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (own, finite honest rows as float64 (n, P), theta0 as float64)."""
    own = np.asarray(own)
    if own.ndim != 1:
        raise ValueError(f"own must be a 1-D parameter vector, got shape {own.shape}")
    p = own.shape[0]
    t0 = np.asarray(theta0, dtype=np.float64)
    if t0.shape != (p,):
        raise ValueError(f"theta0 must have shape ({p},) like own, got {t0.shape}")
    honest = np.asarray(honest_uploads, dtype=np.float64)
    if honest.size == 0:
        honest = honest.reshape(0, p)
    if honest.ndim != 2 or honest.shape[1] != p:
        raise ValueError(f"honest_uploads must have shape (n, {p}), got {honest.shape}")
    return own, honest[np.all(np.isfinite(honest), axis=1)], t0


def _out_dtype(own: np.ndarray) -> np.dtype:
    return own.dtype if np.issubdtype(own.dtype, np.floating) else np.dtype(np.float64)


def _check_real(name: str, value: object, *, positive: bool = False) -> float:
    """value as a finite float (> 0 when positive), or ValueError naming it."""
    if positive:
        return checks.scalar(value, name, low_open=True)
    return checks.scalar(value, name, -np.inf)


def _check_rng(rng: object, attack: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng = {rng!r} is invalid: {attack} draws from a numpy Generator")
    return rng


def _copy_or_none(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a.copy()


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r} is out of range: must be an integer >= 1")
    return int(value)


# --------------------------------------------------------------------------- fake sellers


def sign_flip(own, honest_uploads, theta0, round, rng) -> np.ndarray:
    """Flip the update: theta0 - (own - theta0); its update has cosine -1 with the original."""
    own, _, t0 = _check_inputs(own, honest_uploads, theta0)
    return (2.0 * t0 - own).astype(_out_dtype(own))


def shuffle(own, honest_uploads, theta0, round, rng) -> np.ndarray:
    """A random permutation (drawn from rng) of the parameter vector own."""
    own, _, _ = _check_inputs(own, honest_uploads, theta0)
    return own[_check_rng(rng, "shuffle").permutation(own.shape[0])].astype(_out_dtype(own))


def constant(own, honest_uploads, theta0, round, rng, *, value: float = 1.0) -> np.ndarray:
    """Every parameter equal to `value` (all ones by default)."""
    own, _, _ = _check_inputs(own, honest_uploads, theta0)
    return np.full(own.shape, _check_real("value", value), dtype=_out_dtype(own))


def gaussian(own, honest_uploads, theta0, round, rng, *, sigma: float = 1.0) -> np.ndarray:
    """Parameters drawn i.i.d. from N(0, sigma^2)."""
    own, _, _ = _check_inputs(own, honest_uploads, theta0)
    sigma = _check_real("sigma", sigma, positive=True)
    return _check_rng(rng, "gaussian").normal(0.0, sigma, size=own.shape).astype(_out_dtype(own))


def scaled(own, honest_uploads, theta0, round, rng, *, factor: float = 10.0) -> np.ndarray:
    """Boost the update: theta0 + factor * (own - theta0)."""
    own, _, t0 = _check_inputs(own, honest_uploads, theta0)
    factor = _check_real("factor", factor)
    return (t0 + factor * (own - t0)).astype(_out_dtype(own))


def non_finite(own, honest_uploads, theta0, round, rng, *, kind: str = "nan") -> np.ndarray:
    """A hostile upload that is not a model at all: every parameter NaN (or +inf)."""
    own, _, _ = _check_inputs(own, honest_uploads, theta0)
    return np.full(own.shape, np.nan if kind == "nan" else np.inf, dtype=_out_dtype(own))


def alie_z(n_clients: int, n_byzantine: int) -> float:
    """Baruch et al. (2019)'s z_max = Phi^-1((n - s) / n), s = floor(n / 2 + 1) - f.

    When the attackers are a majority the quantile reaches 1; it is capped at 1 - 1 / (2 n),
    so z stays finite.
    """
    n = _check_count("n_clients", n_clients)
    f = _check_count("n_byzantine", n_byzantine)
    s = n // 2 + 1 - f
    q = min((n - s) / n, 1.0 - 0.5 / n)
    return NormalDist().inv_cdf(q)


def alie(
    own, honest_uploads, theta0, round, rng, *, z: float | None = None, n_byzantine: int = 1
) -> np.ndarray:
    """"A little is enough": mean - z * std per coordinate over the honest uploads.

    std is the sample standard deviation (ddof=1, 0 with one upload), as in ByzFL. Default z
    from ``alie_z(n_honest + n_byzantine, n_byzantine)``. With no honest upload there is
    nothing to imitate: ``own`` is returned unchanged.
    """
    own, honest, _ = _check_inputs(own, honest_uploads, theta0)
    n_byzantine = _check_count("n_byzantine", n_byzantine)
    n = honest.shape[0]
    if n == 0:
        return own.astype(_out_dtype(own))
    zz = alie_z(n + n_byzantine, n_byzantine) if z is None else _check_real("z", z)
    std = honest.std(axis=0, ddof=1) if n > 1 else np.zeros(own.shape[0])
    return (honest.mean(axis=0) - zz * std).astype(_out_dtype(own))


def ipm(own, honest_uploads, theta0, round, rng, *, epsilon: float = 0.5) -> np.ndarray:
    """Inner-product manipulation (Xie et al. 2020): theta0 - epsilon * mean honest update.

    With no honest upload, ``own`` is returned unchanged.
    """
    own, honest, t0 = _check_inputs(own, honest_uploads, theta0)
    epsilon = _check_real("epsilon", epsilon, positive=True)
    if honest.shape[0] == 0:
        return own.astype(_out_dtype(own))
    return (t0 - epsilon * (honest.mean(axis=0) - t0)).astype(_out_dtype(own))


# --------------------------------------------------------------------------- free-riders


def plain(own, honest_uploads, theta0, round, rng) -> np.ndarray:
    """Plain free-rider: upload the model it holds (received or initial), untrained."""
    own, _, _ = _check_inputs(own, honest_uploads, theta0)
    return own.astype(_out_dtype(own), copy=True)


def disguised(
    own, honest_uploads, theta0, round, rng, *, phi: float = 1.0, gamma: float = 1.0,
    sigma: float | None = None,
) -> np.ndarray:
    """Fraboni et al. (2021)'s disguised free-rider: own + phi * sigma * t^(-gamma) * N(0, I),
    t = round + 1. Without a noise scale ``sigma`` (not estimated yet) the noise is zero, a
    plain free-ride; the normal draws are made either way. :class:`DisguisedFreeRider`
    estimates sigma from the first observed update."""
    own, _, _ = _check_inputs(own, honest_uploads, theta0)
    if round < 0:
        raise ValueError(f"round={round} is out of range: must be >= 0")
    phi = _check_real("phi", phi, positive=True)
    gamma = _check_real("gamma", gamma, positive=True)
    scale = 0.0
    if sigma is not None:
        scale = phi * checks.scalar(sigma, "sigma") * float(round + 1) ** (-gamma)
    noise = _check_rng(rng, "disguised").standard_normal(own.shape[0])
    return (own.astype(np.float64) + scale * noise).astype(_out_dtype(own))


def delta(
    own, honest_uploads, theta0, round, rng, *, last: np.ndarray | None = None,
    prev: np.ndarray | None = None,
) -> np.ndarray:
    """Extrapolate the market's trajectory without training: last + (last - prev), from the
    two latest observed global models (prev = theta0 when only one exists); ``own`` (a plain
    free-ride) before any observation. :class:`DeltaFreeRider` records the observations."""
    own, _, t0 = _check_inputs(own, honest_uploads, theta0)
    if last is None:
        return own.astype(_out_dtype(own), copy=True)
    last = np.asarray(last, dtype=np.float64)
    if last.shape != own.shape:
        raise ValueError(f"own has shape {own.shape}, but earlier rounds had {last.shape}")
    base = t0 if prev is None else np.asarray(prev, dtype=np.float64)
    return (2.0 * last - base).astype(_out_dtype(own))


class DisguisedFreeRider:
    """:func:`disguised` with sigma fixed by the ``sigma`` parameter, or else estimated once,
    from the first observed update: the standard deviation, over its coordinates, of (mean
    finite honest upload - theta0) in the first call that received honest uploads. That
    observation only serves later calls: until an estimate exists the upload carries no
    noise (a plain free-ride). The paper studies gamma in {0.5, 1, 2}; any gamma > 0 is
    accepted.
    """

    def __init__(self, phi: float = 1.0, gamma: float = 1.0, sigma: float | None = None):
        self.phi = _check_real("phi", phi, positive=True)
        self.gamma = _check_real("gamma", gamma, positive=True)
        self.sigma = None if sigma is None else _check_real("sigma", sigma, positive=True)
        self.sigma_: float | None = self.sigma

    def noise_scale(self, round: int) -> float:
        """phi * sigma * (round + 1)^(-gamma), 0 while sigma is unknown."""
        if self.sigma_ is None:
            return 0.0
        return self.phi * self.sigma_ * float(round + 1) ** (-self.gamma)

    def __call__(self, own, honest_uploads, theta0, round, rng) -> np.ndarray:
        out = disguised(own, honest_uploads, theta0, round, rng, phi=self.phi,
                        gamma=self.gamma, sigma=self.sigma_)
        _, honest, t0 = _check_inputs(own, honest_uploads, theta0)
        if self.sigma_ is None and honest.shape[0] > 0:
            self.sigma_ = float(np.std(honest.mean(axis=0) - t0))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sigma = state["sigma"]
        self.sigma_ = None if sigma is None else checks.scalar(sigma, "state sigma")


class DeltaFreeRider:
    """:func:`delta` with its observations recorded: g_k is the mean of the finite honest
    uploads passed to the call of round k, recorded AFTER the upload of that round is
    computed, so the upload of round t depends only on rounds before t. last and prev are
    the two latest observations; rounds without honest uploads add no observation.
    """

    def __init__(self) -> None:
        self.last_: np.ndarray | None = None
        self.prev_: np.ndarray | None = None

    def __call__(self, own, honest_uploads, theta0, round, rng) -> np.ndarray:
        out = delta(own, honest_uploads, theta0, round, rng, last=self.last_, prev=self.prev_)
        _, honest, _ = _check_inputs(own, honest_uploads, theta0)
        if honest.shape[0] > 0:
            self.prev_, self.last_ = self.last_, honest.mean(axis=0)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"last": _copy_or_none(self.last_), "prev": _copy_or_none(self.prev_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        last, prev = state["last"], state["prev"]
        if last is None and prev is not None:
            raise ValueError("state 'prev' is set while 'last' is None")
        self.last_ = None if last is None else np.array(last, dtype=np.float64)
        self.prev_ = None if prev is None else np.array(prev, dtype=np.float64)
        if self.prev_ is not None and self.prev_.shape != self.last_.shape:
            raise ValueError(
                f"state shapes differ: last {self.last_.shape}, prev {self.prev_.shape}"
            )


# --------------------------------------------------------------------------- registry

ATTACKS: dict[str, Attack] = {
    "sign_flip": sign_flip,
    "shuffle": shuffle,
    "constant": constant,
    "gaussian": gaussian,
    "scaled": scaled,
    "alie": alie,
    "ipm": ipm,
    "non_finite": non_finite,
    "plain": plain,
    "disguised": disguised,
    "delta": delta,
}
STATEFUL: dict[str, Callable[..., Attack]] = {
    "disguised": DisguisedFreeRider,
    "delta": DeltaFreeRider,
}
FAKE_SELLERS: tuple[str, ...] = (
    "sign_flip", "shuffle", "constant", "gaussian", "scaled", "alie", "ipm", "non_finite"
)
FREE_RIDERS: tuple[str, ...] = ("plain", "disguised", "delta")

_PARAMS: dict[str, dict[str, Callable[[object], object]]] = {
    "constant": {"value": lambda v: _check_real("value", v)},
    "gaussian": {"sigma": lambda v: _check_real("sigma", v, positive=True)},
    "scaled": {"factor": lambda v: _check_real("factor", v)},
    "alie": {
        "z": lambda v: None if v is None else _check_real("z", v),
        "n_byzantine": lambda v: _check_count("n_byzantine", v),
    },
    "ipm": {"epsilon": lambda v: _check_real("epsilon", v, positive=True)},
    "non_finite": {"kind": lambda v: _check_choice("kind", v, ("nan", "inf"))},
}


def _reject_unknown(name: str, params: dict[str, object], allowed: list[str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for attack {name!r}; allowed: {allowed or 'none'}"
        )


def make_attack(name: str, **params: object) -> Attack:
    """A ready-to-call attack by registry name, with its parameters validated now: the
    function of ``ATTACKS`` with those parameters bound, or a fresh object of ``STATEFUL``
    (its own memory of earlier rounds) for the free-riders that have one."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; available: {', '.join(ATTACKS)}")
    if name in STATEFUL:
        factory = STATEFUL[name]
        _reject_unknown(name, params, list(inspect.signature(factory).parameters))
        return factory(**params)
    validators = _PARAMS.get(name, {})
    _reject_unknown(name, params, sorted(validators))
    clean = {key: validators[key](value) for key, value in params.items()}
    return functools.partial(ATTACKS[name], **clean) if clean else ATTACKS[name]
