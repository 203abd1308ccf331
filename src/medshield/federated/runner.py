"""Entry points: run EICPP or a baseline in-process or on Flower's simulation runtime.

>>> from medshield.federated import FLConfig, run_federated
>>> run = run_federated(FLConfig(rounds=3), method="eicpp")   # doctest: +SKIP
>>> run.rounds[-1]["accuracy"]                                  # doctest: +SKIP

``backend="inprocess"`` (default) drives the ServerApp and ClientApps over
:class:`~medshield.federated.driver.LocalGrid` (seconds); ``backend="flower"`` hands the
same apps to :func:`flwr.simulation.run_simulation` (Ray; ~20 s of start-up).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.clientapp import ClientApp
from torch import nn

from medshield.federated.apps import device_app, hospital_app, make_server_app
from medshield.federated.config import FLConfig
from medshield.federated.driver import LocalGrid, run_inprocess
from medshield.federated.rounds import FLRun, evaluate_arrays, population
from medshield.federated.topology import build_federation, build_model, state_to_arrays

__all__ = ["run_federated", "train_centralised", "quiet_flower"]


class _DropExpected(logging.Filter):
    """Drop Flower's warning that federated evaluation is off (the cloud evaluates)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fraction_evaluate is set to 0.0" not in str(record.msg)


@contextmanager
def quiet_flower(level: int = logging.WARNING) -> Iterator[None]:
    """Silence Flower's INFO logging (one line per message) for the duration."""
    logger = logging.getLogger("flwr")
    old = logger.level
    drop = _DropExpected()
    logger.setLevel(level)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.setLevel(old)
        logger.removeFilter(drop)


def run_federated(cfg: FLConfig, *, method: str = "eicpp", backend: str = "inprocess",
                  client_app: ClientApp | None = None, grid: LocalGrid | None = None,
                  checkpoint_dir: str | Path | None = None, resume: bool = False,
                  stop_after: int | None = None, verbose: bool = False,
                  backend_config: dict[str, Any] | None = None) -> FLRun:
    """Run ``method`` (``"eicpp"``, ``"fedavg"``, ``"fedma"``) with configuration ``cfg``.

    Parameters
    ----------
    cfg : the configuration (data, topology, training, privacy)
    method : EICPP (hospitals are the Flower clients, devices inside them) or a flat
        baseline (devices are the Flower clients)
    backend : ``"inprocess"`` or ``"flower"`` (``run_simulation`` with Ray)
    client_app : replace the default ClientApp (tests inject crashing hospitals)
    grid : an existing :class:`LocalGrid` (in-process only; tests take nodes offline)
    checkpoint_dir, resume, stop_after : see :func:`~medshield.federated.apps.make_server_app`
    verbose : keep Flower's INFO log
    backend_config : Flower's simulation ``backend_config`` (default: one CPU per
        ClientApp actor, no GPU)

    Returns
    -------
    FLRun
    """
    sink: dict[str, Any] = {}
    server = make_server_app(cfg, method=method, sink=sink, checkpoint_dir=checkpoint_dir,
                             resume=resume, stop_after=stop_after)
    app = client_app or (hospital_app if method == "eicpp" else device_app)
    nodes = population(cfg, method)
    with quiet_flower(logging.INFO if verbose else logging.WARNING):
        if backend == "inprocess":
            run_inprocess(server, app, num_nodes=nodes, grid=grid)
        elif backend == "flower":
            from flwr.simulation import run_simulation

            conf = backend_config or {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}
            run_simulation(server_app=server, client_app=app, num_supernodes=nodes,
                           backend_config=conf)
        else:
            raise ValueError(f"backend must be 'inprocess' or 'flower', got {backend!r}")
    if "run" not in sink:
        raise RuntimeError("the ServerApp ended without a result; see Flower's log above "
                           "(run again with verbose=True)")
    return sink["run"]


def train_centralised(cfg: FLConfig, device: torch.device | None = None) -> FLRun:
    """The ceiling: the same network trained on all devices' data pooled, one "round" per
    epoch of ``cfg.local_epochs`` epochs (same SGD, batch size and learning rate)."""
    dev = device or torch.device("cpu")
    fed = build_federation(cfg)
    model: nn.Module = build_model(cfg, fed).to(dev)
    data = fed.pooled()
    x_all, y_all = data.tensors()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(cfg.seed)
    run = FLRun(method="centralised", config=cfg.to_flat(), noise_multiplier=0.0,
                dp_unit="none")
    elapsed = 0.0
    for r in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        model.train()
        for _ in range(cfg.local_epochs):
            order = torch.randperm(len(data), generator=gen)
            for lo in range(0, len(data), cfg.batch_size):
                idx = order[lo: lo + cfg.batch_size]
                loss = nn.functional.cross_entropy(model(x_all[idx].to(dev)), y_all[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        elapsed += time.perf_counter() - t0
        arrays = state_to_arrays(model.cpu())
        model.to(dev)
        rep = evaluate_arrays(cfg, fed, arrays)
        run.rounds.append({"round": float(r), "accuracy": rep["accuracy"],
                           "precision": rep["precision_macro"], "recall": rep["recall_macro"],
                           "f1": rep["f1_macro"], "loss": rep["loss"], "epsilon": np.inf,
                           "seconds": elapsed, "replied": 1.0, "failed": 0.0,
                           "train_loss": float("nan"), "bytes": 0.0})
        run.final = rep
    run.arrays = state_to_arrays(model.cpu())
    return run
