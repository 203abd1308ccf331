"""FGSM, BIM and PGD against a slow one-example loop and against torchattacks and ART."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from medshield.attacks.evasion import BIM, FGSM, PGD, PGDL2

torchattacks = pytest.importorskip("torchattacks")


# ---------------------------------------------------------------- slow references
def _grad_one(model: nn.Module, xi: Tensor, yi: Tensor) -> Tensor:
    xi = xi.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xi), yi)
    return torch.autograd.grad(loss, xi)[0]


def fgsm_loop(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, target: Tensor | None = None
) -> Tensor:
    out = []
    for i in range(len(x)):
        xi = x[i : i + 1]
        if target is None:
            step = eps * _grad_one(model, xi, y[i : i + 1]).sign()
        else:
            step = -eps * _grad_one(model, xi, target[i : i + 1]).sign()
        out.append((xi + step).clamp(0, 1))
    return torch.cat(out)


def pgd_loop(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, start: Tensor
) -> Tensor:
    """Madry's iteration, one example at a time: step, then project on the ball and the box."""
    out = []
    for i in range(len(x)):
        xi, adv = x[i : i + 1], start[i : i + 1]
        for _ in range(steps):
            adv = adv + alpha * _grad_one(model, adv, y[i : i + 1]).sign()
            adv = (xi + (adv - xi).clamp(-eps, eps)).clamp(0, 1)
        out.append(adv)
    return torch.cat(out)


# ---------------------------------------------------------------- against the loop (float64)
def test_fgsm_equals_one_example_loop(model64: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0].double(), batch[1]
    adv = FGSM(model64, eps=0.1)(x, y)
    assert adv.dtype == torch.float64
    assert torch.equal(adv, fgsm_loop(model64, x, y, 0.1))
    target = (y + 3) % 10
    assert torch.equal(
        FGSM(model64, eps=0.1)(x, y, target=target), fgsm_loop(model64, x, y, 0.1, target)
    )


def test_bim_and_pgd_equal_one_example_loop(
    model64: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch[0][:5].double(), batch[1][:5]
    bim = BIM(model64, eps=0.1, alpha=0.02, steps=4)(x, y)
    assert torch.equal(bim, pgd_loop(model64, x, y, 0.1, 0.02, 4, start=x))
    # PGD from its random start: recover the start with steps=0 (same seed, same draw)
    start = PGD(model64, eps=0.1, alpha=0.02, steps=0, seed=3)(x, y)
    assert not torch.equal(start, x) and (start - x).abs().max() <= 0.1 + 1e-12
    pgd = PGD(model64, eps=0.1, alpha=0.02, steps=4, seed=3)(x, y)
    assert torch.equal(pgd, pgd_loop(model64, x, y, 0.1, 0.02, 4, start=start))


# ---------------------------------------------------------------- against torchattacks and ART
def test_fgsm_identical_to_torchattacks_and_art(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    x, y = batch
    ours = FGSM(model, eps=0.1)(x, y)
    theirs = torchattacks.FGSM(model, eps=0.1)(x, y)
    assert torch.equal(ours, theirs)
    clf = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    art_adv = FastGradientMethod(clf, eps=0.1, batch_size=len(x)).generate(x.numpy(), y.numpy())
    assert np.array_equal(ours.numpy(), art_adv)
    # the attack does something: some of these correctly classified digits are wrong now
    with torch.no_grad():
        assert (model(ours).argmax(1) != y).sum() >= 2


def test_targeted_fgsm_identical_to_torchattacks(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch
    target = (y + 1) % 10
    peer = torchattacks.FGSM(model, eps=0.1)
    peer.set_mode_targeted_by_label(quiet=True)
    assert torch.equal(FGSM(model, eps=0.1)(x, y, target=target), peer(x, target))


def test_pgd_identical_to_torchattacks_from_the_same_start(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch
    ours = PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=False)(x, y)
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=False)(x, y)
    assert torch.equal(ours, theirs)
    target = (y + 2) % 10
    peer = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=False)
    peer.set_mode_targeted_by_label(quiet=True)
    ours_t = PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=False)(x, y, target=target)
    assert torch.equal(ours_t, peer(x, target))


def test_bim_matches_torchattacks(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    ours = BIM(model, eps=0.1, alpha=0.02, steps=6)(x, y)
    theirs = torchattacks.BIM(model, eps=0.1, alpha=0.02, steps=6)(x, y)
    # torchattacks clips by selecting x - eps / x + eps instead of x + clamp(delta): the same
    # projection, up to one rounding of the last bit
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_pgd_l2_matches_torchattacks(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    ours = PGDL2(model, eps=1.5, alpha=0.3, steps=6, random_start=False)(x, y)
    theirs = torchattacks.PGDL2(model, eps=1.5, alpha=0.3, steps=6, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert (ours - x).flatten(1).norm(dim=1).max() <= 1.5 * (1 + 1e-5)


def test_pgd_is_stronger_than_fgsm(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    with torch.no_grad():
        fgsm_acc = (model(FGSM(model, eps=0.15)(x, y)).argmax(1) == y).float().mean()
        pgd_acc = (
            (model(PGD(model, eps=0.15, alpha=0.03, steps=10)(x, y)).argmax(1) == y).float().mean()
        )
    assert pgd_acc <= fgsm_acc and pgd_acc < 0.5
