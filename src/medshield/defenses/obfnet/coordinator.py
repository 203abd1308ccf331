"""The coordinator (cloud/edge): holds the frozen inference model, trains and releases ObfNets.

Zheng et al. 2019, section 3.2 and Fig. 2. The coordinator pre-trains the deep inference
model, trains K ObfNets in front of it (:func:`~.training.train_obfnet`), and sends all of
them to every participant. At run time it classifies whatever arrives -- raw or obfuscated
samples alike -- without being told which (the scheme is voluntary).

Threat model (docs/threat-models.md): honest but curious. It follows the protocol, but it
keeps the ObfNets' weights and every sample it receives;
:mod:`medshield.attacks.privacy.obfnet_inversion` measures what it can recover from them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from medshield.defenses.obfnet.training import frozen, train_obfnet
from medshield.runtime import get_device
from medshield.training import History, evaluate, predict

__all__ = ["Coordinator"]


class Coordinator:
    """The coordinator's side of the ObfNet scheme.

    Parameters
    ----------
    model
        The pre-trained deep inference model (LeNet-5 in the paper). It is never updated
        here; :meth:`add_obfnet` trains ObfNets in front of it with its weights frozen.
    device
        Where the model runs (default: CUDA when present, else the CPU).

    Attributes
    ----------
    obfnets : dict[str, nn.Module]
        The trained ObfNets by name, in the order they were added.
    histories : dict[str, History]
        Their training histories.
    """

    def __init__(self, model: nn.Module, *, device: str | torch.device | None = None) -> None:
        self.device = get_device(device)
        self.model = model.to(self.device).eval()
        self.obfnets: dict[str, nn.Module] = {}
        self.histories: dict[str, History] = {}

    def add_obfnet(
        self,
        name: str,
        obfnet: nn.Module,
        train_loader: Iterable[Any],
        *,
        epochs: int,
        lr: float = 1e-3,
        seed: int = 0,
        val_loader: Iterable[Any] | None = None,
        progress: bool = False,
    ) -> History:
        """Train ``obfnet`` in front of the frozen model and keep it under ``name``.

        Each ObfNet should start from its own random initialisation (``seed=`` of
        :class:`~medshield.models.ObfNet2`): the paper's ObfNet2-0 ... ObfNet2-9 "are of the
        same structure and trained individually".
        """
        if name in self.obfnets:
            raise ValueError(f"an ObfNet named {name!r} exists already; pick another name")
        history = train_obfnet(
            obfnet,
            self.model,
            train_loader,
            epochs=epochs,
            lr=lr,
            device=self.device,
            val_loader=val_loader,
            seed=seed,
            progress=progress,
        )
        self.obfnets[name] = obfnet.eval()
        self.histories[name] = history
        return history

    def release(self) -> list[nn.Module]:
        """Copies of the ObfNets for the participants (CPU, eval mode, no gradients)."""
        out = []
        for net in self.obfnets.values():
            c = copy.deepcopy(net).cpu().eval()
            for p in c.parameters():
                p.requires_grad_(False)
            out.append(c)
        return out

    def classify(self, x: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Labels ``(N,)`` and class probabilities ``(N, K)`` of raw or obfuscated samples."""
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x), batch_size=batch_size
        )
        with frozen(self.model, verify=False):
            return predict(self.model, loader, device=self.device)

    def evaluate(
        self,
        loader: Iterable[Any],
        obfuscate: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """Classification report of the model on ``loader``, optionally obfuscated first.

        ``obfuscate`` is applied to every batch on the device of the model (e.g. an ObfNet
        from :attr:`obfnets`, or a :class:`~.participant.Participant`'s ``obfuscate``).
        """
        if obfuscate is None:
            return evaluate(self.model, loader, device=self.device)

        def _obf(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = batch[0].to(self.device), batch[1]
            with torch.no_grad():
                out = obfuscate(x)
            out = out[0] if isinstance(out, tuple) else out
            return out, y

        return evaluate(self.model, (_obf(b) for b in loader), device=self.device)
