"""Properties every registered evasion attack must have (one parametrised suite)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
from torch import Tensor

import medshield
from medshield.attacks import ATTACKS, EvasionAttack

# small budgets: the suite checks properties, not strength
SETTINGS: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.1},
    "bim": {"eps": 0.1, "alpha": 0.03, "steps": 3},
    "pgd": {"eps": 0.1, "alpha": 0.03, "steps": 3},
    "pgd-l2": {"eps": 1.0, "alpha": 0.4, "steps": 3},
    "cw": {"c": 3.0, "steps": 8, "lr": 0.1, "binary_search_steps": 2},
    "deepfool": {"steps": 5},
    "jsma": {"gamma": 0.02},
    "pixel": {"pixels": 2, "steps": 3, "popsize": 12},
}
EVASION = [
    name
    for name, cls in ATTACKS.items()
    if isinstance(cls, type) and issubclass(cls, EvasionAttack)
]


def test_every_evasion_attack_is_covered() -> None:
    assert sorted(EVASION) == sorted(SETTINGS)


def _make(name: str, model: nn.Module, **extra: Any) -> EvasionAttack:
    return medshield.create("attack", name, model=model, **{**SETTINGS[name], **extra})


def _budget_ok(attack: EvasionAttack, x: Tensor, adv: Tensor) -> bool:
    delta = (adv - x).flatten(1)
    eps = getattr(attack, "eps", None)
    if attack.norm == "linf" and eps is not None:
        return bool(delta.abs().max() <= eps + 1e-6)
    if attack.norm == "l2" and eps is not None:
        return bool(delta.norm(dim=1).max() <= eps * (1 + 1e-5))
    if isinstance(attack, medshield.attacks.JSMA):
        return bool((delta != 0).sum(1).max() <= attack.max_changed(delta.shape[1]))
    if isinstance(attack, medshield.attacks.OnePixel):
        moved = (adv != x).any(1).flatten(1).sum(1)  # pixel positions, over the channels
        return bool(moved.max() <= attack.pixels)
    return bool(torch.isfinite(delta).all())  # C&W, DeepFool: minimum-norm, no fixed budget


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_attack_properties(name: str, model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:6], batch[1][:6]
    attack = _make(name, model)
    for key, value in SETTINGS[name].items():
        assert f"{key}={value!r}" in repr(attack)

    model.train()  # the attack must run in eval mode (dropout off) and restore this
    rng = torch.get_rng_state()
    x_before = x.clone()
    with torch.no_grad():  # the attack enables gradients itself
        adv = attack(x, y)
    assert torch.equal(x, x_before), "the attack wrote into its input"
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG was used"
    model.eval()
    assert torch.equal(adv, attack(x, y)), "not deterministic for a fixed seed"

    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    assert _budget_ok(attack, x, adv)
    assert not torch.equal(adv, x), "the attack changed nothing"
    if attack.uses_randomness:
        other = _make(name, model, seed=1)(x, y)
        assert not torch.equal(other, adv), "the seed has no effect"

    # float64 in, float64 out
    adv64 = _make(name, model.double())(x.double(), y)
    model.float()
    assert adv64.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_binary_and_single_logit_models(
    name: str, binary_model: nn.Module, single_logit_model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch[0][:6], (batch[1][:6] >= 5).long()
    strong = {
        "fgsm": {"eps": 0.3},
        "bim": {"eps": 0.3},
        "pgd": {"eps": 0.3},
        "pgd-l2": {"eps": 4.0},
    }
    for m in (binary_model, single_logit_model):
        adv = _make(name, m, **strong.get(name, {}))(x, y)
        assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
        assert not torch.equal(adv, x)
    # the single logit z = l1 - l0 reads as [-z/2, z/2]: the softmax (and the cross-entropy)
    # of the two-logit model, so the loss-gradient attacks give the same images
    if name in ("fgsm", "bim", "pgd"):
        two = _make(name, binary_model)(x, y)
        one = _make(name, single_logit_model)(x, y)
        assert (two != one).float().mean() < 0.01


def test_targeted_attacks_reach_the_target(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:6], batch[1][:6]
    target = (y + 1) % 10
    for name, opts in {
        "pgd": {"eps": 0.3, "alpha": 0.05, "steps": 20},
        "cw": {"c": 10.0, "steps": 40, "lr": 0.1, "binary_search_steps": 1},
        "jsma": {"gamma": 0.15, "use_logits": False},
    }.items():
        adv = medshield.create("attack", name, model=model, **opts)(x, y, target=target)
        with torch.no_grad():
            hit = model(adv).argmax(1) == target
        assert hit.float().mean() >= 0.5, name


def test_create_by_name_and_errors(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:2], batch[1][:2]
    attack = medshield.create("attack", "pgd", model=model, eps=0.03)
    assert isinstance(attack, medshield.attacks.PGD) and attack.eps == 0.03
    assert isinstance(medshield.create("attack", "PGD_L2", model=model), medshield.attacks.PGDL2)
    with pytest.raises(ValueError, match="outside the box"):
        attack(x * 3 - 1, y)
    with pytest.raises(ValueError, match="untargeted only"):
        medshield.create("attack", "deepfool", model=model)(x, y, target=y)
    with pytest.raises(ValueError, match="one class index per example"):
        attack(x, y[:1])
    with pytest.raises(ValueError, match="low < high"):
        medshield.create("attack", "fgsm", model=model, bounds=(1.0, 0.0))
    # another box: inputs in [-1, 1], the model normalises inside
    shifted = nn.Sequential(_Affine(0.5, 0.5), model).eval()
    adv = medshield.create("attack", "pgd", model=shifted, eps=0.2, bounds=(-1.0, 1.0))(
        x * 2 - 1, y
    )
    assert adv.min() >= -1 and adv.max() <= 1 and (adv - (x * 2 - 1)).abs().max() <= 0.2 + 1e-6


class _Affine(nn.Module):
    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_cuda_model_with_cpu_inputs(
    name: str, model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    import copy

    x, y = batch[0][:4], batch[1][:4]
    gpu = copy.deepcopy(model).cuda()
    adv = _make(name, gpu)(x, y)
    assert adv.device == x.device and adv.min() >= 0 and adv.max() <= 1
    assert _budget_ok(_make(name, gpu), x, adv)
