"""ObfNet as a registered defence: ``DEFENSES.create("obfnet", k=10)(model, train_loader)``.

Follows the convention of :mod:`medshield.defenses.base`: the constructor stores keyword
hyperparameters; calling the defence with the (pre-trained) inference model and its training
loader trains K ObfNets in front of the frozen model and hands back the deployed pipeline,
an :class:`ObfNetPipeline` whose forward pass obfuscates each sample with a randomly chosen
ObfNet (the participant) and classifies it with the unchanged model (the coordinator).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from medshield.defenses.base import DEFENSES
from medshield.defenses.obfnet.coordinator import Coordinator
from medshield.defenses.obfnet.participant import Participant
from medshield.models import MODELS

__all__ = ["ObfNetDefense", "ObfNetPipeline"]


class ObfNetPipeline(nn.Module):
    """Participant + coordinator in one module: ``model(O_k(x))``, ``k`` random per sample.

    Attributes
    ----------
    participant : the device side (holds the K ObfNets, draws the choice)
    model : the coordinator's frozen inference model
    """

    def __init__(self, participant: Participant, model: nn.Module) -> None:
        super().__init__()
        self.participant = participant
        self.obfnets = nn.ModuleList([n for n in participant.obfnets if isinstance(n, nn.Module)])
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sent, _ = self.participant.obfuscate(x)
        return self.model(sent)  # type: ignore[no-any-return]


@DEFENSES.register("obfnet", aliases=("obfnet2",))
class ObfNetDefense:
    """Train K ObfNets in front of a frozen model (Zheng et al. 2019, sections 3.2-3.3).

    Parameters
    ----------
    k
        Number of ObfNets (the paper: 10 ObfNet2-x).
    kind
        ``"obfnet2"`` (784-1000-784) or ``"obfnet1"`` (784-784).
    epochs, lr
        Training of each ObfNet (Adam, the model's cross-entropy on the ObfNet's outputs).
    input_shape
        Shape of one sample.
    p_raw
        Share of samples the returned pipeline sends raw (voluntary participants).
    seed
        Seed of the ObfNets' initialisations and training (ObfNet ``i`` uses ``seed + i``).
        The pipeline's per-sample choice always uses OS randomness.
    device
        Where training runs.
    """

    def __init__(
        self,
        *,
        k: int = 10,
        kind: Literal["obfnet1", "obfnet2"] = "obfnet2",
        epochs: int = 1,
        lr: float = 1e-3,
        input_shape: tuple[int, ...] = (1, 28, 28),
        p_raw: float = 0.0,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be a positive number of ObfNets, got {k}")
        if kind not in ("obfnet1", "obfnet2"):
            raise ValueError(f"kind must be 'obfnet1' or 'obfnet2', got {kind!r}")
        self.k = k
        self.kind = kind
        self.epochs = epochs
        self.lr = lr
        self.input_shape = tuple(input_shape)
        self.p_raw = p_raw
        self.seed = seed
        self.device = device
        self.coordinator: Coordinator | None = None

    def __repr__(self) -> str:
        return (
            f"ObfNetDefense(k={self.k}, kind={self.kind!r}, epochs={self.epochs}, "
            f"lr={self.lr}, seed={self.seed})"
        )

    def __call__(self, model: nn.Module, train_loader: Iterable[Any]) -> ObfNetPipeline:
        """Train the ObfNets (``model`` stays frozen and unchanged); return the pipeline."""
        coord = Coordinator(model, device=self.device)
        for i in range(self.k):
            net = MODELS.create(self.kind, input_shape=self.input_shape, seed=self.seed + i)
            coord.add_obfnet(
                f"{self.kind}-{i}",
                net,
                train_loader,
                epochs=self.epochs,
                lr=self.lr,
                seed=self.seed + i,
            )
        self.coordinator = coord
        nets = [n.to(coord.device) for n in coord.release()]
        return ObfNetPipeline(Participant(nets, p_raw=self.p_raw), coord.model)
