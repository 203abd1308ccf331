"""fit/evaluate/predict: the loop learns, reports are right, modes and options behave."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn import metrics as skm
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from training_tasks import blobs, mlp

from medshield.runtime import get_device
from medshield.training import History, epoch_seed, evaluate, fit, predict
from medshield.training import trainer as trainer_mod


def test_fit_learns_binary(binary_task) -> None:
    train, test = binary_task
    model = mlp(2, seed=0)
    before = evaluate(model, test.loader(batch_size=64))["accuracy"]
    hist = fit(
        model,
        train.loader(batch_size=64, shuffle=True),
        epochs=4,
        lr=0.03,
        val_loader=test.loader(batch_size=64),
        progress=False,
    )
    rep = evaluate(model, test.loader(batch_size=64))
    assert before < 0.8  # the untrained model is near chance, so the accuracy below is learnt
    assert rep["accuracy"] > 0.95
    assert rep["roc_auc"] > 0.98
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert len(hist) == 4 and hist.epoch == [1, 2, 3, 4]
    assert hist.val_metric("accuracy")[-1] == pytest.approx(rep["accuracy"])
    assert hist.meta["device"] == str(get_device()) and hist.meta["optimizer"] == "Adam"
    d = hist.to_dict()
    json.dumps(d)
    assert History.from_dict(json.loads(json.dumps(d))) == hist
    assert d["total_time_s"] == pytest.approx(sum(hist.epoch_time_s))


def test_fit_learns_multiclass_and_report_matches_sklearn(multiclass_task) -> None:
    train, test = multiclass_task
    model = mlp(4, seed=1)
    loader = train.loader(batch_size=64, shuffle=True)
    fit(model, loader, epochs=4, lr=0.03, device="cpu", progress=False)
    rep = evaluate(model, test.loader(batch_size=50))
    assert rep["accuracy"] > 0.95
    assert rep["labels"] == [0, 1, 2, 3] and rep["average"] == "macro"
    labels, probs = predict(model, test.loader(batch_size=50))
    assert probs.shape == (200, 4) and np.allclose(probs.sum(1), 1)
    np.testing.assert_array_equal(labels, probs.argmax(1))
    assert rep["f1"] == pytest.approx(skm.f1_score(test.y, labels, average="macro"))
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(test.y, probs, multi_class="ovr"))
    # mean cross-entropy over the whole set
    with torch.no_grad():
        model.eval()
        ce = nn.functional.cross_entropy(model(torch.from_numpy(test.x)), torch.from_numpy(test.y))
    assert rep["loss"] == pytest.approx(ce.item(), rel=1e-5)


def test_single_logit_binary_model_uses_bce(binary_task) -> None:
    train, test = binary_task
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1))
    hist = fit(model, train.loader(batch_size=32, shuffle=True), epochs=6, lr=0.05, progress=False)
    labels, probs = predict(model, test.loader())
    assert probs.shape == (160, 2) and np.allclose(probs.sum(1), 1)
    rep = evaluate(model, test.loader())
    assert rep["accuracy"] > 0.95 and hist.train_accuracy[-1] > 0.9
    assert rep["labels"] == [0, 1] and rep["roc_auc"] > 0.98


def test_evaluate_uses_eval_mode_and_restores_it(binary_task) -> None:
    _, test = binary_task
    model = mlp(2, seed=3, dropout=0.9)  # dropout this strong makes train mode very noisy
    model.train()
    a = evaluate(model, test.loader())
    b = evaluate(model, test.loader())
    assert a == b  # deterministic, so dropout was off
    assert model.training
    model.eval()
    predict(model, test.loader())
    assert not model.training


def test_predict_loader_without_labels(binary_task) -> None:
    _, test = binary_task
    model = mlp(2, seed=0)
    x_only = DataLoader(TensorDataset(torch.from_numpy(test.x)), batch_size=40)
    labels, probs = predict(model, x_only)
    labels2, probs2 = predict(model, test.loader(batch_size=17))
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_allclose(probs, probs2, rtol=1e-6)


def test_optimizer_options(binary_task) -> None:
    train, _ = binary_task
    loader = train.loader(batch_size=64)
    model = mlp(2, seed=0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    assert fit(model, loader, epochs=1, optimizer=sgd, progress=False).meta["optimizer"] == "SGD"
    factory = functools.partial(torch.optim.RMSprop, lr=1e-3)
    assert (
        fit(model, loader, epochs=1, optimizer=factory, progress=False).meta["optimizer"]
        == "RMSprop"
    )
    assert (
        fit(model, loader, epochs=1, optimizer="adamw", progress=False).meta["optimizer"] == "AdamW"
    )
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        fit(model, loader, epochs=1, optimizer="lbfgs", progress=False)
    other = torch.optim.SGD(mlp(2, seed=1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not parameters of the model"):
        fit(model, loader, epochs=1, optimizer=other, progress=False)


def test_custom_loss_and_early_stop(binary_task) -> None:
    train, val = binary_task
    calls: list[int] = []

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(len(y))
        return nn.functional.cross_entropy(out, y, label_smoothing=0.1)

    def stop_after_two(epoch: int, hist: History) -> bool:
        return epoch >= 2

    hist = fit(
        mlp(2, seed=0),
        train.loader(batch_size=64),
        epochs=5,
        loss_fn=loss_fn,
        val_loader=val.loader(batch_size=80),
        on_epoch_end=stop_after_two,
        progress=False,
    )
    assert len(hist) == 2
    assert sum(calls) == 2 * (320 + 160)  # train and validation batches of both epochs
    assert all(v["loss"] is not None for v in hist.val)


def test_errors_name_the_fix(binary_task) -> None:
    train, _ = binary_task
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(mlp(2, 0), train.loader(), epochs=1, resume=True, progress=False)
    with pytest.raises(TypeError, match="TensorDataset"):
        fit(mlp(2, 0), [torch.zeros(3, 4)], epochs=1, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        fit(mlp(2, 0), train.subset(slice(0, 0)).loader(), epochs=1, progress=False)


def test_progress_bars_on_a_terminal(binary_task, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rich display path runs (and prints epoch summaries) when stderr is a terminal."""
    train, val = binary_task
    buf = io.StringIO()
    monkeypatch.setattr(
        trainer_mod,
        "Console",
        lambda **_: Console(file=buf, force_terminal=True, width=100, color_system=None),
    )
    fit(mlp(2, 0), train.loader(batch_size=32), epochs=2, val_loader=val.loader(), progress=True)
    assert "epoch 2/2" in buf.getvalue()
    buf.seek(0)
    buf.truncate(0)
    fit(mlp(2, 0), train.loader(batch_size=32), epochs=1, progress=False)
    assert buf.getvalue() == ""


def test_epoch_seed_and_shuffle_order_depend_on_seed_and_epoch() -> None:
    assert epoch_seed(0, 0) != epoch_seed(0, 1) != epoch_seed(1, 0)
    assert epoch_seed(7, 3) == epoch_seed(7, 3) and 0 <= epoch_seed(7, 3) < 2**63
    data = blobs(50, 2, seed=0)
    loader = data.loader(batch_size=50, shuffle=True, seed=999)
    trainer_mod._reseed_loader(loader, 5, 2)
    first = next(iter(loader))[1]
    # another loader seed: fit's (seed, epoch) overrides it
    loader2 = data.loader(batch_size=50, shuffle=True, seed=1)
    trainer_mod._reseed_loader(loader2, 5, 2)
    assert torch.equal(first, next(iter(loader2))[1])
    trainer_mod._reseed_loader(loader2, 5, 3)
    assert not torch.equal(first, next(iter(loader2))[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_and_cross_device_resume(binary_task, tmp_path) -> None:
    """Train on the GPU, then resume the CUDA checkpoint on the CPU."""
    train, test = binary_task
    model = mlp(2, seed=0)
    loader = train.loader(batch_size=32, shuffle=True)
    fit(model, loader, epochs=2, lr=0.01, device="cuda", checkpoint_dir=tmp_path, progress=False)
    assert next(model.parameters()).is_cuda
    rep_gpu = evaluate(model, test.loader())
    assert rep_gpu["accuracy"] > 0.9
    cpu_model = mlp(2, seed=5)
    hist = fit(
        cpu_model,
        loader,
        epochs=2,
        device="cpu",
        checkpoint_dir=tmp_path,
        resume=True,
        progress=False,
    )  # nothing left to train: only loads the weights
    assert len(hist) == 2 and hist.meta["device"] == "cpu"
    rep_cpu = evaluate(cpu_model, test.loader())
    assert rep_cpu["accuracy"] == pytest.approx(rep_gpu["accuracy"], abs=1 / 160)
    hist = fit(
        cpu_model,
        loader,
        epochs=3,
        device="cpu",
        checkpoint_dir=tmp_path,
        resume=True,
        progress=False,
    )  # one more epoch, on the CPU
    assert len(hist) == 3 and next(cpu_model.parameters()).device.type == "cpu"
