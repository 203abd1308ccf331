"""The cloud's round loop with per-round evaluation, checkpoints and resumption.

Flower's ``Strategy.start`` runs rounds but cannot resume; :func:`run_rounds` is the same
loop (``configure_train`` -> ``grid.send_and_receive`` -> ``aggregate_train`` -> evaluate)
plus, after every round, an atomic checkpoint (:func:`medshield.training.save_checkpoint`)
of the global model, the round, the history and the privacy accountant's ledger. Every
random choice of round ``r`` is seeded from ``(seed, r)`` (including the global NumPy and
Python generators, which Flower's FedAvg and DP wrapper use), so a run resumed from the
checkpoint of round ``k`` reproduces rounds ``k+1 ..`` of the uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy

from medshield.federated.accounting import HospitalAccountant, calibrate_noise_multiplier
from medshield.federated.cloud import EICPPCloud
from medshield.federated.config import FLConfig
from medshield.federated.fedma import FedMA
from medshield.federated.topology import Federation, arrays_to_state, build_federation, build_model
from medshield.metrics import classification_report
from medshield.training import load_checkpoint, save_checkpoint

__all__ = ["FLRun", "run_rounds", "make_strategy", "evaluate_arrays", "write_run",
           "population", "CHECKPOINT", "finite"]

CHECKPOINT = "last.pt"


@dataclass
class FLRun:
    """The outcome of a federated run.

    Attributes
    ----------
    method : ``"eicpp"``, ``"fedavg"`` or ``"fedma"``
    config : :meth:`FLConfig.to_flat` of the run
    noise_multiplier : the cloud's sigma (calibrated when a target epsilon was set)
    dp_unit : what one unit of the cloud-side guarantee is (``"hospital"``, ``"device"``)
    rounds : per round: ``round``, ``accuracy``, ``precision``, ``recall``, ``f1`` (macro,
        test split), ``loss``, ``epsilon``, ``seconds`` (cumulative wall time), ``replied``,
        ``failed``, ``train_loss``, ``bytes`` (device links)
    final : the last round's test report
    arrays : the final global model
    resumed_from : the round the run was resumed after (0 = fresh)
    """

    method: str
    config: dict[str, Any]
    noise_multiplier: float
    dp_unit: str
    rounds: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    resumed_from: int = 0

    @property
    def epsilon(self) -> float:
        return self.rounds[-1]["epsilon"] if self.rounds else 0.0

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("arrays")
        return out


def population(cfg: FLConfig, method: str) -> int:
    """Number of clients of the cloud: hospitals (EICPP) or devices (flat baselines)."""
    return cfg.hospitals if method == "eicpp" else cfg.hospitals * cfg.devices_per_hospital


def _noise(cfg: FLConfig, pop: int) -> float:
    if math.isinf(cfg.target_epsilon):
        return cfg.noise_multiplier
    size = max(1, round(cfg.sample_rate * pop))
    return calibrate_noise_multiplier(cfg.target_epsilon, rounds=cfg.rounds, population=pop,
                                      sample_size=size, sampling=cfg.sampling,
                                      delta=cfg.delta)


def make_strategy(cfg: FLConfig, method: str) -> tuple[Strategy, float]:
    """The cloud strategy of ``method`` and its (calibrated) noise multiplier.

    * ``eicpp``: :class:`EICPPCloud` with a :class:`HospitalAccountant` (unit: hospital).
    * ``fedavg``: Flower's ``FedAvg`` weighted by ``num-examples``; when private, wrapped in
      Flower's ``DifferentialPrivacyServerSideFixedClipping`` with Flower's RDP accountant
      (no amplification, uniform weights; unit: device). Only ``"fixed"`` sampling.
    * ``fedma``: :class:`FedMA` (no DP: matching is not a bounded-sensitivity aggregate).
    """
    pop = population(cfg, method)
    sigma = _noise(cfg, pop)
    if method == "eicpp":
        acc = (HospitalAccountant(population=pop, sample_size=cfg.sample_size,
                                  sampling=cfg.sampling, delta=cfg.delta)
               if sigma > 0 else None)
        return EICPPCloud(cfg=cfg, noise_multiplier=sigma, accountant=acc), sigma
    size = max(1, round(cfg.sample_rate * pop))
    common: dict[str, Any] = {"fraction_train": size / pop, "fraction_evaluate": 0.0,
                              "min_train_nodes": size, "min_evaluate_nodes": 0,
                              "min_available_nodes": pop}
    if method == "fedma":
        if sigma > 0:
            raise ValueError("FedMA has no DP variant here (matching has unbounded "
                             "sensitivity); run it with target_epsilon=inf, noise 0")
        return FedMA(**common), 0.0
    if method != "fedavg":
        raise ValueError(f"unknown method {method!r}; use 'eicpp', 'fedavg' or 'fedma'")
    if sigma <= 0:
        return FedAvg(**common), 0.0
    if cfg.sampling != "fixed":
        raise ValueError("Flower's accounted DP wrapper supports fixed-size sampling only")
    from flwr.serverapp import (
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

    from medshield.federated.accounting import DEFAULT_ORDERS

    acc = RdpAccountant(PrivacyConfig(target_delta=cfg.delta, population_size=pop,
                                      neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                      sampling_method=SamplingMethod.NO_AMPLIFICATION),
                        orders=DEFAULT_ORDERS)
    inner = FedAvg(weighted_by_key="dp-weight", **common)
    wrapped = DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=sigma, clipping_norm=cfg.update_clip,
        num_sampled_clients=size, accountant=acc)
    return wrapped, sigma


def _epsilon(strategy: Strategy) -> float:
    if isinstance(strategy, EICPPCloud):
        return strategy.epsilon()
    spent = getattr(strategy, "privacy_spent", lambda: None)()
    return float(spent.epsilon) if spent is not None and spent.num_releases else math.inf


def _accountant_state(strategy: Strategy) -> dict[str, Any] | None:
    acc = getattr(strategy, "accountant", None)
    return None if acc is None else acc.state_dict()


def evaluate_arrays(cfg: FLConfig, fed: Federation, arrays: dict[str, np.ndarray],
                    split: str = "test") -> dict[str, Any]:
    """Test report of a global model: accuracy, macro precision/recall/F1, loss, AUC."""
    model = arrays_to_state(build_model(cfg, fed, init=False), arrays).eval()
    data = fed.test if split == "test" else fed.val
    x, y = data.tensors()
    with torch.inference_mode():
        logits = model(x)
        loss = float(torch.nn.functional.cross_entropy(logits, y))
        probs = torch.softmax(logits.double(), 1).numpy()
    report = classification_report(y.numpy(), probs.argmax(1), probs,
                                   labels=np.arange(probs.shape[1]))
    report["loss"] = loss
    return report


def _round_seed(cfg: FLConfig, r: int) -> int:
    return int(np.random.SeedSequence([cfg.seed, r, 99]).generate_state(1)[0])


def run_rounds(grid: Grid, cfg: FLConfig, *, method: str = "eicpp",
               checkpoint_dir: str | Path | None = None, resume: bool = False,
               stop_after: int | None = None, timeout: float = 600.0) -> FLRun:
    """Run ``cfg.rounds`` cloud rounds of ``method`` over ``grid`` (the ServerApp's body).

    Returns the :class:`FLRun` (history per round, final model). With ``checkpoint_dir``,
    ``checkpoint_dir/last.pt`` holds the model, round, history and accountant after every
    round; ``resume=True`` continues from it.
    """
    fed = build_federation(cfg)
    model = build_model(cfg, fed)
    strategy, sigma = make_strategy(cfg, method)
    arrays = ArrayRecord(model.state_dict())
    run = FLRun(method=method, config=cfg.to_flat(), noise_multiplier=sigma,
                dp_unit="hospital" if method == "eicpp" else "device")
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    elapsed = 0.0
    if resume and ckpt_path is not None and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        if ck.extra.get("method") != method or ck.extra.get("config") != cfg.to_flat():
            raise ValueError(f"checkpoint {ckpt_path} belongs to another run (method or "
                             "configuration differ); use another checkpoint_dir or "
                             "resume=False")
        arrays = ArrayRecord({k: v for k, v in ck.model.items()})
        run.rounds = list((ck.history or {}).get("rounds", []))
        run.resumed_from = ck.epoch
        acc_state = ck.extra.get("accountant")
        if acc_state is not None:
            strategy.accountant.load_state_dict(acc_state)
        elapsed = run.rounds[-1]["seconds"] if run.rounds else 0.0
    start = run.resumed_from + 1
    for r in range(start, cfg.rounds + 1):
        s = _round_seed(cfg, r)
        random.seed(s)
        np.random.seed(s % 2**32)
        t0 = time.perf_counter()
        messages = strategy.configure_train(r, arrays, ConfigRecord(cfg.to_flat()), grid)
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        agg, metrics = strategy.aggregate_train(r, replies)
        if agg is not None:
            arrays = agg
        elapsed += time.perf_counter() - t0
        named = {k: v.numpy() for k, v in arrays.items()}
        report = evaluate_arrays(cfg, fed, named)
        m = dict(metrics or {})
        run.rounds.append({
            "round": float(r), "accuracy": report["accuracy"],
            "precision": report["precision_macro"], "recall": report["recall_macro"],
            "f1": report["f1_macro"], "loss": report["loss"], "epsilon": _epsilon(strategy),
            "seconds": elapsed,
            "replied": float(m.get("replied", sum(not x.has_error() for x in replies))),
            "failed": float(m.get("failed", sum(x.has_error() for x in replies))),
            "train_loss": float(m.get("train_loss", math.nan)),
            "bytes": float(m.get("bytes_total", 0.0)),
        })
        run.final = report
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, arrays_to_state(model, named), epoch=r,
                            history={"rounds": run.rounds},
                            extra={"method": method, "config": cfg.to_flat(),
                                   "accountant": _accountant_state(strategy)})
        if stop_after is not None and r >= stop_after:
            break
    run.arrays = {k: v.numpy() for k, v in arrays.items()}
    return run


def write_run(run: FLRun, out: Path) -> Path:
    """Write ``out/fl_run.json`` (history and final report; not the weights)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fl_run.json"
    path.write_text(json.dumps(finite(run.to_dict()), indent=2, default=float))
    return path


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj
