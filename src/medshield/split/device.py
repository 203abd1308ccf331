"""The device (client) side of split learning: the layers up to the cut, on the data owner's side."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from medshield.runtime import get_device
from medshield.split.handoff import HandoffSeal
from medshield.split.protocol import (
    DeviceReport,
    OptimizerSpec,
    SplitProtocolError,
    expect,
    make_optimizer,
    state_to_cpu,
)
from medshield.transport.base import Channel

__all__ = ["SplitDevice", "Transform", "Regularizer"]

#: ``transform(x, y) -> x'``: applied to each batch before the device half (PGSL's pixel attack
#: and down-sampling). Runs without autograd of the device half.
Transform = Callable[[Tensor, Tensor], Tensor]
#: ``regularizer(x_raw, act) -> scalar``: an extra device-side loss (NoPeek's distance
#: correlation), back-propagated together with the server's activation gradient.
Regularizer = Callable[[Tensor, Tensor], Tensor]


def _xy(batch: Any) -> tuple[Tensor, Tensor]:
    if isinstance(batch, dict):
        return batch["x"], batch["y"]
    x, y = batch[0], batch[1]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.view(-1)
    return x, y.long()


class SplitDevice:
    """One data owner in split learning: trains the device half against a remote server half.

    The device never sends raw data: only the device half's output (``act``) and the labels.
    With several devices the device-half weights (and optimizer state) travel from device to
    device through the server between turns (see :mod:`medshield.split.protocol`).

    Parameters
    ----------
    model
        The device half, ``(N, *X) -> (N, *A)`` (e.g. the first part of
        :func:`medshield.models.cut_model`); an activation defence such as
        :class:`~medshield.defenses.activation_noise.ActivationNoise` may be its last layer.
    train_data
        Iterable of ``(x, y)`` batches for one turn (one pass per turn).
    eval_data
        Optional iterable of ``(x, y)`` batches evaluated when the server asks.
    optimizer, lr
        See :func:`~medshield.split.protocol.make_optimizer`.
    transform
        Optional :data:`Transform` applied to every batch first (training and evaluation).
    regularizer
        Optional :data:`Regularizer` on ``(raw x, act)``, added to the device's loss.
    device
        Torch device of the device half (default: CUDA when present).
    handoff_seal
        A :class:`~medshield.split.handoff.HandoffSeal` shared by all devices: the device half
        then travels through the server encrypted and authenticated, so the server cannot
        invert activations through it (every device needs the same key; the server none).
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Iterable[Any],
        *,
        eval_data: Iterable[Any] | None = None,
        optimizer: OptimizerSpec = "adam",
        lr: float = 1e-3,
        transform: Transform | None = None,
        regularizer: Regularizer | None = None,
        device: str | torch.device | None = None,
        handoff_seal: HandoffSeal | None = None,
    ) -> None:
        self.device = get_device(device)
        self.handoff_seal = handoff_seal
        self.model = model.to(self.device)
        self.train_data = train_data
        self.eval_data = eval_data
        self.optimizer = make_optimizer(optimizer, self.model, lr)
        self.transform = transform
        self.regularizer = regularizer

    # ------------------------------------------------------------------ state hand-off
    def state(self) -> dict[str, Any]:
        """The device half's weights and optimizer state (what the next device continues from);
        sealed (``{"sealed": bytes, "counter": k}``) when the device holds a hand-off seal."""
        plain = {
            "model": state_to_cpu(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
        }
        if self.handoff_seal is None:
            return plain
        return self.handoff_seal.seal(plain, self.handoff_seal.highest_seen + 1)

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Continue from another device's :meth:`state` (``None``: keep the current one)."""
        if state is None:
            return
        if self.handoff_seal is not None:
            state, _ = self.handoff_seal.open(state)
        elif "sealed" in state:
            raise SplitProtocolError(
                "the server relayed a sealed hand-off but this device holds no hand-off key; "
                "give it the key file the other devices use")
        self.model.load_state_dict(state["model"])
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    # ------------------------------------------------------------------ protocol
    def run(
        self,
        channel: Channel,
        *,
        rank: int = 0,
        timeout: float | None = 60.0,
        turn_timeout: float | None = 600.0,
    ) -> DeviceReport:
        """Serve the server's requests over ``channel`` until it says ``"stop"``.

        Parameters
        ----------
        channel
            This device's channel to the server.
        rank
            This device's position in the turn order (sent in the ``"hello"``).
        timeout
            Seconds to wait for each gradient or logits reply.
        turn_timeout
            Seconds to wait for the next instruction (other devices train meanwhile).

        Returns
        -------
        DeviceReport
            Batches and samples trained, the evaluation accuracy if asked, channel counters.
        """
        report = DeviceReport(rank=rank)
        channel.send({"op": "hello", "rank": int(rank)})
        while True:
            msg = channel.recv(timeout=turn_timeout)
            op = expect(msg, ("turn", "evaluate", "stop"), f"device {rank}")
            if op == "stop":
                break
            self.load_state(msg.get("state"))
            if op == "turn":
                self._train_turn(channel, report, timeout)
                channel.send({"op": "end_turn", "state": self.state()})
            else:
                correct, total = self._evaluate(channel, timeout)
                report.eval_accuracy = correct / total if total else None
                report.eval_samples = total
                channel.send({"op": "report", "correct": correct, "total": total})
        report.channel = channel.stats.as_dict()
        return report

    def _train_turn(self, channel: Channel, report: DeviceReport, timeout: float | None) -> None:
        self.model.train()
        for batch in self.train_data:
            x_raw, y = _xy(batch)
            x_raw, y = x_raw.to(self.device), y.to(self.device)
            x = self.transform(x_raw, y) if self.transform is not None else x_raw
            act = self.model(x)
            reg = self.regularizer(x_raw, act) if self.regularizer is not None else None
            channel.send({"op": "forward", "act": act.detach(), "y": y})
            reply = channel.recv(timeout=timeout)
            expect(reply, ("grad",), "device (waiting for the activation gradient)")
            grad = reply["grad"].to(device=act.device, dtype=act.dtype)
            if grad.shape != act.shape:
                raise SplitProtocolError(
                    f"the server returned a gradient of shape {tuple(grad.shape)} for activations "
                    f"of shape {tuple(act.shape)}; device and server halves do not match"
                )
            self.optimizer.zero_grad(set_to_none=True)
            if reg is None:
                act.backward(grad)
            else:
                torch.autograd.backward([act, reg], [grad, torch.ones_like(reg)])
            self.optimizer.step()
            report.batches += 1
            report.samples += int(y.shape[0])

    @torch.no_grad()
    def _evaluate(self, channel: Channel, timeout: float | None) -> tuple[int, int]:
        if self.eval_data is None:
            return 0, 0
        self.model.eval()
        correct = total = 0
        for batch in self.eval_data:
            x_raw, y = _xy(batch)
            x_raw, y = x_raw.to(self.device), y.to(self.device)
            if self.transform is not None:
                with torch.enable_grad():
                    x = self.transform(x_raw, y)
            else:
                x = x_raw
            channel.send({"op": "infer", "act": self.model(x)})
            reply = channel.recv(timeout=timeout)
            expect(reply, ("logits",), "device (waiting for logits)")
            correct += int((reply["logits"].argmax(1).to(y.device) == y).sum())
            total += int(y.shape[0])
        return correct, total
