"""One- and few-pixel attack by differential evolution (Su, Vargas and Sakurai, IEEE TEVC 2019)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.registry import ATTACKS

__all__ = ["OnePixel"]


@ATTACKS.register("pixel", aliases=("one-pixel", "onepixel", "few-pixel"))
class OnePixel(EvasionAttack):
    r"""Change ``pixels`` pixels, found by differential evolution on the output probabilities (L0).

    Su et al., "One pixel attack for fooling deep neural networks", IEEE Trans. Evol. Comput.
    23(5), 2019, section III. A candidate is ``pixels`` tuples ``(row, col, v_1 .. v_C)``; the
    population of ``popsize`` candidates per image starts with uniform coordinates and values
    drawn from :math:`N(\mu, \sigma)` with :math:`\mu` the middle of the box and
    :math:`\sigma` half its width (the paper's ``N(128, 127)`` on 0-255), clipped. Each
    generation builds, for every member, the DE/rand/1 trial (no crossover, as in the paper)

    .. math:: u = p_{r_1} + F\,(p_{r_2} - p_{r_3})

    from three other members (the four indices are distinct; they come from one random
    permutation of the population per image and generation), clips it to the valid range and
    keeps it if its fitness is at least as good. Fitness: the probability of the true class
    (untargeted, minimised) or of ``target`` (targeted, maximised). An image stops evolving as
    soon as one of its candidates succeeds (misclassified, or classified as ``target``); the
    returned image carries the fittest successful candidate, or the fittest candidate if none
    succeeded. Coordinates are floored to pixel indices when a candidate is applied.

    The batch is evolved together: every generation evaluates the trials of all images still
    evolving in forward passes of at most ``chunk`` images.

    Threat model: black box at test time (only the output probabilities are used; no
    gradients). Norm: L0 in pixels (at most ``pixels`` spatial positions change, in all
    channels).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)``; inputs must be images ``(N, C, H, W)``.
    pixels
        How many pixels may change.
    steps
        Generations (the paper: 100).
    popsize
        Population per image (the paper: 400).
    f
        Mutation scale ``F`` (the paper: 0.5).
    chunk
        Most images per forward pass when evaluating a population.
    bounds, seed
        See :class:`EvasionAttack`; ``seed`` drives the initial population and the choice of
        parents.

    Shapes: ``x`` ``(N, C, H, W)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, C, H, W)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> attack = OnePixel(model, pixels=1, steps=5, popsize=20, seed=0)
    >>> x_adv = attack(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "l0"
    uses_randomness = True

    def __init__(
        self,
        model: nn.Module,
        *,
        pixels: int = 1,
        steps: int = 100,
        popsize: int = 400,
        f: float = 0.5,
        chunk: int = 4096,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if pixels < 1 or steps < 0 or popsize < 4 or chunk < 1:
            raise ValueError(
                f"need pixels >= 1, steps >= 0, popsize >= 4 (DE/rand/1 uses four distinct "
                f"members), chunk >= 1; got {pixels}, {steps}, {popsize}, {chunk}"
            )
        super().__init__(
            model,
            bounds=bounds,
            seed=seed,
            pixels=int(pixels),
            steps=int(steps),
            popsize=int(popsize),
            f=f,
            chunk=int(chunk),
        )

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"the pixel attack needs images (N, C, H, W); got shape {tuple(x.shape)}: add "
                "a channel dimension (x.unsqueeze(1)) for grayscale images"
            )
        n, c, h, w = x.shape
        low, high = self.bounds
        pop_n, gen, dev = self.popsize, self.generator(), x.device
        cls = target if target is not None else y

        # candidates: (n, P, pixels, 2 + C) = row, col, values
        upper = torch.tensor([h, w] + [high] * c, dtype=x.dtype)
        lower = torch.tensor([0.0, 0.0] + [low] * c, dtype=x.dtype)
        shape = (n, pop_n, self.pixels)
        coords = torch.rand(shape + (2,), generator=gen, dtype=x.dtype) * upper[:2]
        values = (low + high) / 2 + torch.randn(shape + (c,), generator=gen, dtype=x.dtype) * (
            (high - low) / 2
        )
        lower, upper = lower.to(dev), upper.to(dev)
        pop = _clip(torch.cat([coords, values], dim=-1).to(dev), lower, upper)
        fit, ok = self._fitness(x, cls, target is not None, pop)
        found = torch.full((n,), torch.inf, dtype=x.dtype, device=dev)  # best successful fitness
        found_cand = pop[:, 0].clone()
        _record(found, found_cand, torch.arange(n, device=dev), pop, fit, ok)

        for _ in range(self.steps):
            rows = found.isinf().nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            m = rows.numel()
            perm = torch.rand(m, pop_n, generator=gen).argsort(1).to(dev)
            r1, r2, r3 = (perm.roll(-s, dims=1) for s in (1, 2, 3))
            p = pop[rows]
            mutant = _take(p, r1) + self.f * (_take(p, r2) - _take(p, r3))
            trial = torch.empty_like(p).scatter_(1, _expand(perm, p), mutant)  # perm[j] <- j
            trial = _clip(trial, lower, upper)
            t_fit, t_ok = self._fitness(x[rows], cls[rows], target is not None, trial)
            _record(found, found_cand, rows, trial, t_fit, t_ok)
            better = t_fit <= fit[rows]
            pop[rows] = torch.where(better.view(m, pop_n, 1, 1), trial, p)
            fit[rows] = torch.where(better, t_fit, fit[rows])

        fittest = pop[torch.arange(n, device=dev), fit.argmin(1)]
        chosen = torch.where(found.isinf().view(n, 1, 1), fittest, found_cand)
        return _apply(x, torch.arange(n, device=dev), chosen)

    @torch.no_grad()
    def _fitness(
        self, x: Tensor, cls: Tensor, targeted: bool, pop: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Fitness ``(m, P)`` (lower is better) and success ``(m, P)`` of every candidate."""
        m, pop_n = pop.shape[:2]
        flat = pop.reshape(m * pop_n, *pop.shape[2:])
        owner = torch.arange(m, device=x.device).repeat_interleave(pop_n)
        fits, oks = [], []
        for start in range(0, m * pop_n, self.chunk):
            sl = slice(start, start + self.chunk)
            images = _apply(x, owner[sl], flat[sl])
            logits = self.logits(images)
            c = cls[owner[sl]]
            prob = logits.softmax(1).gather(1, c.view(-1, 1)).squeeze(1)
            pred = logits.argmax(1)
            fits.append(-prob if targeted else prob)
            oks.append(pred == c if targeted else pred != c)
        return torch.cat(fits).view(m, pop_n), torch.cat(oks).view(m, pop_n)


def _clip(pop: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Coordinates into ``[0, H]``/``[0, W]`` (floored and capped when applied), values into the box."""
    return torch.minimum(torch.maximum(pop, lower), upper)


def _record(
    found: Tensor, found_cand: Tensor, rows: Tensor, pop: Tensor, fit: Tensor, ok: Tensor
) -> None:
    """Keep, per image, the fittest successful candidate seen so far (in place)."""
    masked = torch.where(ok, fit, torch.full_like(fit, torch.inf))
    best_fit, best = masked.min(1)
    improve = best_fit < found[rows]
    if bool(improve.any()):
        r = rows[improve]
        found[r] = best_fit[improve]
        found_cand[r] = pop[improve.nonzero().squeeze(1), best[improve]]


def _take(pop: Tensor, index: Tensor) -> Tensor:
    """``pop[i, index[i, j]]`` for every image ``i`` and position ``j``."""
    return pop.gather(1, _expand(index, pop))


def _expand(index: Tensor, pop: Tensor) -> Tensor:
    return index.view(*index.shape, 1, 1).expand(-1, -1, *pop.shape[2:])


def _apply(x: Tensor, owner: Tensor, cand: Tensor) -> Tensor:
    """Images ``x[owner]`` with the candidates ``cand`` ``(B, pixels, 2 + C)`` written in."""
    b = owner.numel()
    _, c, h, w = x.shape
    images = x[owner].reshape(b, c, h * w).clone()
    rows = cand[..., 0].long().clamp_(0, h - 1)
    cols = cand[..., 1].long().clamp_(0, w - 1)
    where = (rows * w + cols).unsqueeze(1).expand(b, c, cand.shape[1])  # (B, C, pixels)
    images.scatter_(2, where, cand[..., 2:].transpose(1, 2).to(x.dtype))
    return images.view(b, c, h, w)
