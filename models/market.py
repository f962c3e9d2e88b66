"""The Mesa model of the market: one step is one communication round.

The round pipeline (decide, train, upload, evaluate, similarity, reputation, clearing,
payments, aggregation, settle, adapt, churn, collect) follows the design document; the
learning engine trains every training client in one batched call, and the market maths
lives in `mechanisms` as pure functions.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import torch

import mechanisms
from agents.participant import Participant
from agents.strategies import Action, make_strategy
from mechanisms.ipfl import utilities
from mechanisms.similarity import dissimilarity
from models import checkpoint
from models.config import Group, MarketConfig, arrival_weights, group_counts, mechanism_overrides
from models.data import (
    Dataset,
    client_arrays,
    label_distribution,
    load_dataset,
    partition,
    split_clients,
)
from models.learning import NetSpec, accuracy, make_trainer
from models.ledger import Ledger, settlement

log = logging.getLogger(__name__)

AGENT_COLUMNS = {
    "participant": "slot", "role": "role", "strategy": "strategy_name",
    "reported_n": "reported_n", "true_n": "true_n", "reported_cost": "reported_cost",
    "true_cost": "true_cost", "valuation": "valuation", "imports": "imports",
    "exports": "exports", "paid": "paid", "received": "received", "utility": "utility",
    "wallet": "wallet", "reputation": "reputation", "accuracy": "accuracy",
    "local_accuracy": "local_accuracy", "excluded": "excluded", "active": "active",
}
MODEL_COLUMNS = ("welfare", "total_payments", "budget_surplus", "honest_accuracy", "active",
                 "trades", "excluded", "platform_balance")


class MarketModel(mesa.Model):
    """A model-sharing market with real local training.

    Build it from a `MarketConfig`, a dict, or keyword overrides of the defaults (which makes
    it usable directly by `mesa.batch_run`): `MarketModel(seed=3, mechanism="fedavg")`.
    `running` turns False after `config.rounds` rounds or when fewer than two participants
    remain; the model then drops Mesa's class-level reference to itself, so finished models
    are freed.
    """

    def __init__(self, config: MarketConfig | Mapping[str, Any] | None = None,
                 **overrides: Any):
        cfg = _build_config(config, overrides)
        super().__init__(rng=cfg.seed)
        if multiprocessing.parent_process() is not None:
            torch.set_num_threads(1)
        self.config = cfg
        self.round = 0
        self.mechanism = mechanisms.get(cfg.mechanism, **mechanism_overrides(cfg))
        streams = np.random.SeedSequence(cfg.seed).spawn(6)
        self._agent_seeds, self._churn_rng = streams[3], np.random.default_rng(streams[4])
        self.capacity = cfg.n_participants + cfg.max_arrivals
        self._setup_data(*streams[:2], validation_seed=streams[5])
        self.trainer = make_trainer(
            self.net_spec, self._client_data, lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
            seed=int(streams[2].generate_state(1)[0]))
        self.theta0 = self.trainer.theta0.detach().numpy().astype(np.float64)
        self.targets: np.ndarray | None = None
        self.reputation = self.mechanism.make_reputation(
            self.capacity, score_fn=self._validation_accuracy)
        self.ledger = Ledger()
        self.last_outcome: dict[str, Any] = {}
        self.hostile: list[tuple[int, int]] = []
        self.trade_log: list[tuple[int, int, int]] = []
        self.participants: list[Participant] = []
        for slot, group in enumerate(_expand(cfg.population, cfg.n_participants)):
            self._add_participant(slot, group)
        self.welfare = self.total_payments = self.budget_surplus = 0.0
        self.honest_accuracy = math.nan
        self.trades = 0
        self.excluded = 0
        self.datacollector = mesa.DataCollector(
            model_reporters={c: "n_active" if c == "active" else c for c in MODEL_COLUMNS},
            agent_reporters=AGENT_COLUMNS,
        )
        self.datacollector.collect(self)

    # set-up ---------------------------------------------------------------------------
    def _setup_data(self, partition_seed: np.random.SeedSequence,
                    split_seed: np.random.SeedSequence, *,
                    validation_seed: np.random.SeedSequence) -> None:
        cfg = self.config
        data = load_dataset(cfg.dataset, n_samples=cfg.n_samples, seed=cfg.data_seed,
                            root=cfg.data_root)
        parts = partition(data.y_train, self.capacity, cfg.partition, seed=partition_seed,
                          beta=cfg.beta, n_clusters=cfg.n_clusters, inner_beta=cfg.inner_beta,
                          classes_per_client=cfg.classes_per_client, min_size=cfg.min_size)
        train, test = split_clients(parts, cfg.test_fraction, seed=split_seed)
        if self.mechanism.reputation == "validation":
            data, self._validation = _hold_out(data, cfg.validation_size, validation_seed)
        self.dataset = data
        self._client_data = client_arrays(data.x_train, data.y_train, train)
        self._client_test = client_arrays(data.x_train, data.y_train, test)
        self.label_dist = label_distribution(data.y_train, train, data.n_classes)
        self.data_sizes = np.array([len(t) for t in train])
        arch = cfg.network
        if arch == "auto":
            arch = "cnn" if len(data.input_shape) == 3 else "mlp"
        self.net_spec = NetSpec(arch=arch, input_shape=data.input_shape,
                                n_classes=data.n_classes, hidden=tuple(cfg.hidden))

    def client_data(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Training inputs and labels of the participant in `slot`."""
        return self._client_data[slot]

    def _add_participant(self, slot: int, group: Group, joined: int = 0) -> Participant:
        cfg = self.config
        role_cost = {"trader": cfg.cost, "buyer": cfg.buyer_cost, "seller": cfg.cost}
        role_valuation = {"trader": cfg.valuation, "buyer": cfg.valuation, "seller": 0.0}
        seed = np.random.SeedSequence(self._agent_seeds.entropy,
                                      spawn_key=(*self._agent_seeds.spawn_key, slot))
        agent = Participant(
            self, slot=slot, role=group.role,
            strategy=make_strategy(group.strategy, group.params),
            true_n=int(self.data_sizes[slot]),
            true_cost=group.cost if group.cost is not None else role_cost[group.role],
            valuation=(group.valuation if group.valuation is not None
                       else role_valuation[group.role]),
            rng=np.random.default_rng(seed))
        agent.joined = joined
        self.ledger.endow(slot, cfg.endowment)
        self.participants.append(agent)
        return agent

    def _validation_accuracy(self, uploads: np.ndarray) -> np.ndarray:
        """Accuracy of uploaded models on the platform's validation split."""
        x, y = self._validation
        return accuracy(self.net_spec, torch.from_numpy(uploads.astype(np.float32)), x, y)

    # the round ------------------------------------------------------------------------
    @property
    def n_active(self) -> int:
        return sum(a.active for a in self.participants)

    def step(self) -> None:
        """One communication round (pipeline of the design document, section 2)."""
        if not self.running:
            raise RuntimeError("the market has finished; build a new MarketModel to run again")
        r = self.round
        active = [a for a in self.participants if a.active]
        slots = np.array([a.slot for a in active])
        for a in self.participants:
            a.reset_round()
        for a in active:
            a.decide(r)
        own = self._train(active, slots)
        uploads = self._uploads(active, own, r)
        self._evaluate(active, slots)
        finite = np.all(np.isfinite(uploads), axis=1)
        for a in np.array(active)[~finite]:
            self.hostile.append((r + 1, a.slot))
            log.info("round %d: participant %d uploaded a non-finite model; excluded",
                     r + 1, a.slot)
        D = dissimilarity(uploads, self.theta0)
        eligible = self._reputation(active, slots, uploads) & finite
        n_hat = np.array([a.reported_n for a in active], dtype=float)
        c_hat = np.array([a.reported_cost for a in active], dtype=float)
        K = np.array([a.valuation for a in active], dtype=float)
        outcome = self.mechanism.outcome(n_hat, c_hat, K, D, eligible)
        self._aggregate(outcome.A, n_hat, uploads, own, slots)
        self._settle(active, outcome, K, r)
        self.last_outcome.update(D=D, n_hat=n_hat, cost_hat=c_hat, K=K, eligible=eligible)
        for a in active:
            a.record(r + 1)
        self._churn(active, r)
        self.round += 1
        if self.round >= self.config.rounds or self.n_active < 2:
            self.running = False
        self.datacollector.collect(self)
        if not self.running:
            mesa.Agent._ids.pop(self, None)

    def _train(self, active: list[Participant], slots: np.ndarray) -> np.ndarray:
        """Local training of every training client in one batched call; returns own models."""
        mech = self.mechanism
        if self.targets is not None and mech.restart:
            self.trainer.set_params(slots, torch.from_numpy(
                self.targets[slots].astype(np.float32)))
        self._restart_diverged(slots)
        trainers = np.array([a.slot for a in active if a.action.train], dtype=np.int64)
        if trainers.size:
            pull = self.targets is not None and not mech.restart and mech.mu > 0
            targets = (torch.from_numpy(self.targets[trainers].astype(np.float32))
                       if pull else None)
            self.trainer.train(trainers, self.config.local_steps, targets=targets,
                               mu=mech.mu if pull else 0.0)
        return self.trainer.params[torch.from_numpy(slots)].detach().numpy().astype(np.float64)

    def _restart_diverged(self, slots: np.ndarray) -> None:
        """A client whose model went non-finite (diverged training) restarts from theta0."""
        finite = torch.isfinite(self.trainer.params[torch.from_numpy(slots)]).all(dim=1)
        diverged = slots[~finite.numpy()]
        if diverged.size:
            self.trainer.set_params(diverged, self.trainer.theta0.expand(diverged.size, -1))
            for slot in diverged.tolist():
                log.warning("round %d: participant %d's model diverged (non-finite "
                            "parameters); it restarts from the initial model",
                            self.round + 1, slot)

    def _uploads(self, active: list[Participant], own: np.ndarray, r: int) -> np.ndarray:
        """Each participant's upload: its model, or its attack transform of it."""
        honest = np.array([a.action.attack is None for a in active])
        honest_uploads = own[honest]
        uploads = own.copy()
        for k, a in enumerate(active):
            if a.action.attack is not None:
                uploads[k] = a.action.attack(own[k], honest_uploads, self.theta0, r, a.generator)
        return uploads

    def _evaluate(self, active: list[Participant], slots: np.ndarray) -> None:
        data = self.dataset
        personal = self.trainer.personalized_accuracy(data.x_test, data.y_test, self.label_dist)
        local = self.trainer.accuracy([x for x, _ in self._client_test],
                                      [y for _, y in self._client_test])
        for a in active:
            a.accuracy = float(personal[a.slot])
            a.local_accuracy = float(local[a.slot])

    def _reputation(self, active: list[Participant], slots: np.ndarray,
                    uploads: np.ndarray) -> np.ndarray:
        full = np.zeros((self.capacity, uploads.shape[1]))
        full[slots] = uploads
        present = np.zeros(self.capacity, dtype=bool)
        present[slots] = True
        self.reputation.update(full, self.theta0, present=present)
        scores = self.reputation.scores_
        eligible = self.reputation.eligible()[slots]
        for a, ok in zip(active, eligible, strict=True):
            a.reputation = float(scores[a.slot])
            a.excluded = not bool(ok)
        return eligible

    def _aggregate(self, A: np.ndarray, n_hat: np.ndarray, uploads: np.ndarray,
                   own: np.ndarray, slots: np.ndarray) -> None:
        V = self.mechanism.targets(A, n_hat, uploads, self.theta0, own)
        V[~np.all(np.isfinite(V), axis=1)] = self.theta0  # the target of a diverged model
        if self.targets is None:
            self.targets = np.tile(self.theta0, (self.capacity, 1))
        self.targets[slots] = V

    def _settle(self, active: list[Participant], outcome: Any, K: np.ndarray, r: int) -> None:
        """Realised utilities with true values; payments posted to the ledger."""
        A, P, platform = outcome.A, outcome.P, outcome.platform
        n_true = np.array([a.true_n for a in active], dtype=float)
        c_true = np.array([a.true_cost for a in active], dtype=float)
        U = utilities(A, P, n_true, c_true, K, platform)
        slots = [a.slot for a in active]
        transfers = [(slots[i] if i >= 0 else i, slots[j] if j >= 0 else j, units)
                     for i, j, units in settlement(P, platform)]
        buyers, sellers = np.nonzero(A)
        self.trade_log += [(r + 1, slots[i], slots[j])
                           for i, j in zip(buyers.tolist(), sellers.tolist(), strict=True)]
        paid, received = self.ledger.post_round(r + 1, transfers)
        self.ledger.check()
        for k, a in enumerate(active):
            a.imports = int(A[k].sum())
            a.exports = int(A[:, k].sum())
            a.utility = float(U[k])
            a.paid = paid.get(a.slot, 0.0)
            a.received = received.get(a.slot, 0.0)
        surplus = float(np.sum(platform))
        self.budget_surplus = surplus
        self.welfare = float(U.sum()) + surplus
        self.total_payments = float(np.clip(P, 0, None).sum())
        self.trades = int(A.sum())
        self.excluded = int(sum(a.excluded for a in active))
        honest = [a.accuracy for a in active if a.strategy.honest]
        self.honest_accuracy = float(np.mean(honest)) if honest else math.nan
        self.last_outcome = {"slots": slots, "A": A, "P": P, "platform": platform, "U": U}

    @property
    def platform_balance(self) -> float:
        return self.ledger.platform_balance

    def _churn(self, active: list[Participant], r: int) -> None:
        """Exits after negative utility (IR-strict, or with probability p) and arrivals."""
        cfg = self.config
        draws = self._churn_rng.random(len(active))
        for a, u in zip(active, draws, strict=True):
            unhappy = a.utility < -1e-9
            if cfg.churn == "ir_strict" and unhappy or cfg.churn == "ir_prob" and unhappy \
                    and u < cfg.churn_prob:
                a.leave(r + 1)
                log.info("round %d: participant %d left (utility %.3f)", r + 1, a.slot,
                         a.utility)
        arrived = len(self.participants) - cfg.n_participants
        if arrived < cfg.max_arrivals and self._churn_rng.random() < cfg.arrival_prob:
            groups = cfg.arrival_population
            weights = arrival_weights(groups)
            pick = int(self._churn_rng.choice(len(groups), p=weights / weights.sum()))
            agent = self._add_participant(len(self.participants), groups[pick], joined=r + 1)
            log.info("round %d: participant %d arrived (%s %s)", r + 1, agent.slot,
                     agent.role, agent.strategy.name)

    # results ----------------------------------------------------------------------------
    def model_frame(self):
        """Model-level data, one row per round (round 0 is the initial state)."""
        frame = self.datacollector.get_model_vars_dataframe()
        frame.index.name = "round"
        return frame.reset_index()

    def agent_frame(self):
        """Agent-level data, one row per participant and round."""
        frame = self.datacollector.get_agent_vars_dataframe().reset_index()
        frame = frame.rename(columns={"Step": "round"}).drop(columns=["AgentID"])
        return frame.sort_values(["round", "participant"]).reset_index(drop=True)

    def release(self) -> None:
        """Free everything this model holds (for long sweeps): agents, tensors, Mesa's table."""
        for agent in list(self.agents):
            agent.remove()
        mesa.Agent._ids.pop(self, None)
        self.participants = []
        self.trainer = None
        self.targets = None

    # checkpoints ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a checkpoint (data only, atomic) from which `load` resumes exactly."""
        if self.trainer is None:
            raise RuntimeError("this model was released; nothing to save")
        dc = self.datacollector
        state = {
            "config": self.config.to_dict(), "round": self.round, "steps": self.steps,
            "running": self.running,
            "rng": self.rng.bit_generator.state, "random": _random_state(self.random),
            "churn_rng": self._churn_rng.bit_generator.state,
            "trainer": self.trainer.state_dict(), "targets": self.targets,
            "reputation": self.reputation.state_dict(), "ledger": self.ledger.state_dict(),
            "hostile": self.hostile, "trade_log": self.trade_log,
            "participants": [_participant_state(a) for a in self.participants],
            "model_vars": {k: list(v) for k, v in dc.model_vars.items()},
            "agent_records": [[k, [list(rec) for rec in v]]
                              for k, v in dc._agent_records.items()],
            "scalars": {c: getattr(self, c) for c in MODEL_COLUMNS if c not in
                        ("active", "platform_balance")},
        }
        checkpoint.save(path, state)

    @classmethod
    def load(cls, path: str | Path) -> MarketModel:
        """Resume from a checkpoint; the continued run equals the uninterrupted one."""
        state = checkpoint.load(path)
        try:
            model = cls(MarketConfig.from_dict(state["config"]))
            model._restore(state)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise checkpoint.CheckpointError(
                f"{path}: checkpoint content is incomplete or malformed ({exc!r})") from exc
        return model

    def _restore(self, state: dict[str, Any]) -> None:
        cfg = self.config
        for saved in state["participants"][len(self.participants):]:
            group = Group(role=saved["role"], strategy=saved["strategy"],
                          params=saved["params"], valuation=saved["valuation"],
                          cost=saved["true_cost"])
            self._add_participant(saved["slot"], group, joined=saved["joined"])
        for agent, saved in zip(self.participants, state["participants"], strict=True):
            _load_participant(agent, saved)
        self.round, self.steps, self.running = state["round"], state["steps"], state["running"]
        self.rng.bit_generator.state = state["rng"]
        self.random.setstate(_random_state_tuple(state["random"]))
        self._churn_rng.bit_generator.state = state["churn_rng"]
        self.trainer.load_state_dict(state["trainer"])
        self.targets = state["targets"]
        self.reputation.load_state_dict(state["reputation"])
        self.ledger = Ledger.from_state(state["ledger"])
        self.hostile = [tuple(h) for h in state["hostile"]]
        self.trade_log = [tuple(t) for t in state["trade_log"]]
        for name, value in state["scalars"].items():
            setattr(self, name, value)
        dc = self.datacollector
        dc.model_vars = {k: list(v) for k, v in state["model_vars"].items()}
        dc._agent_records = {int(k): [tuple(rec) for rec in v]
                             for k, v in state["agent_records"]}
        if len(self.participants) > cfg.n_participants + cfg.max_arrivals:
            raise checkpoint.CheckpointError("checkpoint holds more participants than slots")
        if not self.running:
            mesa.Agent._ids.pop(self, None)


# internals --------------------------------------------------------------------------------
def _build_config(config: MarketConfig | Mapping[str, Any] | None,
                  overrides: Mapping[str, Any]) -> MarketConfig:
    if config is None:
        config = MarketConfig()
    elif isinstance(config, Mapping):
        config = MarketConfig.from_dict(config)
    elif not isinstance(config, MarketConfig):
        raise TypeError(f"config must be a MarketConfig or a dict, got {type(config).__name__}")
    return config.replace(**overrides) if overrides else config


def _hold_out(data: Dataset, size: int, seed: np.random.SeedSequence
              ) -> tuple[Dataset, tuple[np.ndarray, np.ndarray]]:
    """Split the platform's validation set off the global test set (a seeded subset)."""
    if size >= len(data.y_test):
        raise ValueError(f"validation_size={size} must be smaller than the test set "
                         f"({len(data.y_test)} samples)")
    order = np.random.default_rng(seed).permutation(len(data.y_test))
    held, kept = order[:size], np.sort(order[size:])
    rest = dataclasses.replace(data, x_test=data.x_test[kept], y_test=data.y_test[kept])
    return rest, (data.x_test[held], data.y_test[held])


def _expand(groups: tuple[Group, ...], total: int) -> list[Group]:
    """One group entry per participant slot, in group order."""
    return [g for g, n in zip(groups, group_counts(groups, total), strict=True)
            for _ in range(n)]


def _participant_state(a: Participant) -> dict[str, Any]:
    return {
        "slot": a.slot, "role": a.role, "strategy": a.strategy.name,
        "params": a.strategy.get_params(), "true_n": a.true_n, "true_cost": a.true_cost,
        "valuation": a.valuation, "active": a.active, "joined": a.joined, "left": a.left,
        "rng": a.generator.bit_generator.state, "strategy_state": a.strategy.state_dict(),
        "history": a.history, "unique_id": a.unique_id,
        "record": {k: getattr(a, k) for k in ("imports", "exports", "paid", "received",
                                              "utility", "accuracy", "local_accuracy",
                                              "reputation", "excluded")},
        "action": {"train": a.action.train, "n_factor": a.action.n_factor,
                   "cost_factor": a.action.cost_factor},
    }


def _load_participant(a: Participant, saved: dict[str, Any]) -> None:
    if saved["slot"] != a.slot or saved["unique_id"] != a.unique_id:
        raise checkpoint.CheckpointError("checkpoint participants do not match the config")
    a.active, a.joined, a.left = saved["active"], saved["joined"], saved["left"]
    a.generator.bit_generator.state = saved["rng"]
    a.strategy.load_state_dict(saved["strategy_state"])
    a.history = saved["history"]
    for key, value in saved["record"].items():
        setattr(a, key, value)
    a.action = Action(train=saved["action"]["train"], n_factor=saved["action"]["n_factor"],
                      cost_factor=saved["action"]["cost_factor"],
                      attack=getattr(a.strategy, "attack", None))


def _random_state(rnd) -> list[Any]:
    version, internal, gauss = rnd.getstate()
    return [version, list(internal), gauss]


def _random_state_tuple(state: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
