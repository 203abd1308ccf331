"""The server side of split learning: the layers after the cut, shared by every device."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medshield.runtime import get_device
from medshield.split.protocol import (
    OptimizerSpec,
    SplitHistory,
    SplitProtocolError,
    as_head,
    batch_correct,
    expect,
    make_optimizer,
)
from medshield.transport.base import Channel

__all__ = ["SplitServer"]


class SplitServer:
    """The server half of split learning; orchestrates the devices' turns.

    For each epoch the devices train one after the other (vanilla split learning, Gupta and
    Raskar 2018), each on its whole local data, continuing from the previous device's
    device-half state, which the server relays. Per batch the server receives the cut-layer
    activations and labels, computes the head's losses, sends back
    ``d(to_device loss)/d(act)``, and updates its half on the ``total`` loss (see
    :class:`~medshield.split.protocol.HeadOutput`).

    Parameters
    ----------
    head
        The server half: a plain classifier ``(N, *A) -> (N, K)`` (wrapped in
        :class:`~medshield.split.protocol.ClassifierHead`) or any
        :class:`~medshield.split.protocol.ServerHead` (PGSL's three-stream head).
    optimizer, lr
        See :func:`~medshield.split.protocol.make_optimizer`.
    device
        Torch device of the server half (default: CUDA when present).
    """

    def __init__(
        self,
        head: nn.Module,
        *,
        optimizer: OptimizerSpec = "adam",
        lr: float = 1e-3,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = get_device(device)
        self.head = as_head(head).to(self.device)
        self.optimizer = make_optimizer(optimizer, self.head, lr)

    def run(
        self,
        channels: Sequence[Channel],
        *,
        epochs: int,
        evaluate: bool = True,
        timeout: float | None = 60.0,
    ) -> SplitHistory:
        """Train with the devices behind ``channels`` for ``epochs`` rounds of turns.

        Each device first sends ``{"op": "hello", "rank": k}``; turns follow the ranks (so the
        order does not depend on which device connected first).

        Parameters
        ----------
        channels
            One channel per device (any order).
        epochs
            Rounds of turns; in each, every device passes once over its training data.
        evaluate
            Ask every device to evaluate its ``eval_data`` at the end.
        timeout
            Seconds to wait for any single device message (a device's whole turn is many
            messages, each bounded by this).

        Returns
        -------
        SplitHistory
            Per-epoch loss and accuracy, evaluation accuracy per rank, the final device-half
            state, and the channel counters of every device link.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        t0 = time.perf_counter()
        ranked: dict[int, Channel] = {}
        for ch in channels:
            hello = ch.recv(timeout=timeout)
            expect(hello, ("hello",), "server (waiting for a device's hello)")
            rank = int(hello["rank"])
            if rank in ranked:
                raise SplitProtocolError(
                    f"two devices announced rank {rank}; give every device a distinct rank"
                )
            ranked[rank] = ch
        order = sorted(ranked)
        history = SplitHistory()
        handoff: dict[str, Any] | None = None
        for _ in range(epochs):
            loss_sum, correct, seen = 0.0, 0, 0
            for rank in order:
                ch = ranked[rank]
                ch.send({"op": "turn", "state": handoff})
                while True:
                    msg = ch.recv(timeout=timeout)
                    op = expect(msg, ("forward", "end_turn"), f"server (turn of device {rank})")
                    if op == "end_turn":
                        handoff = msg["state"]
                        break
                    loss, ok, n = self._train_batch(ch, msg, rank)
                    loss_sum += loss * n
                    correct += ok
                    seen += n
            history.train_loss.append(loss_sum / max(seen, 1))
            history.train_accuracy.append(correct / max(seen, 1))
            history.samples += seen
        if evaluate:
            for rank in order:
                history.eval_accuracy[rank] = self._evaluate(ranked[rank], handoff, timeout)
        for rank in order:
            ranked[rank].send({"op": "stop"})
            history.channels[rank] = ranked[rank].stats.as_dict()
        # a sealed hand-off (HandoffSeal) is opaque to the server: it keeps no device half
        history.sealed_handoff = handoff is not None and "sealed" in handoff
        history.device_state = None if handoff is None else handoff.get("model")
        history.seconds = time.perf_counter() - t0
        return history

    def _train_batch(self, ch: Channel, msg: dict[str, Any], rank: int = 0
                     ) -> tuple[float, int, int]:
        self.head.train()
        act = _tensor(msg, "act", rank).to(self.device)
        y = _tensor(msg, "y", rank).to(self.device).long()
        if not act.is_floating_point() or y.dim() != 1 or act.dim() < 2 or len(y) != len(act):
            raise SplitProtocolError(
                f"device {rank} sent {tuple(act.shape)} activations with {tuple(y.shape)} "
                f"labels ({act.dtype}); a batch needs floating-point (N, ...) activations and "
                "N labels")
        act.requires_grad_(True)
        try:
            out = self.head.split_losses(act, y)
        except (RuntimeError, IndexError, ValueError) as exc:
            raise SplitProtocolError(
                f"device {rank} sent activations of shape {tuple(act.shape)} (labels "
                f"{int(y.min())}..{int(y.max())}) that the server half cannot take: "
                f"{str(exc).splitlines()[0]}. The device and the server must build the same "
                "network from the same configuration (medshield split: the same run.json)"
            ) from None
        self.optimizer.zero_grad(set_to_none=True)
        if out.to_device is out.total:
            out.total.backward()
            grad = act.grad
        else:
            (grad,) = torch.autograd.grad(out.to_device, act, retain_graph=True)
            out.total.backward()
        assert grad is not None
        ch.send({"op": "grad", "grad": grad.detach()})
        self.optimizer.step()
        return float(out.total.detach()), batch_correct(out.logits, y), int(y.shape[0])

    @torch.no_grad()
    def _evaluate(
        self, ch: Channel, state: dict[str, Any] | None, timeout: float | None
    ) -> float | None:
        self.head.eval()
        ch.send({"op": "evaluate", "state": state})
        while True:
            msg = ch.recv(timeout=timeout)
            op = expect(msg, ("infer", "report"), "server (evaluation)")
            if op == "report":
                total = int(msg["total"])
                return int(msg["correct"]) / total if total else None
            act = _tensor(msg, "act", -1).to(self.device)
            try:
                logits = self.head.predict(act)
            except (RuntimeError, ValueError) as exc:
                raise SplitProtocolError(
                    f"a device sent evaluation activations of shape {tuple(act.shape)} that "
                    f"the server half cannot take: {str(exc).splitlines()[0]}"
                ) from None
            ch.send({"op": "logits", "logits": logits})


def _tensor(msg: dict[str, Any], key: str, rank: int) -> torch.Tensor:
    """``msg[key]`` if it is a tensor; else a clear :class:`SplitProtocolError`."""
    value = msg.get(key)
    if not isinstance(value, torch.Tensor):
        who = f"device {rank}" if rank >= 0 else "a device"
        raise SplitProtocolError(
            f"{who} sent a {msg.get('op')!r} message whose {key!r} is "
            f"{type(value).__name__}, not a tensor; both parties must run the same "
            "medshield.split protocol")
    return value
