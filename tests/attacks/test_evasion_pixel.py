"""The one/few-pixel attack: the vectorised population against a per-candidate loop."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion import OnePixel
from medshield.attacks.evasion.pixel import _apply


def test_population_images_equal_a_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 4, generator=gen)
    owner = torch.tensor([0, 2, 2, 1])
    cand = torch.cat(
        [torch.rand(4, 2, 1, generator=gen) * 5, torch.rand(4, 2, 1, generator=gen) * 4,
         torch.rand(4, 2, 2, generator=gen)], dim=2,
    )  # fmt: skip
    fast = _apply(x, owner, cand)
    for i in range(4):
        ref = x[owner[i]].clone()
        for k in range(2):
            r, c = int(cand[i, k, 0]), int(cand[i, k, 1])
            ref[:, r, c] = cand[i, k, 2:]
        assert torch.equal(fast[i], ref)


def test_fitness_equals_a_loop(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:3], batch[1][:3]
    attack = OnePixel(model, chunk=5)  # several forward chunks
    gen = torch.Generator().manual_seed(1)
    pop = torch.cat(
        [torch.rand(3, 4, 1, 2, generator=gen) * 28, torch.rand(3, 4, 1, 1, generator=gen)], 3
    )
    fit, ok = attack._fitness(x, y, False, pop)
    for i in range(3):
        for j in range(4):
            img = x[i].clone()
            img[0, int(pop[i, j, 0, 0]), int(pop[i, j, 0, 1])] = pop[i, j, 0, 2]
            with torch.no_grad():
                z = model(img[None])[0]
            torch.testing.assert_close(fit[i, j], z.softmax(0)[y[i]], rtol=1e-5, atol=1e-6)
            assert bool(ok[i, j]) == bool(z.argmax() != y[i])


def test_one_and_three_pixel_attacks_fool_fragile_digits(
    model: nn.Module, fragile_batch: tuple[Tensor, Tensor]
) -> None:
    x, y = fragile_batch
    for pixels, least in ((1, 3), (3, 5)):
        adv = OnePixel(model, pixels=pixels, steps=20, popsize=60, seed=0)(x, y)
        with torch.no_grad():
            fooled = model(adv).argmax(1) != y
        assert fooled.sum() >= least, pixels
        assert ((adv != x).any(1).flatten(1).sum(1) <= pixels).all()


def test_evolution_lowers_the_true_class_probability(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    """Confident digits that few pixels cannot flip: the same initial population (same seed),
    evolved for 20 generations, ends fitter than it started, and never worse than no change."""
    x, y = batch[0][:6], batch[1][:6]

    def p_true(adv: Tensor) -> Tensor:
        with torch.no_grad():
            return model(adv).softmax(1).gather(1, y.view(-1, 1)).squeeze(1)

    start = p_true(OnePixel(model, pixels=3, steps=0, popsize=40)(x, y))
    end = p_true(OnePixel(model, pixels=3, steps=20, popsize=40)(x, y))
    assert (end <= start + 1e-6).all() and (end < start - 1e-4).sum() >= 3
    assert (start <= p_true(x) + 1e-6).all() or (end < p_true(x)).all()


def test_targeted_pixel_attack(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:8], batch[1][:8]
    with torch.no_grad():
        target = model(x).topk(2, dim=1).indices[:, 1]  # the runner-up class: reachable
    adv = OnePixel(model, pixels=5, steps=15, popsize=60)(x, y, target=target)
    with torch.no_grad():
        p_target = model(adv).softmax(1).gather(1, target.view(-1, 1))
        p_clean = model(x).softmax(1).gather(1, target.view(-1, 1))
    assert (p_target >= p_clean - 1e-6).all() and (p_target > p_clean).float().mean() > 0.5
