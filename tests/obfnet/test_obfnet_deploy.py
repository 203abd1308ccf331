"""ONNX export and onnxruntime: the device runtime agrees with PyTorch (needs the device extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from medshield.defenses.obfnet import Participant  # noqa: E402
from medshield.deploy import (  # noqa: E402
    OnnxModel,
    export_onnx,
    parameter_bytes,
    quantize_int8,
    state_dict_bytes,
)
from medshield.models import LeNet5, ObfNet1, ObfNet2  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    "make",
    [lambda: ObfNet1(seed=0), lambda: ObfNet2(seed=0), lambda: LeNet5(seed=0)],
    ids=["obfnet1", "obfnet2", "lenet5"],
)
def test_onnx_agrees_with_pytorch(tmp_path, make):
    net = make().eval()
    path = export_onnx(net, tmp_path / "m.onnx")
    runner = OnnxModel(path)
    for n in (1, 7):  # the batch axis is dynamic
        x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            ref = net(x)
        out = runner(x)
        assert isinstance(out, torch.Tensor) and out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(runner(x.numpy()), ref.numpy(), rtol=1e-4, atol=1e-5)
    assert runner.size_bytes == path.stat().st_size
    assert abs(runner.size_bytes - parameter_bytes(net)) < 0.02 * parameter_bytes(net) + 4096


def test_int8_is_a_quarter_of_the_size_and_close(tmp_path):
    net = ObfNet2(seed=1).eval()
    fp32 = export_onnx(net, tmp_path / "o2.onnx")
    int8 = quantize_int8(fp32)
    assert int8.name == "o2.int8.onnx"
    assert 0.2 < int8.stat().st_size / fp32.stat().st_size < 0.3
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
    err = (OnnxModel(int8)(x) - ref).abs().max()
    assert err < 0.2 * ref.abs().max()
    assert not torch.allclose(OnnxModel(int8)(x), ref, atol=1e-6)  # it really is quantised


def test_participant_runs_onnx_obfnets(tmp_path):
    nets = [ObfNet1(seed=s).eval() for s in range(2)]
    runners = [OnnxModel(export_onnx(n, tmp_path / f"o{i}.onnx")) for i, n in enumerate(nets)]
    x = torch.rand(10, 1, 28, 28)
    choice = np.array([0, 1] * 5)
    out_onnx, _ = Participant(runners).obfuscate(x, choices=choice)
    out_torch, _ = Participant(nets).obfuscate(x, choices=choice)
    torch.testing.assert_close(out_onnx, out_torch, rtol=1e-4, atol=1e-5)


def test_sizes_and_missing_file(tmp_path):
    net = ObfNet1(seed=0)
    assert parameter_bytes(net) == 615_440 * 4
    assert state_dict_bytes(net) > parameter_bytes(net)
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxModel(tmp_path / "nope.onnx")
