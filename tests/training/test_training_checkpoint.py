"""Checkpoints: exact resume, RNG round trip, safe loading and clear errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from training_tasks import blobs, mlp

from medshield.training import (
    CheckpointError,
    fit,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _own_generator_loader() -> DataLoader:
    return blobs(200, 3, seed=4).loader(batch_size=25, shuffle=True, seed=0)


def _global_rng_loader() -> DataLoader:
    data = blobs(200, 3, seed=4)
    return DataLoader(TensorDataset(*data.tensors()), batch_size=25, shuffle=True)


@pytest.mark.parametrize("make_loader", [_own_generator_loader, _global_rng_loader])
def test_resume_is_bit_identical(tmp_path: Path, make_loader) -> None:
    """2 epochs straight == 1 epoch, checkpoint, 1 more in a fresh model/optimizer/loader.

    The model has dropout, so the torch RNG state matters as well as the shuffling order."""
    straight = mlp(3, seed=0, dropout=0.3)
    h_straight = fit(straight, make_loader(), epochs=2, seed=11, device="cpu", progress=False)

    first = mlp(3, seed=0, dropout=0.3)
    fit(
        first,
        make_loader(),
        epochs=1,
        seed=11,
        checkpoint_dir=tmp_path,
        device="cpu",
        progress=False,
    )
    after_one = _weights(first)
    resumed = mlp(3, seed=123, dropout=0.3)  # different initial weights: all must come from disk
    h_resumed = fit(
        resumed,
        make_loader(),
        epochs=2,
        seed=11,
        checkpoint_dir=tmp_path,
        resume=True,
        device="cpu",
        progress=False,
    )

    assert not _same(after_one, _weights(straight))  # the second epoch did change the weights
    assert _same(_weights(resumed), _weights(straight))
    assert h_resumed.epoch == [1, 2]
    assert h_resumed.train_loss == h_straight.train_loss
    assert h_resumed.train_accuracy == h_straight.train_accuracy
    assert load_checkpoint(tmp_path / "last.pt").epoch == 2


def test_resume_is_sensitive_to_the_data_order(tmp_path: Path) -> None:
    """Control for the test above: the same resume with another seed (hence another shuffle
    order and dropout masks) gives different weights, so identity is not an accident."""
    straight = mlp(3, seed=0)
    fit(straight, _own_generator_loader(), epochs=2, seed=11, device="cpu", progress=False)
    fit(
        mlp(3, seed=0),
        _own_generator_loader(),
        epochs=1,
        seed=11,
        checkpoint_dir=tmp_path,
        device="cpu",
        progress=False,
    )
    ckpt = load_checkpoint(tmp_path / "last.pt")
    ckpt.rng = get_rng_state()  # forget the saved RNG states
    other = mlp(3, seed=5)
    ckpt.restore(other, rng=False)
    opt = torch.optim.Adam(other.parameters(), lr=1e-3)
    opt.load_state_dict(ckpt.optimizer)
    loader = _own_generator_loader()
    loader.generator.manual_seed(12345)  # a different order for the second epoch
    other.train()
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(other(x), y).backward()
        opt.step()
    assert not _same(_weights(other), _weights(straight))


def test_resume_when_done_and_when_missing(tmp_path: Path) -> None:
    loader = _own_generator_loader()
    h = fit(
        mlp(3, 0),
        loader,
        epochs=2,
        checkpoint_dir=tmp_path / "new",
        resume=True,
        device="cpu",
        progress=False,
    )  # no checkpoint yet: starts from scratch
    assert len(h) == 2 and (tmp_path / "new" / "last.pt").is_file()
    model = mlp(3, 7)
    h2 = fit(
        model,
        loader,
        epochs=2,
        checkpoint_dir=tmp_path / "new",
        resume=True,
        device="cpu",
        progress=False,
    )
    # nothing left to do: the history comes from the checkpoint
    assert h2.train_loss == h.train_loss and h2.epoch_time_s == h.epoch_time_s
    assert h2.meta["resumed_at_epoch"] == 2
    assert _same(_weights(model), load_checkpoint(tmp_path / "new" / "last.pt").model)
    assert not list((tmp_path / "new").glob("*.tmp"))  # atomic writes leave no temp files


def test_checkpoint_contents_load_weights_only(tmp_path: Path) -> None:
    model = mlp(2, 0)
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "a" / "c.pt", model, opt, epoch=3, history={"epoch": [1]}, extra={"note": "x"}
    )
    raw = torch.load(path, weights_only=True)  # no unsafe unpickling needed
    assert set(raw) >= {"model", "optimizer", "epoch", "history", "rng", "extra"}
    ck = load_checkpoint(path)
    assert ck.epoch == 3 and ck.extra == {"note": "x"} and ck.history == {"epoch": [1]}
    fresh = mlp(2, 9)
    fresh_opt = torch.optim.Adam(fresh.parameters())
    ck.restore(fresh, fresh_opt)
    assert _same(_weights(fresh), _weights(model))
    assert torch.equal(
        fresh_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_rng_state_round_trip() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leave a cached gaussian in NumPy's legacy state
    state = get_rng_state()
    draws = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(state)
    again = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert draws[0] == again[0] and draws[1] == again[1] and torch.equal(draws[2], again[2])


def test_truncated_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "good.pt", mlp(2, 0), epoch=1)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt is corrupt or truncated"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pt is corrupt or truncated"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    # a resume that hits the corrupt file reports it too
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="last.pt is corrupt"):
        fit(
            mlp(2, 0),
            _own_generator_loader(),
            epochs=1,
            checkpoint_dir=run_dir,
            resume=True,
            device="cpu",
            progress=False,
        )


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a medshield checkpoint"):
        load_checkpoint(plain)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "medshield.checkpoint", "obj": Path("/x")}, pickled)
    with pytest.raises(CheckpointError, match=r"pickled\.pt contains Python objects"):
        load_checkpoint(pickled)


def test_wrong_model_is_a_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", mlp(2, 0), epoch=1)
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        ck.restore(mlp(5, 0))
    with pytest.raises(CheckpointError, match="no optimizer state"):
        model = mlp(2, 0)
        ck.restore(model, torch.optim.SGD(model.parameters(), lr=0.1))
