"""Running split learning: in one process (threads + in-process channels) or over TCP.

The protocol code (:class:`~medshield.split.device.SplitDevice`,
:class:`~medshield.split.server.SplitServer`) is written against
:class:`~medshield.transport.base.Channel` and runs unchanged on both.

Examples
--------
>>> import torch
>>> from medshield.models import MODELS, cut_model
>>> from medshield.split import SplitDevice, SplitServer, run_in_process
>>> net = MODELS.create("pgsl-cnn", in_channels=1, input_size=8, width=4, hidden=8,
...                     num_classes=2, dropout=0.0, seed=0)
>>> dev_half, srv_half = cut_model(net, "conv2")
>>> data = [(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))]
>>> run = run_in_process(SplitServer(srv_half, device="cpu"),
...                      [SplitDevice(dev_half, data, device="cpu")], epochs=1)
>>> run.history.samples
4
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medshield.split.device import SplitDevice
from medshield.split.protocol import DeviceReport, SplitHistory
from medshield.split.server import SplitServer
from medshield.transport.base import Channel
from medshield.transport.inprocess import InProcessChannel
from medshield.transport.tcp import TcpChannel, TcpListener

__all__ = ["SplitRun", "run_in_process", "serve_tcp", "device_tcp"]


@dataclass
class SplitRun:
    """The server's history and every device's report of one run."""

    history: SplitHistory
    devices: list[DeviceReport] = field(default_factory=list)

    def bytes_per_sample(self) -> float:
        """Channel bytes (both directions, all links) per training sample seen."""
        return self.history.bytes_total() / max(self.history.samples, 1)


def run_in_process(
    server: SplitServer,
    devices: Sequence[SplitDevice],
    *,
    epochs: int,
    evaluate: bool = True,
    timeout: float | None = 60.0,
    resume: dict[str, Any] | None = None,
) -> SplitRun:
    """Run the server in this thread and each device in its own thread, over in-process channels.

    Bytes are counted exactly as over TCP (every message is encoded). A device that fails
    closes its channel, so the server stops at once; the device's exception is re-raised.

    Parameters
    ----------
    server, devices
        The parties; device ``k`` gets rank ``k`` (the turn order).
    epochs, evaluate, timeout, resume
        See :meth:`SplitServer.run`.
    """
    if not devices:
        raise ValueError("run_in_process needs at least one SplitDevice")
    pairs = [InProcessChannel.pair() for _ in devices]
    reports: list[DeviceReport | None] = [None] * len(devices)
    errors: list[BaseException] = []

    def work(k: int, ch: Channel) -> None:
        try:
            reports[k] = devices[k].run(ch, rank=k, timeout=timeout, turn_timeout=None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            ch.close()

    threads = [
        threading.Thread(target=work, args=(k, dev_end), name=f"split-device-{k}", daemon=True)
        for k, (_, dev_end) in enumerate(pairs)
    ]
    for t in threads:
        t.start()
    try:
        history = server.run(
            [srv_end for srv_end, _ in pairs], epochs=epochs, evaluate=evaluate,
            timeout=timeout, resume=resume,
        )
    except BaseException:
        if errors:
            raise errors[0] from None
        raise
    finally:
        for a, _b in pairs:  # wakes a device blocked in recv if the server stopped early
            a.close()
        for t in threads:
            t.join(timeout=30)
        for _, b in pairs:
            b.close()
    if errors:
        raise errors[0]
    return SplitRun(history=history, devices=[r for r in reports if r is not None])


def serve_tcp(
    server: SplitServer,
    listener: TcpListener,
    *,
    devices: int,
    epochs: int,
    evaluate: bool = True,
    accept_timeout: float | None = 60.0,
    timeout: float | None = 60.0,
    resume: dict[str, Any] | None = None,
) -> SplitHistory:
    """Accept ``devices`` TCP connections on ``listener`` and run :meth:`SplitServer.run`
    (from a checkpoint with ``resume``).

    The channels are closed at the end (the listener stays open).
    """
    channels: list[TcpChannel] = []
    try:
        for _ in range(devices):
            channels.append(listener.accept(timeout=accept_timeout))
        return server.run(channels, epochs=epochs, evaluate=evaluate, timeout=timeout,
                          resume=resume)
    finally:
        for ch in channels:
            ch.close()


def device_tcp(
    device: SplitDevice,
    host: str,
    port: int,
    *,
    rank: int,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    timeout: float | None = 60.0,
    turn_timeout: float | None = 600.0,
) -> DeviceReport:
    """Connect ``device`` to a server at ``host:port`` (over TLS with a client
    ``ssl_context``, :func:`medshield.transport.tls.client_context`) and run it to the end."""
    with TcpChannel.connect(host, port, ssl_context=ssl_context,
                            timeout=connect_timeout) as ch:
        return device.run(ch, rank=rank, timeout=timeout, turn_timeout=turn_timeout)
