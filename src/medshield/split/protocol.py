"""The split-learning wire protocol: message kinds, the server-head interface, reports.

Vanilla split learning (Gupta and Raskar, "Distributed learning of deep neural network over
multiple agents", J. Netw. Comput. Appl. 2018; Vepakomma et al., "Split learning for health",
arXiv:1812.00564): a network is cut into a *device half* (the layers up to the cut, on the
data owner's device) and a *server half* (the rest). Per training batch

1. the device runs its half and sends the cut-layer activations and the labels
   (``{"op": "forward", "act": (N, *A), "y": (N,)}``);
2. the server finishes the forward pass, computes the loss, back-propagates to the cut, updates
   its half and returns the activation gradient (``{"op": "grad", "grad": (N, *A)}``);
3. the device back-propagates that gradient through its half and updates it.

Several devices take turns with one server: the server tells device ``k`` to train
(``{"op": "turn", "state": ...}``); when it is done it returns its device-half state
(``{"op": "end_turn", "state": ...}``) and the server relays it to the next device
("centralised" hand-off: the server sees the device-half weights, which the gradient-leakage
threat model in ``docs/threat-models.md`` assumes anyway). After training the server can ask
each device to evaluate (``"evaluate"``: the device sends ``"infer"`` batches of activations and
gets logits back, then a ``"report"``), and finally sends ``"stop"``.

Every message goes through a :class:`~medshield.transport.base.Channel`, so bytes and rounds
are counted by the channel, identically in-process and over TCP.

Threat model (``docs/threat-models.md``, PGSL / split learning): the server, or an
eavesdropper on the device-server link, observes the activations, the labels, the gradients it
returns and, with this hand-off, the device-half weights between turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "OPS",
    "HeadOutput",
    "ServerHead",
    "ClassifierHead",
    "as_head",
    "SplitProtocolError",
    "DeviceReport",
    "SplitHistory",
]

#: Message kinds, by sender.
OPS: dict[str, tuple[str, ...]] = {
    "device": ("hello", "forward", "end_turn", "infer", "report"),
    "server": ("turn", "grad", "evaluate", "logits", "stop"),
}


class SplitProtocolError(RuntimeError):
    """A party received a message it did not expect; the message names both sides' state."""


@dataclass
class HeadOutput:
    """What a server head computes for one training batch.

    Attributes
    ----------
    total : scalar loss the server half is trained on
    to_device : scalar loss whose gradient w.r.t. the activations is sent to the device
        (``total`` for plain split learning). When it *is* ``total``, the server runs one
        backward pass; otherwise a second one for the device's gradient. A head that must
        send part of its loss's gradient does best to detach the activations from the other
        parts and return ``total`` (PGSL's head does)
    logits : ``(N, K)`` scores used for the running training accuracy
    """

    total: Tensor
    to_device: Tensor
    logits: Tensor


@runtime_checkable
class ServerHead(Protocol):
    """The server half as the protocol sees it: an ``nn.Module`` with two methods."""

    def split_losses(self, act: Tensor, y: Tensor) -> HeadOutput:
        """Losses and logits for activations ``act`` ``(N, *A)`` and labels ``y`` ``(N,)``."""
        ...

    def predict(self, act: Tensor) -> Tensor:
        """Scores ``(N, K)`` for activations ``act`` (inference)."""
        ...


class ClassifierHead(nn.Module):
    """Wraps a plain classifier (the server half of a cut model) as a :class:`ServerHead`.

    Parameters
    ----------
    model
        Maps activations ``(N, *A)`` to logits ``(N, K)``.
    loss_fn
        ``loss_fn(logits, y)``; default cross-entropy.
    """

    def __init__(self, model: nn.Module, loss_fn: Any = None) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def split_losses(self, act: Tensor, y: Tensor) -> HeadOutput:
        logits = self.model(act)
        loss = F.cross_entropy(logits, y) if self.loss_fn is None else self.loss_fn(logits, y)
        return HeadOutput(total=loss, to_device=loss, logits=logits)

    def predict(self, act: Tensor) -> Tensor:
        return self.model(act)  # type: ignore[no-any-return]

    def forward(self, act: Tensor) -> Tensor:
        return self.predict(act)


def as_head(model: nn.Module) -> nn.Module:
    """``model`` itself if it already is a :class:`ServerHead`, else a :class:`ClassifierHead`."""
    if hasattr(model, "split_losses") and hasattr(model, "predict"):
        return model
    return ClassifierHead(model)


@dataclass
class DeviceReport:
    """What one device knows at the end of a run."""

    rank: int
    batches: int = 0
    samples: int = 0
    eval_accuracy: float | None = None
    eval_samples: int = 0
    channel: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "batches": self.batches,
            "samples": self.samples,
            "eval_accuracy": self.eval_accuracy,
            "eval_samples": self.eval_samples,
            "channel": dict(self.channel),
        }


@dataclass
class SplitHistory:
    """What the server records during a run.

    Attributes
    ----------
    train_loss, train_accuracy : per epoch (over all devices' batches)
    eval_accuracy : per device rank, after training (``None`` if not evaluated)
    device_state : the last device-half ``state_dict`` handed back (the trained device half;
        ``None`` when the devices seal the hand-off)
    sealed_handoff : whether the devices sealed the hand-off (the server never held the
        device half's weights)
    channels : per device rank, the server end's channel counters
    seconds : wall time of the run
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    eval_accuracy: dict[int, float | None] = field(default_factory=dict)
    device_state: dict[str, Tensor] | None = None
    channels: dict[int, dict[str, int]] = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0
    sealed_handoff: bool = False

    def bytes_total(self) -> int:
        """Bytes sent in both directions over all device channels."""
        return sum(c["bytes_sent"] + c["bytes_received"] for c in self.channels.values())

    def rounds_total(self) -> int:
        """Flights by the server plus flights by the devices (= latencies paid, see Channel)."""
        return sum(c["rounds"] for c in self.channels.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "eval_accuracy": {str(k): v for k, v in self.eval_accuracy.items()},
            "channels": {str(k): v for k, v in self.channels.items()},
            "samples": self.samples,
            "seconds": self.seconds,
            "sealed_handoff": self.sealed_handoff,
        }


def expect(msg: dict[str, Any], ops: tuple[str, ...], who: str) -> str:
    """The ``"op"`` of ``msg`` if it is one of ``ops``; else a clear :class:`SplitProtocolError`."""
    op = msg.get("op")
    if op not in ops:
        raise SplitProtocolError(
            f"{who} expected one of {', '.join(ops)} but received op={op!r}; both parties must "
            "run the same medshield.split protocol (check versions and that each device talks "
            "to its own channel)"
        )
    return str(op)


def state_to_cpu(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of a (nested) state dict with every tensor detached on the CPU."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            out[key] = value.detach().cpu().clone()
        elif isinstance(value, dict):
            out[key] = state_to_cpu(value)
        else:
            out[key] = value
    return out


def batch_correct(logits: Tensor, y: Tensor) -> int:
    """Number of rows of ``logits`` whose argmax is ``y``."""
    with torch.no_grad():
        return int((logits.argmax(1) == y).sum())


OptimizerSpec = Any  # "adam" | "sgd" | "adamw" | factory(params) -> Optimizer


def make_optimizer(spec: OptimizerSpec, module: nn.Module, lr: float) -> torch.optim.Optimizer:
    """An optimizer over ``module``'s trainable parameters.

    ``spec`` is ``"adam"``, ``"adamw"``, ``"sgd"`` (plain, no momentum: the textbook split
    learning update), ``"sgd-momentum"`` (0.9) or a factory ``params -> Optimizer``.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            f"{type(module).__name__} has no trainable parameters; cut the model so that each "
            "side keeps at least one trainable layer"
        )
    if callable(spec):
        return spec(params)  # type: ignore[no-any-return]
    name = str(spec).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(
        f"unknown optimizer {spec!r}; use 'adam', 'adamw', 'sgd', 'sgd-momentum' or a factory "
        "such as functools.partial(torch.optim.SGD, lr=0.1)"
    )
