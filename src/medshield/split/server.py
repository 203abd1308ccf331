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
    state_to_cpu,
)
from medshield.transport.base import Channel
from medshield.transport.errors import TransportError

__all__ = ["SplitServer", "SplitInterrupted", "CHECKPOINT_FORMAT"]

#: ``"format"`` of :meth:`SplitServer.checkpoint`'s dict (checked on resume).
CHECKPOINT_FORMAT = "medshield-split-resume/1"


class SplitInterrupted(SplitProtocolError):
    """A device disconnected, timed out or broke the protocol in the middle of a run.

    Nothing trained before the last completed epoch is lost: :attr:`checkpoint` is the
    server's state at that epoch boundary (:meth:`SplitServer.checkpoint`), which
    :meth:`SplitServer.run` continues from with ``resume=``. The interrupted epoch's partial
    updates are dropped, so a resumed run trains exactly the epochs an uninterrupted one does.

    Attributes
    ----------
    rank : the device whose link failed
    epoch : the 1-based epoch that was interrupted (``epochs + 1``: during the evaluation)
    checkpoint : the server's state after ``checkpoint["epochs_done"]`` epochs
    """

    def __init__(self, message: str, *, rank: int, epoch: int,
                 checkpoint: dict[str, Any]) -> None:
        super().__init__(message)
        self.rank = rank
        self.epoch = epoch
        self.checkpoint = checkpoint


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
        resume: dict[str, Any] | None = None,
    ) -> SplitHistory:
        """Train with the devices behind ``channels`` for ``epochs`` rounds of turns.

        Each device first sends ``{"op": "hello", "rank": k}``; turns follow the ranks (so the
        order does not depend on which device connected first).

        If a device's link fails (it disconnects, times out, or sends a message the protocol
        does not allow) the run stops with :class:`SplitInterrupted`, whose ``checkpoint`` is
        the state after the last completed epoch; pass it back as ``resume`` (with the devices
        reconnected) to train the remaining epochs.

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
        resume
            A :meth:`checkpoint` (e.g. :attr:`SplitInterrupted.checkpoint`): restore the server
            half, its optimizer, the device-half hand-off and the history, and train epochs
            ``checkpoint["epochs_done"] + 1 .. epochs``.

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
        start = 0
        if resume is not None:
            start, handoff = self._restore(resume, history, epochs)
        saved = self.checkpoint(start, handoff, history)
        for epoch in range(start, epochs):
            loss_sum, correct, seen = 0.0, 0, 0
            for rank in order:
                ch = ranked[rank]
                try:
                    ch.send({"op": "turn", "state": handoff})
                    while True:
                        msg = ch.recv(timeout=timeout)
                        op = expect(msg, ("forward", "end_turn"),
                                    f"server (turn of device {rank})")
                        if op == "end_turn":
                            handoff = msg["state"]
                            break
                        loss, ok, n = self._train_batch(ch, msg, rank)
                        loss_sum += loss * n
                        correct += ok
                        seen += n
                except (TransportError, SplitProtocolError) as exc:
                    raise _interrupted(exc, rank, epoch + 1, epochs, saved) from exc
            history.train_loss.append(loss_sum / max(seen, 1))
            history.train_accuracy.append(correct / max(seen, 1))
            history.samples += seen
            saved = self.checkpoint(epoch + 1, handoff, history)
        if evaluate:
            for rank in order:
                try:
                    history.eval_accuracy[rank] = self._evaluate(ranked[rank], handoff, timeout)
                except (TransportError, SplitProtocolError) as exc:
                    raise _interrupted(exc, rank, epochs + 1, epochs, saved) from exc
        for rank in order:
            ranked[rank].send({"op": "stop"})
            history.channels[rank] = ranked[rank].stats.as_dict()
        # a sealed hand-off (HandoffSeal) is opaque to the server: it keeps no device half
        history.sealed_handoff = handoff is not None and "sealed" in handoff
        history.device_state = None if handoff is None else handoff.get("model")
        history.seconds = time.perf_counter() - t0
        return history

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, epochs_done: int, handoff: dict[str, Any] | None,
                   history: SplitHistory) -> dict[str, Any]:
        """The server's state at an epoch boundary, as plain CPU tensors and Python values.

        Holds the server half and its optimizer, the device-half hand-off as the server
        received it (sealed when the devices seal it: the server still cannot read it) and the
        per-epoch history. ``torch.save`` it; :meth:`run` continues from it with ``resume=``.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "epochs_done": int(epochs_done),
            "head": state_to_cpu(self.head.state_dict()),
            "optimizer": state_to_cpu(self.optimizer.state_dict()),
            "handoff": handoff,
            "history": {"train_loss": list(history.train_loss),
                        "train_accuracy": list(history.train_accuracy),
                        "samples": int(history.samples)},
        }

    def _restore(self, ckpt: dict[str, Any], history: SplitHistory, epochs: int
                 ) -> tuple[int, dict[str, Any] | None]:
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                "not a split-learning server checkpoint (expected format "
                f"{CHECKPOINT_FORMAT!r}); resume from the resume.pt the server wrote when its "
                "run was interrupted")
        done = int(ckpt["epochs_done"])
        if not 0 <= done <= epochs:
            raise ValueError(f"the checkpoint holds {done} completed epochs, more than the "
                             f"{epochs} asked for; ask for at least {done} epochs")
        try:
            self.head.load_state_dict(ckpt["head"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(
                "the checkpoint was made for another server half "
                f"({str(exc).splitlines()[0]}); resume with the configuration of the "
                "interrupted run") from None
        past = ckpt.get("history") or {}
        history.train_loss = list(past.get("train_loss", []))
        history.train_accuracy = list(past.get("train_accuracy", []))
        history.samples = int(past.get("samples", 0))
        return done, ckpt.get("handoff")

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


def _interrupted(exc: BaseException, rank: int, epoch: int, epochs: int,
                 saved: dict[str, Any]) -> SplitInterrupted:
    when = f"epoch {epoch} of {epochs}" if epoch <= epochs else "the final evaluation"
    done = saved["epochs_done"]
    return SplitInterrupted(
        f"the link to device {rank} failed during {when} ({type(exc).__name__}: {exc}); the "
        f"server's state after {done} completed epoch{'s' if done != 1 else ''} is kept for a "
        "resumed run",
        rank=rank, epoch=epoch, checkpoint=saved)


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
