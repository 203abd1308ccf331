"""A hospital's local round (Algorithm 3) with its devices (Algorithm 2), and flat training.

:func:`train_hospital` is what one EICPP ClientApp does per round: load the cloud's global
model (Algorithm 3, steps 2-3), cut it, let its devices train the first layers in turn over
channels while it trains the rest (:mod:`medshield.federated.exchange`), and return the
whole updated model (Algorithm 4, step 7). In simulation the devices are threads inside
the hospital (:class:`SimulatedDevices`); in a deployment they are processes that connect
over TCP (:mod:`medshield.federated.deploy`).

:func:`train_flat` is the local training of the flat baselines (FedAvg, FedMA): one client
trains the whole network on its own data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from medshield.data import ArraySplit
from medshield.federated.config import FLConfig
from medshield.federated.exchange import device_serve, hospital_turn, turn_seed
from medshield.federated.topology import (
    Federation,
    arrays_to_state,
    build_model,
    state_to_arrays,
)
from medshield.models import cut_model
from medshield.transport import Channel, InProcessChannel

__all__ = ["LocalResult", "SimulatedDevices", "train_hospital", "train_flat"]


@dataclass
class LocalResult:
    """A client's update and what it measured.

    Attributes
    ----------
    arrays : the updated model, ``state_dict`` order, NumPy
    num_examples : training samples seen per epoch
    metrics : ``train_loss``, ``train_accuracy``, ``bytes`` (device link, both ways),
        ``messages``, ``seconds``
    """

    arrays: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


class SimulatedDevices:
    """The devices of one hospital as threads, each behind an in-process channel.

    Use as a context manager: entering starts one :func:`device_serve` thread per device
    and gives the hospital's channel ends; leaving sends ``stop``, joins the threads and
    re-raises the first error a device hit.
    """

    def __init__(self, *, parts: Sequence[nn.Module], data: Sequence[ArraySplit],
                 timeout: float = 120.0) -> None:
        self.parts = list(parts)
        self.data = list(data)
        self.timeout = timeout

    @contextmanager
    def links(self) -> Iterator[list[Channel]]:
        ends: list[Channel] = []
        threads: list[threading.Thread] = []
        errors: list[BaseException] = []

        def serve(ch: Channel, part: nn.Module, data: ArraySplit) -> None:
            try:
                device_serve(ch, part, data)
            except BaseException as exc:  # reported to the hospital thread below
                errors.append(exc)
            finally:
                ch.close()

        for part, data in zip(self.parts, self.data, strict=True):
            hosp, dev = InProcessChannel.pair(timeout=self.timeout)
            th = threading.Thread(target=serve, args=(dev, part, data), daemon=True)
            th.start()
            ends.append(hosp)
            threads.append(th)
        try:
            yield ends
        finally:
            for ch in ends:
                if not ch.closed:
                    try:
                        ch.send({"op": "stop"})
                    except Exception:  # the device already went away
                        pass
            for th in threads:
                th.join(timeout=self.timeout)
            for ch in ends:
                ch.close()
        if errors:
            raise RuntimeError(f"a simulated device failed: {errors[0]!r}") from errors[0]


def _device_parts(cfg: FLConfig, fed: Federation, n: int) -> list[nn.Module]:
    return [cut_model(build_model(cfg, fed, init=False), cfg.cut)[0] for _ in range(n)]


def train_hospital(cfg: FLConfig, fed: Federation, global_arrays: dict[str, np.ndarray],
                   *, hospital: int, round_: int,
                   links: Sequence[Channel] | None = None,
                   device: torch.device | None = None) -> LocalResult:
    """One hospital's round of EICPP (Algorithms 2-3), devices in turn.

    The hospital loads ``W_cloud``, cuts it at ``cfg.cut``, and for each of
    ``cfg.local_epochs`` epochs lets every device (in a seeded random order) make one pass
    over its data: the device part's weights go to the device with ``start`` and come back
    with ``done``, so one ``W_note`` is trained by the devices in turn while the hospital
    trains the server part on their noisy activations.

    Parameters
    ----------
    cfg, fed : the run's configuration and data
    global_arrays : ``W_cloud`` (named arrays)
    hospital, round_ : which hospital (index into ``fed.devices``) and the cloud round
    links : one channel per device; ``None`` simulates the devices as threads
    device : where the hospital computes

    Returns
    -------
    LocalResult with the whole updated model ``W_hospital_new``.
    """
    dev = device or torch.device("cpu")
    data = fed.devices[hospital]
    model = arrays_to_state(build_model(cfg, fed, init=False), global_arrays).to(dev)
    dev_part, srv_part = cut_model(model, cfg.cut)
    opt = torch.optim.SGD(srv_part.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    device_state = {k: v.detach().cpu().clone() for k, v in dev_part.state_dict().items()}
    rng = np.random.default_rng([cfg.seed, round_, hospital, 7])
    totals = {"samples": 0, "loss": 0.0, "correct": 0}
    t0 = time.perf_counter()

    def run(chans: Sequence[Channel]) -> dict[str, float]:
        nonlocal device_state
        before = sum((c.stats.bytes_sent + c.stats.bytes_received) for c in chans)
        msgs = sum((c.stats.messages_sent + c.stats.messages_received) for c in chans)
        for epoch in range(cfg.local_epochs):
            for d in rng.permutation(len(data)):
                start = {"round": round_, "epoch": epoch, "lr": cfg.lr,
                         "momentum": cfg.momentum, "batch_size": cfg.batch_size,
                         "seed": turn_seed(cfg.seed, round_, hospital, int(d), epoch),
                         "clip": cfg.activation_clip, "noise": cfg.activation_noise,
                         "noise_source": cfg.noise_source}
                device_state, st = hospital_turn(chans[int(d)], srv_part, opt, device_state,
                                                 start, device=dev)
                totals["samples"] += st.samples
                totals["loss"] += st.loss_sum
                totals["correct"] += st.correct
        after = sum((c.stats.bytes_sent + c.stats.bytes_received) for c in chans)
        msgs2 = sum((c.stats.messages_sent + c.stats.messages_received) for c in chans)
        return {"bytes": float(after - before), "messages": float(msgs2 - msgs)}

    if links is None:
        sim = SimulatedDevices(parts=_device_parts(cfg, fed, len(data)), data=data)
        with sim.links() as chans:
            traffic = run(chans)
    else:
        if len(links) != len(data):
            raise ValueError(f"hospital {hospital} has {len(data)} devices but {len(links)} "
                             "links were given")
        traffic = run(links)
    dev_part.load_state_dict(device_state)
    n = max(totals["samples"], 1)
    return LocalResult(
        arrays=state_to_arrays(model),
        num_examples=sum(len(d) for d in data),
        metrics={"train_loss": totals["loss"] / n, "train_accuracy": totals["correct"] / n,
                 "seconds": time.perf_counter() - t0, **traffic},
    )


def train_flat(cfg: FLConfig, fed: Federation, global_arrays: dict[str, np.ndarray],
               data: ArraySplit, *, client: int, round_: int,
               device: torch.device | None = None) -> LocalResult:
    """Local SGD of a flat client (FedAvg, FedMA): the whole network on its own data.

    Same epochs, batch size, learning rate and momentum as the EICPP hospitals, no noise.
    """
    dev = device or torch.device("cpu")
    model = arrays_to_state(build_model(cfg, fed, init=False), global_arrays).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(turn_seed(cfg.seed, round_, 10_000 + client, 0, 0))
    x_all, y_all = data.tensors()
    loss_sum, correct, seen = 0.0, 0, 0
    t0 = time.perf_counter()
    for _ in range(cfg.local_epochs):
        order = torch.randperm(len(data), generator=gen)
        for lo in range(0, len(data), cfg.batch_size):
            idx = order[lo: lo + cfg.batch_size]
            x, y = x_all[idx].to(dev), y_all[idx].to(dev)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.detach().argmax(1) == y).sum())
            seen += len(y)
    n = max(seen, 1)
    return LocalResult(arrays=state_to_arrays(model), num_examples=len(data),
                       metrics={"train_loss": loss_sum / n, "train_accuracy": correct / n,
                                "seconds": time.perf_counter() - t0, "bytes": 0.0,
                                "messages": 0.0})
