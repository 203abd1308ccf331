"""torchvision backbones: local weights files, head and stem adaptation, clear errors.

A freshly initialised torchvision model saved in a temporary directory stands in for the
ImageNet file, so nothing is downloaded; a guard makes any download attempt fail.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from medshield.models import MODELS, WeightsError, cut_model

ARCHS = {  # our name -> torchvision factory
    "resnet50": tvm.resnet50,
    "densenet121": tvm.densenet121,
    "mobilenetv2": tvm.mobilenet_v2,
}


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, nn.Module]]:
    """name -> (state_dict file, the torchvision model it came from, in eval mode)."""
    root = tmp_path_factory.mktemp("weights")
    out = {}
    for i, (name, factory) in enumerate(ARCHS.items()):
        torch.manual_seed(100 + i)
        ref = factory(weights=None).eval()
        with torch.no_grad():  # non-trivial BN statistics, so loading them is visible
            for m in ref.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        path = root / f"{name}.pt"
        torch.save(ref.state_dict(), path)
        out[name] = (path, ref)
    return out


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_pretrained_equals_the_torchvision_reference(name: str, weight_files) -> None:
    """ImageNet stem + the file's 1000-class head: the staged net *is* the torchvision net."""
    path, ref = weight_files[name]
    net = MODELS.create(name, num_classes=1000, weights=str(path)).eval()
    assert net.small_input_stem is False  # default with weights: the paper's ImageNet stem
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_head_replaced_body_loaded_and_one_channel_sums_rgb(name: str, weight_files) -> None:
    path, ref = weight_files[name]
    rgb_net = MODELS.create(name, num_classes=3, in_channels=3, weights=path, seed=0).eval()
    head = [m for m in rgb_net.modules() if isinstance(m, nn.Linear)][-1]
    assert head.out_features == 3
    # every tensor of the staged net except the new head comes from the file
    ref_tensors = {(tuple(t.shape), float(t.float().sum())) for t in ref.state_dict().values()}
    body = {k: v for k, v in rgb_net.state_dict().items()
            if not k.startswith(("fc.", "classifier"))}
    assert len(body) == len(ref.state_dict()) - 2  # all but the head's weight and bias
    assert all((tuple(v.shape), float(v.float().sum())) in ref_tensors for v in body.values())

    # in_channels=1 sums the RGB kernels. Reference: the 3-channel net on the grey image
    # replicated to RGB (the paper's preprocessing).
    grey_net = MODELS.create(name, num_classes=3, in_channels=1, weights=path, seed=0).eval()
    first = next(m for m in grey_net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want = grey_net(x), rgb_net(x.repeat(1, 3, 1, 1))
    assert got.shape == (2, 3)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_from_scratch_small_stem_and_one_channel(name: str) -> None:
    net = MODELS.create(name, num_classes=5, in_channels=1, seed=0).eval()
    assert net.small_input_stem is True  # default without weights
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1 and first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.stem.modules())
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    big = MODELS.create(name, num_classes=5, in_channels=1, small_input_stem=False).eval()
    assert big(torch.rand(2, 1, 32, 32)).shape == (2, 5)
    # the small stem keeps more resolution: compare the map size after the stem
    x = torch.rand(1, 1, 32, 32)
    assert net.stem(x).shape[-1] > big.stem(x).shape[-1]


def test_small_stem_with_weights_warns_and_keeps_the_rest(weight_files) -> None:
    path, ref = weight_files["resnet50"]
    with pytest.warns(UserWarning, match="freshly initialised 3x3"):
        net = MODELS.create("resnet50", num_classes=2, weights=path, small_input_stem=True)
    assert net.stem[0].kernel_size == (3, 3)
    assert torch.equal(net.layer3[0].conv2.weight, ref.layer3[0].conv2.weight)
    assert torch.equal(net.stem[1].weight, ref.bn1.weight)


def test_mobilenet_small_stem_loads_fully(weight_files) -> None:
    path, ref = weight_files["mobilenetv2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing is lost
        net = MODELS.create("mobilenetv2", num_classes=2, weights=path, small_input_stem=True)
    assert net.stem[0].stride == (1, 1)
    assert torch.equal(net.stem[0].weight, ref.features[0][0].weight)


def test_old_style_densenet_keys_are_renamed(weight_files, tmp_path: Path) -> None:
    path, ref = weight_files["densenet121"]
    state = torch.load(path, weights_only=True)
    old = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):  # the 2017 ImageNet file predates them
            continue
        for part in ("norm1", "norm2", "relu1", "relu2", "conv1", "conv2"):
            if "denselayer" in k and f".{part}." in k:
                k = k.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        old[k] = v
    assert any(".norm.1." in k for k in old)
    legacy = tmp_path / "densenet121-old.pth"
    torch.save({"state_dict": old}, legacy)
    net = MODELS.create("densenet121", num_classes=1000, weights=legacy).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), rtol=1e-4, atol=1e-5)


def test_missing_corrupt_and_mismatched_files_name_the_file(weight_files, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet50.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.*never downloads"):
        MODELS.create("resnet50", weights=missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="corrupt.pt.*could not be read"):
        MODELS.create("densenet121", weights=corrupt)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weight_files["mobilenetv2"][0].read_bytes()[:4096])
    with pytest.raises(WeightsError, match="truncated.pt"):
        MODELS.create("mobilenetv2", weights=truncated)
    not_a_dict = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), not_a_dict)
    with pytest.raises(WeightsError, match="tensor.pt.*not a state_dict"):
        MODELS.create("mobilenetv2", weights=not_a_dict)
    with pytest.raises(WeightsError, match=r"mobilenetv2.pt.*does not fit torchvision's resnet50"):
        MODELS.create("resnet50", weights=weight_files["mobilenetv2"][0])


def test_weights_need_one_or_three_channels(weight_files) -> None:
    with pytest.raises(ValueError, match="in_channels 1 or 3"):
        MODELS.create("resnet50", in_channels=2, weights=weight_files["resnet50"][0])
    assert MODELS.create("mobilenetv2", num_classes=2, in_channels=2).eval()(
        torch.rand(1, 2, 32, 32)).shape == (1, 2)


def test_densenet_relu_stage_is_explicit(weight_files) -> None:
    net = MODELS.create("densenet121", num_classes=1000, weights=weight_files["densenet121"][0])
    names = net.stage_names()
    assert names[names.index("norm5") + 1] == "relu"
    device, server = cut_model(net.eval(), "norm5")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (device(x) < 0).any(), "norm5 output is pre-ReLU; the ReLU is the next stage"
        assert torch.allclose(server(device(x)), net(x), atol=1e-6)
