"""Training an ObfNet in front of a frozen inference model (Zheng et al. 2019, section 3.2).

"After the pre-training of the deep inference model, we use the same training dataset to
train the concatenation of the ObfNet and the pre-trained deep inference model. During the
training phase of the concatenated model, only the parameters of the ObfNet are updated
while the parameters of the pre-trained inference model are fixed." The loss is the
inference model's cross-entropy on the ObfNet's outputs:

    min_theta  E_(x, y) CE( M(O_theta(x)), y ),   M frozen.

The coordinator does this training (IoT objects cannot train) and releases the ObfNets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from medshield.training import History, fit

__all__ = ["FrozenModelChanged", "frozen", "ObfuscatedModel", "train_obfnet"]


class FrozenModelChanged(RuntimeError):
    """The inference model's weights or buffers changed while it was supposed to be frozen."""


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {f"param:{k}": v.detach().clone() for k, v in model.named_parameters()}
    state.update({f"buffer:{k}": v.detach().clone() for k, v in model.named_buffers()})
    return state


@contextlib.contextmanager
def frozen(model: nn.Module, *, verify: bool = True) -> Iterator[nn.Module]:
    """Freeze ``model`` (no gradients, eval mode) for the enclosed block, then restore it.

    Parameters
    ----------
    model
        The coordinator's pre-trained inference model.
    verify
        Snapshot every parameter and buffer on entry and raise :class:`FrozenModelChanged`
        on exit if any of them changed (for example a BatchNorm's running statistics, or an
        optimizer that was handed the model's parameters by mistake).

    Yields
    ------
    nn.Module
        ``model`` itself, with ``requires_grad=False`` everywhere and in eval mode.
    """
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    before = _snapshot(model) if verify else {}
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, True))
        model.train(was_training)
    if verify:
        after = _snapshot(model)
        changed = [k for k, v in before.items() if not torch.equal(v, after[k].to(v.device))]
        if changed:
            raise FrozenModelChanged(
                "the frozen inference model changed during ObfNet training "
                f"({', '.join(changed[:5])}"
                f"{' ...' if len(changed) > 5 else ''}); only the ObfNet's parameters may be "
                "given to the optimizer"
            )


class ObfuscatedModel(nn.Module):
    """The concatenation ``model(obfnet(x))`` that the coordinator trains (Fig. 2).

    ``train()`` only switches the ObfNet; the inference model stays in eval mode, so layers
    such as dropout or batch normalisation in it behave as at inference time.

    Shapes
    ------
    ``(N, *input_shape)`` -> the inference model's logits ``(N, K)``.
    """

    def __init__(self, obfnet: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.obfnet = obfnet
        self.model = model

    def train(self, mode: bool = True) -> ObfuscatedModel:
        self.training = mode
        self.obfnet.train(mode)
        self.model.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.obfnet(x))  # type: ignore[no-any-return]


def train_obfnet(
    obfnet: nn.Module,
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int,
    lr: float = 1e-3,
    optimizer: str = "adam",
    device: str | torch.device | None = None,
    val_loader: Iterable[Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> History:
    """Train ``obfnet`` so that the frozen ``model`` still classifies its outputs correctly.

    Only the ObfNet's parameters reach the optimizer; ``model`` is frozen (and checked to be
    unchanged afterwards, see :func:`frozen`). Both are moved to ``device``.

    Parameters
    ----------
    obfnet
        An obfuscation network mapping ``(N, C, H, W)`` to the same shape
        (:class:`~medshield.models.ObfNet1`, :class:`~medshield.models.ObfNet2`).
    model
        The pre-trained inference model (the coordinator's LeNet).
    train_loader
        ``(x, y)`` batches of the inference model's training set (the paper reuses it).
    epochs, lr, optimizer, device, val_loader, seed, progress
        As in :func:`medshield.training.fit`.

    Returns
    -------
    History
        Per-epoch loss and accuracy of ``model(obfnet(x))``.
    """
    with frozen(model):
        pipeline = ObfuscatedModel(obfnet, model)
        history = fit(
            pipeline,
            train_loader,
            epochs=epochs,
            lr=lr,
            optimizer=optimizer,
            device=device,
            val_loader=val_loader,
            seed=seed,
            progress=progress,
        )
    obfnet.eval()
    return history
