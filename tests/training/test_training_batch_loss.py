"""fit(batch_loss=...): the per-batch loss hook used by adversarial training and distillation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from training_tasks import mlp

from medshield.training import fit


def test_default_batch_loss_is_bit_identical(multiclass_task) -> None:
    train, _ = multiclass_task
    plain, hooked = mlp(4, seed=3), mlp(4, seed=3)
    h1 = fit(plain, train.loader(batch_size=32, shuffle=True), epochs=2, lr=0.01, progress=False)

    def same(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x)
        return F.cross_entropy(out, y), out

    h2 = fit(hooked, train.loader(batch_size=32, shuffle=True), epochs=2, lr=0.01,
             progress=False, batch_loss=same)
    for a, b in zip(plain.parameters(), hooked.parameters(), strict=True):
        assert torch.equal(a, b)
    assert h1.train_loss == h2.train_loss and h1.train_accuracy == h2.train_accuracy


def test_batch_loss_sees_train_mode_and_changes_training(multiclass_task) -> None:
    train, _ = multiclass_task
    calls: list[tuple[bool, int]] = []

    def shifted(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append((model.training, len(x)))
        out = model(x + 1.0)  # a per-batch input transform
        return F.cross_entropy(out, y), out

    base, hooked = mlp(4, seed=4), mlp(4, seed=4)
    fit(base, train.loader(batch_size=100), epochs=1, lr=0.01, progress=False)
    fit(hooked, train.loader(batch_size=100), epochs=1, lr=0.01, progress=False, batch_loss=shifted)
    assert calls == [(True, 100)] * 4
    assert any(not torch.equal(a, b) for a, b in zip(base.parameters(), hooked.parameters(), strict=True))


def test_batch_loss_must_return_one_row_per_label(multiclass_task) -> None:
    train, _ = multiclass_task

    def doubled(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(torch.cat([x, x]))
        return F.cross_entropy(out, torch.cat([y, y])), out

    with pytest.raises(ValueError, match="one input per label"):
        fit(mlp(4, seed=0), train.loader(batch_size=50), epochs=1, progress=False, batch_loss=doubled)
