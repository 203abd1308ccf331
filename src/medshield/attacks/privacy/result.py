"""What a privacy attack returns: the reconstruction and how close it came to the secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from medshield.metrics import mse, psnr, ssim

__all__ = ["InversionResult", "reconstruction_metrics", "ssim_window"]


def ssim_window(h: int, w: int) -> int:
    """The SSIM window for ``h x w`` images: 11 (the standard) or the largest odd size that fits."""
    size = min(11, h, w)
    if size % 2 == 0:
        size -= 1
    return max(size, 1)


@torch.no_grad()
def reconstruction_metrics(
    reconstruction: Tensor,
    truth: Tensor,
    *,
    labels: Tensor | None = None,
    recovered_labels: Tensor | None = None,
    classifier: nn.Module | None = None,
) -> dict[str, float]:
    """MSE, PSNR, SSIM of ``reconstruction`` against ``truth`` (both ``(N, C, H, W)`` in [0, 1]).

    Optional: ``label_recovery`` (fraction of ``recovered_labels == labels``, iDLG) and
    ``classifier_accuracy`` (accuracy of ``classifier`` on the reconstructions against
    ``labels``: does the reconstruction still carry the class?).
    """
    rec = reconstruction.detach().float().clamp(0, 1).cpu()
    ref = truth.detach().float().cpu()
    if rec.shape != ref.shape:
        raise ValueError(
            f"reconstruction {tuple(rec.shape)} and truth {tuple(ref.shape)} differ in shape; "
            "map the reconstruction to image space first (e.g. PGSL's upsample)"
        )
    win = ssim_window(ref.shape[-2], ref.shape[-1])
    out = {
        "mse": float(mse(rec, ref)),
        "psnr": float(psnr(rec, ref, reduction="none").clamp(max=100.0).mean()),
        "ssim": float(ssim(rec, ref, win_size=win)),
    }
    if labels is not None and recovered_labels is not None:
        out["label_recovery"] = float((recovered_labels.cpu() == labels.cpu()).float().mean())
    if classifier is not None and labels is not None:
        dev = next(iter(classifier.parameters())).device
        was = classifier.training
        classifier.eval()
        pred = classifier(rec.to(dev)).argmax(1).cpu()
        classifier.train(was)
        out["classifier_accuracy"] = float((pred == labels.cpu()).float().mean())
    return out


@dataclass
class InversionResult:
    """A reconstruction and its quality.

    Attributes
    ----------
    reconstruction : ``(N, C, H, W)`` the adversary's estimate of the secret images
    labels : ``(N,)`` recovered labels (gradient attacks) or ``None``
    metrics : filled by :meth:`score` (``mse``, ``psnr``, ``ssim``, optionally
        ``label_recovery`` and ``classifier_accuracy``)
    info : attack-specific details (final matching loss, iterations ...)
    """

    reconstruction: Tensor
    labels: Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def score(
        self,
        truth: Tensor,
        *,
        labels: Tensor | None = None,
        classifier: nn.Module | None = None,
    ) -> dict[str, float]:
        """Compare with the true images (and labels); stores and returns :attr:`metrics`."""
        self.metrics = reconstruction_metrics(
            self.reconstruction,
            truth,
            labels=labels,
            recovered_labels=self.labels,
            classifier=classifier,
        )
        return self.metrics
