"""Knowledge distillation: the loss against a slow reference, and a student that learns the teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from medshield.defenses import Distillation, kd_loss
from medshield.training import predict


def _reference(s: list[list[float]], t: list[list[float]], y: list[int], T: float,
               alpha: float) -> float:
    """alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(softmax(s), y), averaged."""

    def softmax(z: list[float], temp: float) -> list[float]:
        m = max(v / temp for v in z)
        e = [math.exp(v / temp - m) for v in z]
        return [v / sum(e) for v in e]

    total = 0.0
    for si, ti, yi in zip(s, t, y, strict=True):
        p, q = softmax(ti, T), softmax(si, T)
        kl = sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q, strict=True))
        ce = -math.log(softmax(si, 1.0)[yi])
        total += alpha * T * T * kl + (1 - alpha) * ce
    return total / len(s)


@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.5), (4.0, 0.9), (20.0, 1.0), (2.5, 0.0)])
def test_kd_loss_matches_reference(T: float, alpha: float) -> None:
    g = torch.Generator().manual_seed(int(T * 10))
    s = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    t = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (7,), generator=g)
    got = kd_loss(s, t, y, temperature=T, alpha=alpha)
    want = _reference(s.tolist(), t.tolist(), y.tolist(), T, alpha)
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_kd_loss_gradient_reaches_student_only_and_single_logit_is_binary() -> None:
    s = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    kd_loss(s, t, torch.zeros(6, dtype=torch.long), temperature=3.0).backward()
    assert s.grad is not None and t.grad is None
    # one logit z is the pair [0, z]
    z_s, z_t, y = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64), torch.ones(6)
    pair = lambda z: torch.stack([torch.zeros_like(z), z], 1)  # noqa: E731
    assert kd_loss(z_s, z_t, y, temperature=2.0).item() == pytest.approx(
        kd_loss(pair(z_s), pair(z_t), y, temperature=2.0).item(), rel=1e-12)
    # identical logits and alpha = 1: no loss
    assert kd_loss(s.detach(), s.detach(), alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)


def test_kd_loss_errors_say_what_to_do() -> None:
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="needs the true labels"):
        kd_loss(s, t, None, alpha=0.5)
    with pytest.raises(ValueError, match="num_classes"):
        kd_loss(s, torch.randn(3, 5), torch.zeros(3), alpha=0.5)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, None, temperature=0.0, alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        Distillation(alpha=1.5)


def test_student_learns_the_teacher_and_teacher_is_untouched(trained, mnist) -> None:
    train, test = mnist
    teacher = trained
    teacher.train()  # handed over in train mode: that mode must come back, weights unchanged
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kd = Distillation(student="lenet5", temperature=4.0, alpha=0.9, epochs=3, lr=3e-3, seed=1)
    student = kd(teacher, train.loader(batch_size=32, shuffle=True), device="cpu")
    assert student is not teacher and isinstance(student, nn.Module)
    assert all(m.training for m in teacher.modules()) and student.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert kd.history_ is not None and len(kd.history_) == 3
    loader = test.loader(batch_size=100)
    t_pred, _ = predict(teacher, loader)
    s_pred, _ = predict(student, loader)
    agreement = float(np.mean(t_pred == s_pred))
    assert agreement > 0.85, agreement  # measured: 0.91
    assert type(student).__name__ == "LeNet5" and student.num_classes == 10


def test_default_student_is_the_registry_student_cnn(trained, mnist) -> None:
    train, _ = mnist
    kd = Distillation(student_options={"width": 4}, epochs=1)
    student = kd(trained, train.subset(slice(0, 64)).loader(batch_size=32))
    assert type(student).__name__ == "StudentCNN" and student.in_channels == 1
    assert student(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_student_by_instance_is_copied(trained, mnist) -> None:
    train, _ = mnist
    template = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    w0 = template[1].weight.detach().clone()
    kd = Distillation(student=template, epochs=1)
    small = train.subset(slice(0, 64)).loader(batch_size=32)
    s1 = kd(trained, small)
    assert s1 is not template and torch.equal(template[1].weight, w0)
    assert not torch.equal(s1[1].weight, w0)
