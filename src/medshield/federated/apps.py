"""Flower apps of the federation: the hospital/device ClientApps and the cloud ServerApp.

* :data:`hospital_app` (EICPP, Algorithms 2-3): a ClientApp per hospital. It reads the
  configuration from the round's ``ConfigRecord`` and its hospital index from
  ``node_config["partition-id"]``, trains with its devices (threads in simulation; TCP
  device processes when ``node_config`` has ``device-port``) and replies with the whole
  updated model.
* :data:`device_app` (flat FedAvg/FedMA): a ClientApp per *device*, training the whole
  network on its own data (``partition-id`` = device index, hospital-major).
* :func:`make_server_app`: the cloud. Its ``main`` builds the strategy (EICPP's
  :class:`~medshield.federated.cloud.EICPPCloud`, Flower's ``FedAvg`` optionally wrapped in
  ``DifferentialPrivacyServerSideFixedClipping``, or :class:`~medshield.federated.fedma.FedMA`)
  and runs :func:`medshield.federated.rounds.run_rounds` (checkpointing each round).
* :data:`server_app`, :data:`client_app`: module-level apps for ``flwr run`` (deployment),
  configured entirely by the run config (see :mod:`medshield.federated.deploy`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from medshield.federated.config import FLConfig
from medshield.federated.hospital import LocalResult, train_flat, train_hospital
from medshield.federated.topology import build_federation

__all__ = ["hospital_app", "device_app", "client_app", "server_app", "make_server_app",
           "reply_with", "METHODS"]

METHODS = ("eicpp", "fedavg", "fedma")


def reply_with(msg: Message, result: LocalResult) -> Message:
    """The reply carrying a client's updated model and metrics.

    ``num-examples`` weights FedAvg/FedMA; ``dp-weight`` (always 1) is the uniform weight
    Flower's accounted DP wrapper requires.
    """
    arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in result.arrays.items()})
    metrics = MetricRecord({"num-examples": int(result.num_examples), "dp-weight": 1.0,
                            **{k: float(v) for k, v in result.metrics.items()}})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


def _incoming(msg: Message) -> tuple[FLConfig, int, dict[str, np.ndarray]]:
    config = msg.content["config"]
    cfg = FLConfig.from_flat(dict(config.items()))
    round_ = int(config["server-round"])
    arrays = {k: v.numpy() for k, v in msg.content["arrays"].items()}
    return cfg, round_, arrays


hospital_app = ClientApp()


@hospital_app.train()
def hospital_train(msg: Message, context: Context) -> Message:
    """EICPP hospital: one round with its devices (Algorithms 2-3)."""
    cfg, round_, arrays = _incoming(msg)
    h = int(context.node_config["partition-id"])
    fed = build_federation(cfg)
    port = context.node_config.get("device-port")
    if port:
        from medshield.federated.deploy import accept_devices

        with accept_devices(int(port), len(fed.devices[h])) as links:
            result = train_hospital(cfg, fed, arrays, hospital=h, round_=round_, links=links)
    else:
        result = train_hospital(cfg, fed, arrays, hospital=h, round_=round_)
    return reply_with(msg, result)


device_app = ClientApp()


@device_app.train()
def device_train(msg: Message, context: Context) -> Message:
    """Flat FedAvg/FedMA client: the whole network on one device's data."""
    cfg, round_, arrays = _incoming(msg)
    i = int(context.node_config["partition-id"])
    fed = build_federation(cfg)
    clients = fed.flat_clients()
    result = train_flat(cfg, fed, arrays, clients[i], client=i, round_=round_)
    return reply_with(msg, result)


def make_server_app(cfg: FLConfig | None = None, *, method: str = "eicpp",
                    sink: MutableMapping[str, Any] | None = None,
                    checkpoint_dir: str | Path | None = None, resume: bool = False,
                    stop_after: int | None = None, timeout: float = 600.0) -> ServerApp:
    """The cloud's ServerApp for ``method`` (``"eicpp"``, ``"fedavg"`` or ``"fedma"``).

    Parameters
    ----------
    cfg : the run's configuration; ``None`` reads it from ``context.run_config``
        (deployment; the run config may also set ``method``, ``checkpoint-dir``,
        ``resume``, ``out``)
    sink : receives the :class:`~medshield.federated.rounds.FLRun` under ``"run"``
    checkpoint_dir : write ``checkpoint_dir/last.pt`` after every round
    resume : continue from that checkpoint when it exists
    stop_after : stop after this round (simulates an interrupted cloud; for tests)
    timeout : seconds to wait for the sampled clients' replies each round
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from medshield.federated.rounds import run_rounds, write_run

        run_cfg = dict(context.run_config)
        conf = cfg or FLConfig.from_flat(run_cfg)
        meth = method if cfg is not None else str(run_cfg.get("method", method))
        ckpt = checkpoint_dir or run_cfg.get("checkpoint-dir") or None
        res = resume or bool(run_cfg.get("resume", False))
        run = run_rounds(grid, conf, method=meth, checkpoint_dir=ckpt, resume=res,
                         stop_after=stop_after, timeout=timeout)
        if sink is not None:
            sink["run"] = run
        if run_cfg.get("out"):
            write_run(run, Path(str(run_cfg["out"])))

    return app


def _client_dispatch() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        if str(context.run_config.get("method", "eicpp")) == "eicpp":
            return hospital_train(msg, context)
        return device_train(msg, context)

    return app


#: Deployment apps (``flwr run``): configured by the run config only.
server_app = make_server_app()
client_app = _client_dispatch()
