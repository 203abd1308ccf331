"""The model registry and the staged-network base class every built-in model derives from.

Every model in :mod:`medshield.models` is a :class:`Staged` network: an
:class:`torch.nn.Sequential` whose children are *named stages* (``"conv1"``, ``"layer3"``,
``"fc"`` ...). Running the stages in order is the whole forward pass, so a model can be
cut between any two stages into a device part and a server part (split learning, PGSL,
EICPP) by :func:`medshield.models.cut.cut_model`, and the secure-inference protocols can
walk the layers one by one.

Examples
--------
>>> import medshield
>>> net = medshield.create("model", "lenet5", num_classes=10)
>>> list(net.stage_names())[:3]
['conv1', 'relu1', 'pool1']
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn

from medshield.registry import Registry

__all__ = ["MODELS", "Staged", "WeightsError", "count_parameters", "seeded_init", "eval_mode"]

MODELS: Registry[type[nn.Module]] = Registry("model")


class WeightsError(ValueError):
    """A weights file is corrupt or does not fit the architecture; the message names the file."""


class Staged(nn.Sequential):
    """An :class:`~torch.nn.Sequential` of named stages; the base of every built-in model.

    Subclasses build an ``OrderedDict`` of stages and pass it to ``Staged.__init__``. The
    forward pass is the stages applied in order, nothing else (no hidden functional ops
    between them), which is what makes cutting by name exact.

    Parameters
    ----------
    stages
        ``name -> module`` in execution order. Names must be unique and contain no dots.
    """

    def __init__(self, stages: OrderedDict[str, nn.Module] | None = None) -> None:
        stages = stages if stages is not None else OrderedDict()
        for name in stages:
            if not name or "." in name:
                raise ValueError(f"stage name {name!r} is invalid: use a non-empty name without dots")
        super().__init__(stages)

    def __getitem__(self, idx: int | slice | str) -> nn.Module:  # type: ignore[override]
        """A stage by position or name, or a slice of stages as a plain :class:`Staged`.

        (``nn.Sequential`` would rebuild a slice with ``type(self)(...)``, which fails for
        subclasses whose constructors take hyperparameters.)
        """
        if isinstance(idx, str):
            if idx not in self._modules:
                raise KeyError(f"no stage {idx!r}; stages: {', '.join(self._modules)}")
            module = self._modules[idx]
            assert module is not None
            return module
        if isinstance(idx, slice):
            return Staged(OrderedDict(list(self._modules.items())[idx]))  # type: ignore[arg-type]
        return super().__getitem__(idx)

    def stage_names(self) -> list[str]:
        """The stage names in execution order."""
        return list(self._modules)

    def stages(self) -> Iterator[tuple[str, nn.Module]]:
        """``(name, module)`` pairs in execution order."""
        for name, module in self._modules.items():
            assert module is not None
            yield name, module


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@contextlib.contextmanager
def seeded_init(seed: int | None) -> Iterator[None]:
    """Run the enclosed layer construction under its own torch RNG seeded with ``seed``.

    With ``seed=None`` this does nothing (the global torch RNG is used, as usual). With a
    seed, the CPU RNG state is forked, so building a model with an explicit seed neither
    reads nor disturbs the global RNG and two builds with the same seed are identical.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the enclosed block; every submodule's ``training`` flag is
    restored on exit, also on error (a caller's model is handed back as it came).

    Attacks use it to replay a forward pass exactly (no dropout, BatchNorm on its running
    statistics). Gradients are not switched off.
    """
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in saved:
            module.training = flag


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` naming the first option that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
