"""Cutting a staged model into a device part and a server part (split learning).

Split learning (Vepakomma et al. 2018; PGSL, Khowaja et al. 2022; EICPP, Lai et al. 2022)
runs the first layers of a network on the data owner's device and the rest on a server;
only the activations at the cut (and their gradients) cross the network. Every built-in
model is a :class:`~medshield.models.base.Staged` sequence of named stages, so a cut is a
slice by name.

The parts hold *the same module objects* as the original model: parameters and buffers
(BatchNorm statistics) are shared, not copied. Training a part trains the original model
and vice versa; ``model.eval()`` switches the parts too. Use ``copy.deepcopy`` on the model
first when independent copies are wanted.

Examples
--------
>>> import torch, medshield
>>> from medshield.models import cut_model
>>> net = medshield.create("model", "pgsl-cnn", num_classes=10).eval()
>>> device, server = cut_model(net, "conv2")
>>> x = torch.randn(2, 5, 14, 14)
>>> torch.allclose(server(device(x)), net(x))
True
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from medshield.models.base import Staged

__all__ = ["cut_model", "cut_points", "CutError"]


class CutError(ValueError):
    """An unknown or invalid cut point; the message lists the valid ones."""


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"cut_model needs an nn.Sequential of named stages (every medshield model is "
            f"one), got {type(model).__name__}. Wrap your network in "
            "medshield.models.Staged(OrderedDict(name=module, ...))."
        )
    stages = [(name, mod) for name, mod in model._modules.items() if mod is not None]
    if len(stages) < 2:
        raise CutError(f"{type(model).__name__} has {len(stages)} stage(s); a cut needs two")
    return stages


def cut_points(model: nn.Module) -> list[str]:
    """The stage names ``model`` can be cut at, in execution order.

    Every stage but the last: cutting at the last stage would leave nothing to the server.
    """
    return [name for name, _ in _stages(model)[:-1]]


def cut_model(model: nn.Module, at: str) -> tuple[Staged, Staged]:
    """Split ``model`` after the stage named ``at`` into ``(device, server)``.

    Parameters
    ----------
    model
        A :class:`~medshield.models.base.Staged` model (any ``nn.Sequential`` works).
    at
        Name of the last stage the device runs (it is included in the device part); one
        of :func:`cut_points`.

    Returns
    -------
    (device, server)
        Two :class:`~medshield.models.base.Staged` sequences with
        ``server(device(x)) == model(x)``. They share the original's modules (parameters
        and buffers are the same tensors, not copies), keep the stage names, and can be
        cut again.

    Raises
    ------
    CutError
        ``at`` is not a stage of ``model`` or is its last stage; the message lists the
        valid names.
    TypeError
        ``model`` is not a sequence of named stages.
    """
    stages = _stages(model)
    names = [name for name, _ in stages]
    valid = names[:-1]
    if at not in valid:
        why = "is the last stage (nothing would be left for the server)" if at == names[-1] \
            else "is not a stage of this model"
        raise CutError(
            f"cannot cut {type(model).__name__} at {at!r}: it {why}. "
            f"Valid cut points: {', '.join(valid)}."
        )
    k = names.index(at) + 1
    device = Staged(OrderedDict(stages[:k]))
    server = Staged(OrderedDict(stages[k:]))
    device.training = server.training = model.training  # containers only; children untouched
    return device, server
