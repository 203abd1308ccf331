"""Black-box model inversion of split learning with a decoder trained on auxiliary data.

He, Zhang and Lee, "Model inversion attacks against collaborative inference", ACSAC 2019
(section 4.2, the black-box "inverse network"), as used against split networks by Titcombe
et al., "Practical defences against model inversion attacks for split neural networks",
ICLR 2021 workshop: the adversary queries the device half with auxiliary images of the same
distribution, trains a decoder :math:`g` to minimise :math:`\\|g(f(x)) - x\\|_2^2` on those
pairs, then applies :math:`g` to the intercepted activations.

If the queries go through the device's defence (noise, NoPeek's trained weights, PGSL's pixel
attack and down-sampling), the decoder is trained on defended activations: the stronger,
defence-aware attacker that ``docs/threat-models.md`` asks the evaluation to include.

Threat model: :data:`~medshield.attacks.privacy.threat.BLACK_BOX_MIA`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import BLACK_BOX_MIA, Knowledge, Observation
from medshield.attacks.registry import ATTACKS
from medshield.runtime import get_device

__all__ = ["DecoderInversion", "InversionDecoder"]


class InversionDecoder(nn.Module):
    """A small convolutional decoder from activations ``(N, *A)`` to images ``(N, C, H, W)``.

    4-D activations ``(N, Ca, h, w)``: conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN -> ReLU at the
    activations' resolution, then a bilinear resize to ``H x W`` and a last conv 3x3 -> sigmoid
    (the wide layers stay at the small resolution, so the decoder is cheap; BatchNorm keeps the
    ReLUs from dying when the activations are noised or badly scaled). Flat activations
    ``(N, D)`` go through a linear layer to ``width x H/4 x W/4`` first.

    Parameters
    ----------
    act_shape
        Shape of one activation, ``(Ca, h, w)`` or ``(D,)``.
    image_shape
        Shape of one image ``(C, H, W)``.
    width
        Channels of the hidden conv layers.
    """

    def __init__(
        self, act_shape: tuple[int, ...], image_shape: tuple[int, ...], width: int = 64
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = (c, h, w)
        if len(act_shape) == 1:
            hh, ww = max(h // 4, 1), max(w // 4, 1)
            self.stem: nn.Module = nn.Sequential(
                nn.Linear(act_shape[0], width * hh * ww),
                nn.BatchNorm1d(width * hh * ww),
                nn.ReLU(),
                nn.Unflatten(1, (width, hh, ww)),
            )
        elif len(act_shape) == 3:
            self.stem = nn.Sequential(
                nn.Conv2d(act_shape[0], width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
            )
        else:
            raise ValueError(
                f"activations must be (C, h, w) or (D,) per sample, got {act_shape}; flatten "
                "other shapes first"
            )
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, c, 3, padding=1),
        )

    def forward(self, act: Tensor) -> Tensor:
        z = self.stem(act)
        z = F.interpolate(z, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.body(z))


@ATTACKS.register("decoder-inversion", aliases=("mia", "inverse-network"))
class DecoderInversion:
    """Train a decoder on ``(query(aux), aux)`` pairs, then decode intercepted activations.

    Parameters
    ----------
    epochs
        Passes over the auxiliary images.
    batch_size, lr
        Adam mini-batches and step size.
    width
        Hidden channels of :class:`InversionDecoder`.
    device
        Where the decoder trains (default: CUDA when present).
    seed
        Seed of the decoder's initialisation and the batch order.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from medshield.attacks.privacy import DecoderInversion, Knowledge, Observation
    >>> device_half = nn.Conv2d(1, 4, 3, padding=1)
    >>> aux = torch.rand(32, 1, 8, 8)
    >>> know = Knowledge(aux_images=aux, query=lambda x: device_half(x).detach())
    >>> obs = Observation(activations=device_half(torch.rand(2, 1, 8, 8)).detach())
    >>> DecoderInversion(epochs=1, device="cpu").run(obs, know).reconstruction.shape
    torch.Size([2, 1, 8, 8])
    """

    threat_model = BLACK_BOX_MIA

    def __init__(
        self,
        *,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        width: int = 64,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        if epochs < 1 or batch_size < 1:
            raise ValueError("epochs and batch_size must be positive integers")
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.width = width
        self.device = device
        self.seed = seed
        self.decoder: InversionDecoder | None = None
        self.train_loss: list[float] = []

    def __repr__(self) -> str:
        return (
            f"DecoderInversion(epochs={self.epochs}, batch_size={self.batch_size}, "
            f"lr={self.lr}, width={self.width}, seed={self.seed})"
        )

    def fit(self, knowledge: Knowledge) -> InversionDecoder:
        """Train the decoder on the adversary's auxiliary images and its queries."""
        self.threat_model.check(Observation(activations=torch.zeros(0)), knowledge)
        assert knowledge.aux_images is not None and knowledge.query is not None
        dev = get_device(self.device)
        aux = knowledge.aux_images.float()
        with torch.no_grad():
            acts = torch.cat(
                [
                    knowledge.query(aux[i : i + 256]).detach().float().cpu()
                    for i in range(0, len(aux), 256)
                ]
            )
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            decoder = InversionDecoder(tuple(acts.shape[1:]), tuple(aux.shape[1:]), self.width)
        decoder = decoder.to(dev).train()
        opt = torch.optim.Adam(decoder.parameters(), lr=self.lr)
        self.train_loss = []
        for _ in range(self.epochs):
            perm = torch.randperm(len(aux), generator=gen)
            total = 0.0
            for i in range(0, len(aux), self.batch_size):
                idx = perm[i : i + self.batch_size]
                a, x = acts[idx].to(dev), aux[idx].to(dev)
                loss = F.mse_loss(decoder(a), x)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.train_loss.append(total / len(aux))
        self.decoder = decoder.eval()
        return self.decoder

    @torch.no_grad()
    def reconstruct(self, activations: Tensor) -> Tensor:
        """Decode activations ``(N, *A)`` to images ``(N, C, H, W)`` (after :meth:`fit`)."""
        if self.decoder is None:
            raise RuntimeError("call fit(knowledge) (or run) before reconstruct()")
        dev = next(self.decoder.parameters()).device
        return torch.cat(
            [
                self.decoder(activations[i : i + 256].float().to(dev)).cpu()
                for i in range(0, len(activations), 256)
            ]
        )

    def run(self, observation: Observation, knowledge: Knowledge) -> InversionResult:
        """Fit the decoder (unless already fitted) and reconstruct ``observation.activations``."""
        self.threat_model.check(observation, knowledge)
        assert observation.activations is not None
        if self.decoder is None:
            self.fit(knowledge)
        return InversionResult(
            reconstruction=self.reconstruct(observation.activations),
            info={
                "decoder_train_mse": self.train_loss[-1] if self.train_loss else None,
                "threat_model": self.threat_model.name,
                "defence_assumed": knowledge.defence,
            },
        )
