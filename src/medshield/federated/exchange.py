"""The device <-> hospital split-learning exchange of EICPP (Algorithms 2 and 3).

A medical device runs the first layers of the network (up to the cut), clips each
activation row, adds Gaussian noise, and sends the noisy activations ``O'`` with the labels
``Y`` to its hospital (Algorithm 2, steps 5-7). The hospital runs the rest of the network,
updates its part with SGD and returns ``dLoss/dO'`` (Algorithm 3, steps 4-7); the device
back-propagates it into its own layers (Algorithm 2, steps 8-10).

Everything crosses a :class:`medshield.transport.Channel` (in-process in simulation, TCP
in a deployment), so byte and round counts come from the channel. The protocol is four
messages, each a ``dict``::

    hospital -> device  {"op": "start", "state": {name: tensor}, "epoch": int, "round": int,
                         "lr": float, "momentum": float, "batch_size": int, "seed": int,
                         "clip": float, "noise": float, "noise_source": "os" | "seeded"}
    device -> hospital  {"op": "forward", "act": (B, k) tensor, "y": (B,) int64}
    hospital -> device  {"op": "grad", "grad": (B, k) tensor}
    device -> hospital  {"op": "done", "state": {name: tensor}, "n": int}

plus ``{"op": "stop"}`` (hospital -> device) to end a device's serve loop. The weights of
the device part travel with ``start``/``done`` so the hospital can hand them to the next
device (a single ``W_note`` is trained by the devices in turn, Algorithm 2, step 1) and
upload the whole model to the cloud.

These are small functions on purpose: :mod:`medshield.split` (split learning over
channels) can replace :func:`device_turn` and :func:`hospital_turn` later.

Threat model
------------
The hospital is curious about its devices' records. What it receives per batch is the
clipped, noised activation (a Gaussian mechanism, see :func:`privatize_activations` and
:func:`medshield.federated.accounting.activation_epsilon`) and the labels *in clear*
(Algorithm 2 sends them), and at the end of a turn the device part's weights, which are
*not* noised. The activation guarantee therefore covers a record's features as seen
through the activations only.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medshield.data import ArraySplit
from medshield.transport import Channel

__all__ = ["privatize_activations", "device_turn", "device_serve", "hospital_turn",
           "TurnStats", "turn_seed"]


def turn_seed(seed: int, round_: int, hospital: int, device: int, epoch: int) -> int:
    """A 63-bit seed for one device turn, derived from all its coordinates."""
    ss = np.random.SeedSequence([seed, round_, hospital, device, epoch])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def privatize_activations(act: torch.Tensor, clip: float, noise: float,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Clip every row of ``act`` to L2 norm ``clip`` and add ``N(0, (noise * clip)^2)``.

    Algorithm 2, step 6 ("add the noise to O_n to get O'_k"), made a Gaussian mechanism:
    clipping bounds the norm of each row by ``C = clip``, so two records' clipped rows differ
    by at most ``2C`` in L2 norm and each release is ``(noise / 2)``-noise-multiplier
    Gaussian with respect to replacing the record.

    Parameters
    ----------
    act : ``(B, ...)`` activations (rows are flattened for the norm); differentiable
    clip : L2 bound per row; ``0`` disables clipping (then ``noise`` must be 0)
    noise : noise multiplier ``sigma_a`` (std = ``sigma_a * clip``)
    generator : source of the noise (explicit for reproducibility)

    Returns
    -------
    ``(B, ...)`` tensor; gradients flow through the clipping (the noise is additive).
    """
    if clip <= 0:
        if noise > 0:
            raise ValueError("activation noise needs clip > 0 (its scale is noise * clip)")
        return act
    flat = act.reshape(act.shape[0], -1)
    norms = flat.norm(dim=1, keepdim=True)
    factor = torch.clamp(clip / (norms + 1e-12), max=1.0)
    out = (flat * factor).reshape(act.shape)
    if noise > 0:
        eps = torch.randn(act.shape, generator=generator, dtype=act.dtype).to(act.device)
        out = out + noise * clip * eps
    return out


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _device_noise_seed(start: dict[str, Any]) -> int:
    """The seed of the device's activation noise: the device's own OS entropy in secure mode.

    The hospital is the party the activation noise hides the features from, so in
    ``"os"`` mode the device draws the seed itself and it never leaves the device. In
    ``"seeded"`` mode it follows from the turn seed the hospital sent (reproducible, but
    the hospital can recompute and remove the noise): warned about when noise is on.
    """
    if start.get("noise_source", "seeded") == "os":
        return secrets.randbits(63)
    if float(start.get("noise", 0.0)) > 0:
        from medshield.secure.randomness import SecurityWarning

        warnings.warn("device activation noise seeded from the hospital's turn seed "
                      "(noise_source='seeded'): the hospital can remove it; use "
                      "noise_source='os' in deployment", SecurityWarning, stacklevel=3)
    return int(start["seed"]) ^ 0x5DEECE66D


def device_turn(channel: Channel, part: nn.Module, data: ArraySplit, start: dict[str, Any],
                device: torch.device | None = None) -> None:
    """Run one device turn (Algorithm 2) after receiving ``start``: one pass over ``data``.

    Loads ``start["state"]`` into ``part``, then for every mini-batch (shuffled with
    ``start["seed"]``): forward, :func:`privatize_activations`, send ``forward``, receive
    ``grad``, back-propagate it, SGD step. Ends by sending ``done`` with the updated
    weights.
    """
    dev = device or torch.device("cpu")
    part.load_state_dict(start["state"])
    part.to(dev).train()
    opt = torch.optim.SGD(part.parameters(), lr=float(start["lr"]),
                          momentum=float(start["momentum"]))
    gen = torch.Generator().manual_seed(int(start["seed"]))
    noise_gen = torch.Generator().manual_seed(_device_noise_seed(start))
    x_all, y_all = data.tensors()
    order = torch.randperm(len(data), generator=gen)
    bs = int(start["batch_size"])
    for lo in range(0, len(data), bs):
        idx = order[lo: lo + bs]
        x, y = x_all[idx].to(dev), y_all[idx]
        act = part(x)
        sent = privatize_activations(act, float(start["clip"]), float(start["noise"]),
                                     noise_gen)
        channel.send({"op": "forward", "act": sent.detach().cpu(), "y": y})
        reply = channel.recv()
        if reply.get("op") != "grad":
            raise RuntimeError(f"device expected a 'grad' message, got {reply.get('op')!r}")
        opt.zero_grad(set_to_none=True)
        sent.backward(reply["grad"].to(dev))
        opt.step()
    channel.send({"op": "done", "state": {k: v.cpu() for k, v in _state(part).items()},
                  "n": len(data)})


def device_serve(channel: Channel, part: nn.Module, data: ArraySplit,
                 device: torch.device | None = None) -> int:
    """A device's main loop: run a turn for every ``start`` until ``stop``; returns turns."""
    turns = 0
    while True:
        msg = channel.recv()
        op = msg.get("op")
        if op == "stop":
            return turns
        if op != "start":
            raise RuntimeError(f"device expected 'start' or 'stop', got {op!r}")
        device_turn(channel, part, data, msg, device)
        turns += 1


@dataclass
class TurnStats:
    """What the hospital saw in one device turn."""

    samples: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    batches: int = 0
    seconds: float = 0.0


def hospital_turn(channel: Channel, server: nn.Module, opt: torch.optim.Optimizer,
                  device_state: dict[str, torch.Tensor], start: dict[str, Any],
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                  device: torch.device | None = None,
                  ) -> tuple[dict[str, torch.Tensor], TurnStats]:
    """Serve one device turn (Algorithm 3): send ``start``, train on every ``forward``.

    For each received batch ``(O', Y)``: ``loss = CE(server(O'), Y)``, SGD step on the
    server part, reply with ``dLoss/dO'``. Returns the device weights of the ``done``
    message and the turn's statistics.
    """
    dev = device or torch.device("cpu")
    loss_fn = loss_fn or nn.functional.cross_entropy
    stats = TurnStats()
    t0 = time.perf_counter()
    channel.send({**start, "op": "start", "state": device_state})
    server.train()
    while True:
        msg = channel.recv()
        op = msg.get("op")
        if op == "done":
            stats.seconds = time.perf_counter() - t0
            return msg["state"], stats
        if op != "forward":
            raise RuntimeError(f"hospital expected 'forward' or 'done', got {op!r}")
        act = msg["act"].to(dev).requires_grad_(True)
        y = msg["y"].to(dev)
        out = server(act)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        assert act.grad is not None
        channel.send({"op": "grad", "grad": act.grad.detach().cpu()})
        stats.samples += len(y)
        stats.loss_sum += float(loss.detach()) * len(y)
        stats.correct += int((out.detach().argmax(1) == y).sum())
        stats.batches += 1
