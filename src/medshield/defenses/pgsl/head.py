"""PGSL's server side: proximal-gradient recovery, three streams, decision fusion (IV-C..E).

The server receives the device's cut-layer activations :math:`A` (of the attacked,
down-sampled image) and

1. recovers them with robust PCA by proximal gradient (:func:`~medshield.defenses.pgsl.rpca.rpca`,
   relaxation :math:`\\mu`, relative to each matrix's scale, so the same 0.55 works for
   activations of any magnitude): :math:`A = L + S`, :math:`L` low rank (recovered),
   :math:`S` sparse (the pixel attack's trace);
2. runs three streams, each a copy of the server half of the network: on :math:`A` (the
   attacked data, stream *a*), on the conv-sum fusion of eqs. 7-8 of :math:`A` and :math:`L`
   (stream *f*), and on :math:`L` (stream *r*);
3. trains all three streams (the sum of their cross-entropies) but sends the device only the
   gradient of the fused stream's loss (section IV: "only these gradients are sent back"),
   computed in the same backward pass (the fused stream is the only differentiable path
   from the activations);
4. predicts with the adaptive weighted average of the streams' softmax scores (eqs. 9-11,
   initial weights 0.5/0.3/0.2 for r/f/a).

Reading notes (the paper's figure 2 is missing from the text):

* the recovery is applied per sample to the activation tensor read as a ``C x (h w)``
  matrix (``layout="channels"``: feature maps of one image are strongly correlated, so this
  matrix is nearly low rank, while a few attacked pixels disturb a few positions), or per
  feature map as an ``h x w`` matrix (``layout="maps"``, like the image-level recovery of the
  paper's figure 3, but ``C`` times more SVDs); the recovery is not differentiated through;
* the up-sampling layer of section IV-B belongs to image space: the streams work on the
  activations at the cut resolution; :func:`~medshield.defenses.pgsl.resample.upsample` maps
  down-sampled tensors (and reconstructions of them) back to images;
* ``stream_width`` lets the three streams be narrower than the device half (a 1x1
  projection first) to bound the server's cost; ``None`` keeps the paper's width.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.defenses.pgsl.fusion import PAPER_WEIGHTS, ConvSumFusion, fuse_scores
from medshield.defenses.pgsl.resample import pgsl_channels
from medshield.defenses.pgsl.rpca import SVD, rpca
from medshield.models import cut_model
from medshield.models.pgsl_cnn import PGSLCNN
from medshield.split.protocol import HeadOutput

__all__ = ["PGSLHead", "pgsl_network", "STREAMS"]

STREAMS = ("a", "f", "r")
Layout = Literal["channels", "maps"]


class PGSLHead(nn.Module):
    """The PGSL server head; a :class:`~medshield.split.protocol.ServerHead`.

    Parameters
    ----------
    streams
        Three modules ``(N, C, h, w) -> (N, K)`` for the attacked, fused and recovered streams
        (independent parameters).
    channels
        ``C``, channels of the cut-layer activations.
    mu, lam, rpca_iters, svd
        Robust-PCA settings (:func:`~medshield.defenses.pgsl.rpca.rpca`, method ``"apg"``).
    layout
        How an activation tensor becomes matrices for the recovery (see the module notes).
    weights
        Initial fusion weights :math:`(W_\\gamma, W_\\rho, W_\\beta)` (recovered, fused, attacked).
    per
        ``"sample"`` or ``"batch"`` reading of :math:`S^{max}` (see
        :func:`~medshield.defenses.pgsl.fusion.adaptive_weights`).
    """

    def __init__(
        self,
        streams: tuple[nn.Module, nn.Module, nn.Module],
        channels: int,
        *,
        mu: float = 0.55,
        lam: float | None = None,
        rpca_iters: int = 10,
        svd: SVD = "gram",
        layout: Layout = "channels",
        weights: tuple[float, float, float] = PAPER_WEIGHTS,
        per: Literal["sample", "batch"] = "sample",
    ) -> None:
        super().__init__()
        if len(streams) != 3:
            raise ValueError("PGSL needs exactly three streams: attacked, fused, recovered")
        if layout not in ("channels", "maps"):
            raise ValueError(f"layout must be 'channels' or 'maps', got {layout!r}")
        self.streams = nn.ModuleDict(dict(zip(STREAMS, streams, strict=True)))
        self.fusion = ConvSumFusion(channels)
        self.mu = mu
        self.lam = lam
        self.rpca_iters = rpca_iters
        self.svd: SVD = svd
        self.layout: Layout = layout
        self.weights = weights
        self.per: Literal["sample", "batch"] = per

    def matrices(self, act: Tensor) -> Tensor:
        """The activations ``(N, C, h, w)`` as the batch of matrices the recovery works on."""
        n, c, h, w = act.shape
        return act.detach().reshape(n, c, h * w) if self.layout == "channels" else \
            act.detach().reshape(n * c, h, w)

    @torch.no_grad()
    def recover(self, act: Tensor) -> Tensor:
        """The low-rank part of the activations ``(N, C, h, w)`` (proximal-gradient recovery).

        ``rpca_iters`` APG iterations from zero, a fixed budget: an early iterate, not the
        robust-PCA solution (``medshield bench split`` reports how much of the objective's
        decrease it reaches, :func:`~medshield.defenses.pgsl.rpca.apg_progress`).
        """
        out = rpca(self.matrices(act), lam=self.lam, mu=self.mu, method="apg",
                   max_iter=self.rpca_iters, svd=self.svd)
        return out.low_rank.reshape(act.shape)

    def stream_logits(self, act: Tensor, *, only_fused_path: bool = False) -> dict[str, Tensor]:
        """Logits ``(N, K)`` of the three streams, keyed ``"a"``, ``"f"``, ``"r"``.

        ``only_fused_path=True`` feeds stream *a* a detached copy of ``act``, so that the
        fused stream is the only path from the activations to the logits (the recovery is
        never differentiated through): the gradient of any sum of the three losses with
        respect to ``act`` is then the fused stream's, and the parameters' gradients are
        unchanged.
        """
        rec = self.recover(act)
        return {
            "a": self.streams["a"](act.detach() if only_fused_path else act),
            "f": self.streams["f"](self.fusion(act, rec)),
            "r": self.streams["r"](rec),
        }

    def fused(self, logits: dict[str, Tensor]) -> Tensor:
        """The decision-level fusion ``S_awa`` ``(N, K)`` of the streams' softmax scores."""
        s = {k: v.softmax(1) for k, v in logits.items()}
        return fuse_scores(s["r"], s["f"], s["a"], self.weights, per=self.per)

    def split_losses(self, act: Tensor, y: Tensor) -> HeadOutput:
        """The three streams' summed loss; the device gets the fused stream's gradient only.

        Stream *a* reads detached activations (``only_fused_path``), so ``d total / d act``
        *is* the fused stream's gradient and ``to_device`` is ``total``: the server needs one
        backward pass, not a second one through the fused stream for the device's gradient
        (tested against that two-pass reference).
        """
        logits = self.stream_logits(act, only_fused_path=True)
        losses = {k: F.cross_entropy(v, y) for k, v in logits.items()}
        with torch.no_grad():
            fused = self.fused({k: v.detach() for k, v in logits.items()})
        total = losses["a"] + losses["f"] + losses["r"]
        return HeadOutput(total=total, to_device=total, logits=fused)

    def predict(self, act: Tensor) -> Tensor:
        return self.fused(self.stream_logits(act))

    def forward(self, act: Tensor) -> Tensor:
        return self.predict(act)


def pgsl_network(
    *,
    num_classes: int,
    image_channels: int = 1,
    image_size: int = 28,
    width: int = 64,
    hidden: int = 128,
    dropout: float = 0.25,
    stream_width: int | None = None,
    seed: int = 0,
    **head_options: object,
) -> tuple[nn.Module, PGSLHead]:
    """PGSL's split network: the device half (conv1-conv2 of :class:`~medshield.models.PGSLCNN`
    on the ``(4C+1) x H/2 x W/2`` tensor) and a :class:`PGSLHead` whose streams are copies of
    the server half (seeded ``seed + 1, + 2, + 3``).

    Returns ``(device_half, head)``; ``head_options`` go to :class:`PGSLHead`.
    """
    if image_size % 2:
        raise ValueError(f"image_size must be even (reversible down-sampling), got {image_size}")
    opts = dict(num_classes=num_classes, in_channels=pgsl_channels(image_channels),
                input_size=image_size // 2, hidden=hidden, dropout=dropout)
    device_half, _ = cut_model(PGSLCNN(width=width, seed=seed, **opts), "conv2")
    sw = width if stream_width is None else stream_width
    streams = []
    for k in range(1, 4):
        _, server_half = cut_model(PGSLCNN(width=sw, seed=seed + k, **opts), "conv2")
        if sw != width:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 10 + k)
                proj = nn.Conv2d(width, sw, 1)
            server_half = nn.Sequential(proj, copy.deepcopy(server_half))
        streams.append(server_half)
    with torch.random.fork_rng(devices=[]):  # the fusion filters, seeded too
        torch.manual_seed(seed + 20)
        head = PGSLHead((streams[0], streams[1], streams[2]), width, **head_options)  # type: ignore[arg-type]
    return device_half, head
