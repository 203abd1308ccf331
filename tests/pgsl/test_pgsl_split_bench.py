"""`medshield bench split` in mode "fast", and the cached pre-processing it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medshield.benchmarks.split import split_bench, step_flops
from medshield.experiments.base import BENCHES, RunOptions
from medshield.experiments.pgsl_common import (
    SETTINGS,
    load_images,
    prepare_inputs,
    train_split,
    train_surrogate,
    with_settings,
)

pytestmark = pytest.mark.timeout(120)


def test_cached_inputs_train_the_same_model_as_inline_preprocessing(tmp_path):
    opts = RunOptions(out=tmp_path, mode="fast", data_root=None, progress=False, threads=1)
    cfg = with_settings(SETTINGS["fast"], n_train=96, n_test=16, n_aux=16, width=4, hidden=16)
    data = load_images("mnist", opts, cfg)
    surrogate = train_surrogate(data, cfg, 0, opts.device)
    inputs = prepare_inputs("pgsl", data, cfg, opts, surrogate=surrogate)
    c, h, w = data.image_shape
    assert inputs.shape == (len(data.x_train), 4 * c + 1, h // 2, w // 2)
    torch.manual_seed(0)  # dropout draws from the global generator
    inline = train_split("pgsl", data, cfg, opts, surrogate=surrogate)
    torch.manual_seed(0)
    cached = train_split("pgsl", data, cfg, opts, surrogate=surrogate, inputs=inputs)
    assert inline.prep_seconds > cached.prep_seconds
    for (k, a), (_, b) in zip(inline.head.state_dict().items(),
                              cached.head.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    torch.testing.assert_close(inline.device_core.state_dict(), cached.device_core.state_dict())
    with pytest.raises(ValueError, match="prepare_inputs"):
        train_split("pgsl", data, cfg, opts, surrogate=surrogate, inputs=inputs[:10])


def test_split_bench_fast_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)
    assert BENCHES.get("split") is split_bench
    bench = split_bench(RunOptions(out=tmp_path, mode="fast", data_root=None, progress=False,
                                   threads=1))
    rows = {(r.case.split(":")[0], r.measure): r for r in bench.rows}
    times = [r for r in bench.rows if r.measure == "training wall time per epoch"]
    assert len(times) == 3 and all(r.ours > 0 and r.peer and r.peer > 0 for r in times)
    assert all("raw images" in (r.peer_name or "") for r in times)
    strict = [r for r in bench.rows if r.measure.startswith("training wall time per epoch, "
                                                            "against the down-sampled")]
    assert len(strict) == 3 and all(r.peer and r.peer > 0 and "down-sampled" in r.peer_name
                                    for r in strict)
    # the two peers are different runs: their medians differ
    assert {r.peer for r in strict}.isdisjoint({r.peer for r in times})
    accs = [r for r in bench.rows if r.measure == "test accuracy after the timed run"]
    assert len(accs) == 3 and all(0.0 <= r.ours <= 1.0 for r in accs)
    flops = {r.case.split(":")[0]: r for r in bench.rows
             if r.measure == "arithmetic per training step"}
    assert len(flops) == 3 and len({r.peer for r in flops.values()}) == 1
    paper, half, light = (flops[k].ours for k in flops)
    cfg = with_settings(SETTINGS["fast"], n_train=128, width=8, epochs=1, n_test=256, n_aux=64)
    data = load_images("mnist", RunOptions(out=tmp_path, mode="fast", data_root=None,
                                           progress=False), cfg)
    strict_flops = step_flops("vanilla", data, cfg) / 1e9
    # three full-width server halves and the fusion against one server half on the same
    # down-sampled layout: well over 2.5x; narrower streams cost less. The raw-image plain
    # model (the rows' peer) works on four times the positions
    assert paper > 2.5 * strict_flops and paper > half > light
    assert flops["PGSL (paper's streams)"].peer > 3 * strict_flops
    assert all("plain split learning:" in (r.note or "") for r in accs)
    recovery = [r for r in bench.rows if r.measure.startswith("recovery: share")]
    assert len(recovery) == 3 and all(0.0 < r.ours <= 1.0 + 1e-6 for r in recovery)
    prep = [r for r in bench.rows if r.measure.startswith("device pre-processing")]
    assert len(prep) == 1 and prep[0].ours > 0
    assert len(rows) == len(bench.rows)


def test_step_flops_counts_the_streams_and_the_plain_model_by_hand():
    """The counter against arithmetic done by hand for the plain model's convolutions."""
    cfg = with_settings(SETTINGS["fast"], width=4, hidden=8, batch_size=2)
    data = load_images("mnist", RunOptions(out=Path("."), mode="fast", data_root=None,
                                           progress=False), cfg, mnist_source="embedded")
    assert data is not None
    plain = step_flops("vanilla", data, cfg)
    # 7 convs 3x3 on 14x14 maps, width 4: conv1 5->4, six 4->4; 2 FLOPs per multiply-add;
    # forward + input-gradient + weight-gradient = 3x forward (conv1's input gradient is not
    # needed, the data needs none), and the two dense layers likewise
    n, hw = 2, 14 * 14
    conv = [5 * 4 * 9] + [4 * 4 * 9] * 6
    dense = [4 * hw * 8, 8 * 10]
    fwd = [2 * n * hw * c for c in conv] + [2 * n * d for d in dense]
    expected = 3 * sum(fwd) - fwd[0]
    assert plain == expected
    pgsl = step_flops("pgsl", data, cfg)
    assert pgsl > 3 * (plain - 2 * fwd[0] - 3 * fwd[1])
    # plain split learning on the raw 1 x 28 x 28 images: conv1 1->4, the maps 28 x 28
    raw = step_flops("raw", data, cfg)
    hw = 28 * 28
    conv = [1 * 4 * 9] + [4 * 4 * 9] * 6
    dense = [4 * hw * 8, 8 * 10]
    fwd = [2 * n * hw * c for c in conv] + [2 * n * d for d in dense]
    assert raw == 3 * sum(fwd) - fwd[0]
