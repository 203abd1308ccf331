"""The robustness experiment's measurements: fast paths against slow references, masking flags."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from medshield.attacks import FGSM
from medshield.experiments.robustness_eval import (
    AttackSuite,
    MarginPGD,
    accuracy,
    cw_l2_summary,
    fgsm_curve,
    masking_check,
    noise_curve,
    pgd_curve,
    worst_case,
)

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def task() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.rand(40, 3, 2, 2)
    x[:5, :, 0, 0] = 1.0  # pixels at the box edges must behave like FGSM's clipping
    x[5:10, :, 1, 1] = 0.0
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 3  # some examples misclassified from the start
    return model, x, y


def test_fgsm_curve_equals_fgsm_at_every_eps(task) -> None:
    model, x, y = task
    eps = (0.001, 0.01, 0.1, 0.3)
    got = fgsm_curve(model, x, y, eps, CPU, batch_size=16)
    want = [accuracy(model, FGSM(model, eps=e)(x, y), y, CPU) for e in eps]
    assert got == want
    # and the shared direction reproduces FGSM's images bit for bit
    x_1 = FGSM(model, eps=1.0)(x, y)
    for e in eps:
        assert torch.equal((x + e * (x_1 - x).sign()).clamp(0, 1), FGSM(model, eps=e)(x, y))


def test_margin_pgd_ascends_the_cw_margin(task) -> None:
    model, x, y = task
    atk = MarginPGD(model, eps=0.1, alpha=0.02, steps=5, seed=0)
    g = atk.loss_grad(x, y, None)
    xr = x.clone().requires_grad_(True)
    z = model(xr)
    margin = torch.stack([
        max(z[i, j] for j in range(3) if j != int(y[i])) - z[i, int(y[i])] for i in range(len(y))
    ])
    (ref,) = torch.autograd.grad(margin.sum(), xr)
    torch.testing.assert_close(g, ref)
    x_adv = atk(x, y)
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    with torch.no_grad():
        def m(inp: torch.Tensor) -> torch.Tensor:
            zz = model(inp)
            return zz.scatter(1, y.view(-1, 1), -1e9).amax(1) - zz.gather(1, y.view(-1, 1)).squeeze(1)
        assert float(m(x_adv).mean()) > float(m(x).mean())
    with pytest.raises(ValueError, match="untargeted"):
        atk(x, y, target=y)


def test_pgd_and_noise_curves_and_cw_summary(task) -> None:
    model, x, y = task
    clean = accuracy(model, x, y, CPU)
    pgd = pgd_curve(model, x, y, (0.0, 0.05, 0.3), 5, CPU, seed=0)
    assert pgd[0] == pytest.approx(clean) and pgd[2] <= pgd[1] <= clean
    assert pgd_curve(model, x, y, (0.3,), 5, CPU, seed=0, margin=True)[0] <= clean
    noise = noise_curve(model, x, y, (0.0, 0.3), CPU, seed=0)
    assert noise[0] == pytest.approx(clean)
    assert noise == noise_curve(model, x, y, (0.0, 0.3), CPU, seed=0)  # seeded
    cw = cw_l2_summary(model, x, y, AttackSuite(cw_steps=30, cw_search=2, cw_lr=0.05,
                                                l2_radii=(0.0, 10.0)), CPU)
    assert 0.0 <= cw["success"] <= 1.0
    assert cw["robust@0"] == pytest.approx(clean)
    assert cw["robust@10"] == pytest.approx(clean * (1 - cw["success"]))


def _ev(fgsm: list[float], pgd: list[float], noise: list[float], margin: list[float],
        clean: float = 0.9, classes: list[int] | None = None) -> dict:
    return {"beyond": {"clean": clean, "fgsm": fgsm, "pgd": pgd, "noise": noise,
                       "cw_linf": margin}, "predicted_classes": classes or [50, 50]}


EPS = (0.005, 0.03)


def test_masking_check_flags_each_sign_with_its_reason() -> None:
    honest = _ev([0.6, 0.2], [0.55, 0.1], [0.88, 0.85], [0.55, 0.1])
    assert masking_check(honest, EPS) == (False, [], [])
    masked, reasons, _ = masking_check(_ev([0.8, 0.79], [0.4, 0.1], [0.88, 0.85], [0.4, 0.1]), EPS)
    assert masked and any("resists FGSM but not PGD" in r for r in reasons)
    assert any("does not fall as eps grows" in r for r in reasons)
    masked, reasons, _ = masking_check(_ev([0.87, 0.85], [0.7, 0.5], [0.88, 0.85], [0.7, 0.5]), EPS)
    assert any("no stronger than random noise" in r for r in reasons)
    masked, reasons, _ = masking_check(_ev([0.7, 0.6], [0.7, 0.6], [0.88, 0.85], [0.3, 0.1]), EPS)
    assert masked and any("margin-PGD" in r for r in reasons)
    masked, reasons, _ = masking_check(_ev([0.85, 0.84], [0.85, 0.84], [0.88, 0.85],
                                           [0.85, 0.84]), EPS)
    assert masked and any("PGD accuracy does not fall" in r for r in reasons)
    _, _, caveats = masking_check(_ev([0.7] * 2, [0.7] * 2, [0.7] * 2, [0.7] * 2, clean=0.7,
                                      classes=[0, 100]), EPS)
    assert caveats and "single class" in caveats[0]


def test_worst_case_is_the_per_example_envelope() -> None:
    g = torch.Generator().manual_seed(0)
    eps = (0.03, 0.005, 0.01)  # deliberately unsorted
    clean = torch.rand(50, generator=g) > 0.2
    masks = [[torch.rand(50, generator=g) > 0.4 for _ in eps] for _ in range(3)]
    got = worst_case(clean, eps, *masks)
    for k, e in enumerate(eps):
        want = sum(
            bool(clean[i]) and all(bool(m[j][i]) for m in masks for j in range(3) if eps[j] <= e)
            for i in range(50)
        ) / 50
        assert got[k] == pytest.approx(want)
    assert got[1] >= got[2] >= got[0]  # never rises with eps
