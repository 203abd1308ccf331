"""The cloud of EICPP: a Flower strategy implementing Algorithm 4 with hospital-level DP.

Each round the cloud samples hospitals (Algorithm 4, step 3), sends them ``W_cloud``
(step 6), receives ``W_hospital_new`` (step 8), forms the updates ``W_diff = W_hospital_new
- W_cloud`` (steps 9-10), clips each to L2 norm ``C``, adds ``N(0, sigma^2 C^2)`` to their
sum (step 12) and applies ``W_cloud_new = W_cloud + sum' / m`` (step 13), where ``m`` is the
*expected* number of sampled hospitals (a fixed denominator, so one hospital moves the
result by at most ``C / m`` whatever the others do). Without noise (``sigma = 0``) the
denominator is the number of hospitals that replied, which is Algorithm 4 as printed.

Fault tolerance: hospitals whose reply carries an error (a crashed ClientApp) are left out
and the round is aggregated from the others as long as at least ``cfg.min_hospitals``
replied; otherwise the model is kept and nothing is released (no privacy cost).

Sampling is drawn from generators seeded by ``(seed, round)``. The noise is too when
``cfg.noise_source == "seeded"`` (a run resumed from a checkpoint then repeats the
uninterrupted run exactly, and a :class:`~medshield.secure.SecurityWarning` says the noise is
predictable from the seed); with ``"os"`` (secure mode, the deployment default) each
round's noise generator is seeded from OS entropy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from flwr.supercore import log

from medshield.federated.accounting import HospitalAccountant
from medshield.federated.config import FLConfig

__all__ = ["EICPPCloud", "wait_for_nodes", "clip_update", "round_rng"]


def round_rng(seed: int, server_round: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of one round (sampling = 1, noise = 2)."""
    return np.random.default_rng([seed, server_round, stream])


def wait_for_nodes(grid: Grid, minimum: int, timeout: float = 600.0) -> list[int]:
    """Node ids once at least ``minimum`` are connected (sorted); raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < minimum:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of the {minimum} hospitals needed "
                               f"connected within {timeout} s; start more SuperNodes or "
                               "lower min_available_nodes")
        log(INFO, "Waiting for hospitals: %d connected (need %d).", len(nodes), minimum)
        time.sleep(0.5)
    return nodes


def clip_update(update: list[np.ndarray], clip: float) -> tuple[list[np.ndarray], float]:
    """Scale ``update`` (all arrays as one vector) to L2 norm at most ``clip``.

    Returns the clipped arrays and the norm before clipping. ``clip = 0`` keeps it as is.
    """
    norm = math.sqrt(sum(float(np.sum(np.square(u, dtype=np.float64))) for u in update))
    if clip <= 0 or norm <= clip:
        return update, norm
    scale = clip / norm
    return [u * scale for u in update], norm


class EICPPCloud(FedAvg):
    """Algorithm 4 of EICPP as a Flower (Message API) strategy.

    Parameters
    ----------
    cfg
        The run's configuration (hospitals ``q``, sampling, ``update_clip`` ``C``, seed).
        It is also sent to the hospitals in every round's ``ConfigRecord``.
    noise_multiplier
        ``sigma`` (already calibrated to the target epsilon, see
        :func:`medshield.federated.accounting.calibrate_noise_multiplier`); 0 = no noise.
    accountant
        Composes every noisy release; required when ``noise_multiplier > 0``.

    Notes
    -----
    Reuses Flower's :class:`~flwr.serverapp.strategy.FedAvg` for message construction and
    (disabled) federated evaluation; sampling and aggregation are Algorithm 4's.
    """

    def __init__(self, *, cfg: FLConfig, noise_multiplier: float = 0.0,
                 accountant: HospitalAccountant | None = None,
                 node_timeout: float = 600.0) -> None:
        super().__init__(fraction_train=cfg.sample_rate, fraction_evaluate=0.0,
                         min_train_nodes=1, min_evaluate_nodes=0,
                         min_available_nodes=cfg.hospitals)
        if noise_multiplier > 0 and accountant is None:
            raise ValueError("a noisy cloud needs an accountant (HospitalAccountant) so the "
                             "privacy spent is known")
        if noise_multiplier > 0 and cfg.update_clip <= 0:
            raise ValueError("noise without clipping gives no guarantee: set update_clip > 0")
        self.cfg = cfg
        self.noise_multiplier = float(noise_multiplier)
        self.accountant = accountant
        self.node_timeout = node_timeout
        self.current_arrays = ArrayRecord()
        self.last_info: dict[str, float] = {}

    def summary(self) -> None:
        log(INFO, "\t├──> EICPP cloud (Algorithm 4): %d hospitals, sampling %s at %.2f",
            self.cfg.hospitals, self.cfg.sampling, self.cfg.sample_rate)
        log(INFO, "\t├──> update clip C=%s, noise multiplier sigma=%.4f",
            self.cfg.update_clip, self.noise_multiplier)

    # ------------------------------------------------------------------ step 3: sampling
    def sample(self, server_round: int, nodes: list[int]) -> list[int]:
        """The hospitals of this round (seeded by ``(seed, round)``)."""
        rng = round_rng(self.cfg.seed, server_round, 1)
        if self.cfg.sampling == "poisson":
            keep = rng.random(len(nodes)) < self.cfg.sample_rate
            return [n for n, k in zip(nodes, keep, strict=True) if k]
        m = min(self.cfg.sample_size, len(nodes))
        # choose positions, not ids: node ids are uint64 and NumPy would round them
        picked = rng.choice(len(nodes), size=m, replace=False)
        return sorted(int(nodes[i]) for i in picked)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Sample hospitals and send them ``W_cloud`` and the configuration (steps 3-6)."""
        self.current_arrays = arrays
        nodes = wait_for_nodes(grid, self.min_available_nodes, self.node_timeout)
        chosen = self.sample(server_round, nodes)
        log(INFO, "configure_train: sampled %d hospitals (of %d)", len(chosen), len(nodes))
        config["server-round"] = server_round
        for key, value in self.cfg.to_flat().items():
            config[key] = value
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        self.last_info = {"sampled": float(len(chosen))}
        return self._construct_messages(record, chosen, MessageType.TRAIN)

    # ------------------------------------------------------------------ steps 8-13
    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip each hospital's update, add noise to the sum, apply the noisy average."""
        replies = list(replies)
        valid = [r for r in replies if not r.has_error()]
        failed = [r for r in replies if r.has_error()]
        for r in failed:
            log(WARNING, "hospital %d failed this round: %s", r.metadata.src_node_id,
                r.error.reason)
        info = {**self.last_info, "replied": float(len(valid)), "failed": float(len(failed))}
        sampled = int(info.get("sampled", len(replies)))
        if sampled > 0 and len(valid) < self.cfg.min_hospitals:
            log(WARNING, "round %d: %d hospitals replied, %d needed; model kept, nothing "
                "released", server_round, len(valid), self.cfg.min_hospitals)
            self.last_info = {**info, "released": 0.0}
            return None, None
        keys = list(self.current_arrays.keys())
        current = [self.current_arrays[k].numpy().astype(np.float64) for k in keys]
        total = [np.zeros_like(c) for c in current]
        clipped = 0
        for reply in valid:
            record = reply.content[self.arrayrecord_key]
            update = [record[k].numpy().astype(np.float64) - c for k, c in zip(keys, current,
                                                                                strict=True)]
            update, norm = clip_update(update, self.cfg.update_clip)
            clipped += int(self.cfg.update_clip > 0 and norm > self.cfg.update_clip)
            for t, u in zip(total, update, strict=True):
                t += u
        noisy = self.noise_multiplier > 0
        if noisy:
            rng = self.cfg.noise_rng(server_round, 2)
            std = self.noise_multiplier * self.cfg.update_clip
            for t in total:
                t += rng.normal(0.0, std, size=t.shape)
            denom = self.cfg.expected_sampled
        else:
            denom = float(len(valid))
        if denom == 0:  # nothing sampled and no noise: nothing to do
            self.last_info = {**info, "released": 0.0}
            return None, None
        new = {k: Array(np.asarray(c + t / denom, dtype=self.current_arrays[k].numpy().dtype))
               for k, c, t in zip(keys, current, total, strict=True)}
        if noisy:
            assert self.accountant is not None
            self.accountant.step(self.noise_multiplier)
        metrics = (aggregate_metricrecords([r.content for r in valid], self.weighted_by_key)
                   if valid else MetricRecord())
        traffic = sum(float(r.content["metrics"].get("bytes", 0.0)) for r in valid
                      if "metrics" in r.content.metric_records)
        info.update(released=1.0, clipped=float(clipped), epsilon=self.epsilon(),
                    bytes_total=traffic)
        for key, value in info.items():
            metrics[key] = float(value)
        self.last_info = info
        return ArrayRecord(new), metrics

    def epsilon(self) -> float:
        """Epsilon spent so far (hospital-level, at ``cfg.delta``); ``inf`` without noise."""
        if self.noise_multiplier <= 0 or self.accountant is None:
            return math.inf
        return self.accountant.epsilon()

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep: the accountant's ledger."""
        return {"accountant": self.accountant.state_dict() if self.accountant else None}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.accountant is not None and state.get("accountant") is not None:
            self.accountant.load_state_dict(state["accountant"])
