"""PGSL's device-side pixel attack and its saliency map (section IV-A, eq. 1).

The device attacks its own images on purpose before anything leaves it: an untargeted JSMA
(the PGSL variant of :class:`~medshield.attacks.evasion.JSMA`, which inverts the saliency
conditions around the true class) changes a few pixels, and the saliency map of eq. 1 is
stacked with the down-sampled attacked image (:func:`~medshield.defenses.pgsl.resample.downsample`).

Which classifier the device differentiates is not said in the paper (the device holds only the
first layers of the split network). We use a *surrogate*: any classifier of raw images the
device holds, e.g. a small model trained on its own data (:class:`PGSLTransform` takes it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medshield.attacks.evasion import JSMA
from medshield.defenses.base import DEFENSES
from medshield.defenses.pgsl.resample import downsample
from medshield.models.base import eval_mode

__all__ = ["saliency_map", "PGSLTransform"]


def saliency_map(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    use_logits: bool = True,
    inverted: bool = False,
    normalize: bool = True,
) -> Tensor:
    """The saliency map of eq. 1 (or the inverted map ``Map'``), ``(N, 1, H, W)``.

    With :math:`\\alpha_i = \\partial f_y / \\partial x_i` and
    :math:`\\beta_i = \\sum_{y' \\ne y} \\partial f_{y'} / \\partial x_i`,
    ``Map_i = -alpha_i * beta_i`` where ``alpha_i > 0`` and ``beta_i < 0`` (eq. 1) and 0
    elsewhere; ``inverted=True`` uses ``alpha_i < 0``, ``beta_i > 0`` (the untargeted map
    ``Map'``). Channels are summed; with ``normalize`` each map is divided by its maximum (so
    it lies in ``[0, 1]``). ``f`` is the logits (``use_logits``) or the softmax (whose
    derivatives make ``beta = -alpha`` exactly; see :class:`~medshield.attacks.evasion.JSMA`).
    The model's training flags are left as they were; it is evaluated in eval mode.
    """
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        out = model(xg)
        out = out if use_logits else out.softmax(1)
        (d_all,) = torch.autograd.grad(out.sum(), xg, retain_graph=True)
        (d_cls,) = torch.autograd.grad(out.gather(1, y.view(-1, 1).long()).sum(), xg)
    alpha, beta = d_cls, d_all - d_cls
    cond = (alpha < 0) & (beta > 0) if inverted else (alpha > 0) & (beta < 0)
    smap = torch.where(cond, -alpha * beta, torch.zeros_like(alpha)).sum(1, keepdim=True)
    if normalize:
        peak = smap.flatten(1).amax(1).view(-1, 1, 1, 1)
        smap = torch.where(peak > 0, smap / peak.clamp_min(1e-30), smap)
    return smap.detach()


def fit_surrogate(x: Tensor, y: Tensor, *, num_classes: int, epochs: int, batch_size: int = 64,
                  lr: float = 2e-3, seed: int = 0,
                  device: torch.device | str | None = None) -> nn.Module:
    """The device's own classifier of its raw images ``(N, C, H, W)`` (LeNet-5, Adam), which
    PGSL's pixel attack and saliency map differentiate; returned in eval mode.

    Trained on the device, on the device's data only: nothing of it leaves the device.
    """
    from medshield.models import LeNet5

    c, h, _ = x.shape[1:]
    model = LeNet5(num_classes=num_classes, in_channels=c, input_size=h, seed=seed)
    model = model.to(device) if device is not None else model
    dev = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = nn.functional.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@DEFENSES.register("pgsl", aliases=("proximal-gradient-split-learning",))
class PGSLTransform:
    """The device side of PGSL: pixel attack, saliency map, reversible down-sampling.

    ``transform(x, y) -> (N, 4C + 1, H/2, W/2)``; usable as a
    :data:`~medshield.split.device.Transform` of :class:`~medshield.split.SplitDevice`.

    Parameters
    ----------
    surrogate
        The device's classifier of raw images used for the attack and the map.
    max_pixels
        Most pixels (values) the JSMA may change per image (one- to few-pixel attack).
    theta
        Change per selected value (``1.0`` saturates it, as in the paper).
    pairs
        Search pairs of values (Papernot's algorithm) instead of single values (eq. 1).
    use_logits
        Differentiate logits (default) or softmax probabilities.

    Shapes: ``x`` ``(N, C, H, W)`` in ``[0, 1]`` with even ``H, W``; ``y`` ``(N,)`` or ``None``
    (then the surrogate's predictions stand in for the labels).
    """

    def __init__(
        self,
        surrogate: nn.Module,
        *,
        max_pixels: int = 10,
        theta: float = 1.0,
        pairs: bool = False,
        use_logits: bool = True,
    ) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.surrogate = surrogate
        self.max_pixels = max_pixels
        self.theta = theta
        self.pairs = pairs
        self.use_logits = use_logits

    def __repr__(self) -> str:
        return (f"PGSLTransform(max_pixels={self.max_pixels}, theta={self.theta}, "
                f"pairs={self.pairs}, use_logits={self.use_logits})")

    def labels(self, x: Tensor, y: Tensor | None) -> Tensor:
        if y is not None:
            return y
        with torch.no_grad():
            return self.surrogate(x).argmax(1)  # type: ignore[no-any-return]

    def attack(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The attacked images ``(N, C, H, W)`` and the saliency maps ``(N, 1, H, W)``."""
        y = self.labels(x, y)
        d = x[0].numel()
        gamma = min(1.0, (self.max_pixels + 1e-9) / d)
        jsma = JSMA(self.surrogate, theta=self.theta, gamma=gamma, pairs=self.pairs,
                    use_logits=self.use_logits)
        x_adv = jsma(x, y)
        smap = saliency_map(self.surrogate, x, y, use_logits=self.use_logits)
        return x_adv, smap

    def __call__(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x_adv, smap = self.attack(x, y)
        return downsample(x_adv, smap)
