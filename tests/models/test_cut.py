"""cut_model: server(device(x)) == model(x) at every cut point of every model."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from model_cases import CASES
from torch import nn

from medshield.models import MODELS, CutError, Staged, cut_model, cut_points


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_cut_point_composes_back_to_the_model(name: str) -> None:
    options, in_shape, _ = CASES[name]
    net = MODELS.create(name, seed=0, **options).eval()
    x = torch.rand(in_shape, generator=torch.Generator().manual_seed(2))
    points = cut_points(net)
    assert points == net.stage_names()[:-1]
    assert len(points) >= 2
    with torch.no_grad():
        expected = net(x)
        for at in points:
            device, server = cut_model(net, at)
            assert device.stage_names()[-1] == at, "the device part includes the named stage"
            assert device.stage_names() + server.stage_names() == net.stage_names()
            got = server(device(x))
            assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), f"cut at {at!r}"


def test_known_split_shapes() -> None:
    """PGSL splits after conv2, EICPP after the first dense layer."""
    pgsl = MODELS.create("pgsl-cnn").eval()
    device, _ = cut_model(pgsl, "conv2")
    assert device(torch.rand(2, 5, 14, 14)).shape == (2, 64, 14, 14)
    eicpp = MODELS.create("eicpp-mlp").eval()
    device, server = cut_model(eicpp, "fc1")
    h = device(torch.rand(3, 30))
    assert h.shape == (3, 64) and (h >= 0).all()
    assert server(h).shape == (3, 2)
    lenet = MODELS.create("lenet5").eval()
    device, _ = cut_model(lenet, "pool1")
    assert device(torch.rand(1, 1, 28, 28)).shape == (1, 6, 14, 14)


def test_parts_share_parameters_with_the_model() -> None:
    net = MODELS.create("lenet5", seed=0)
    device, server = cut_model(net, "pool2")
    model_params = {id(p) for p in net.parameters()}
    part_params = [p for part in (device, server) for p in part.parameters()]
    assert {id(p) for p in part_params} == model_params
    assert len(part_params) == len(model_params)
    # a gradient step on the parts changes the original model
    before = net.conv1.weight.detach().clone()
    opt = torch.optim.SGD(list(device.parameters()) + list(server.parameters()), lr=0.1)
    loss = nn.functional.cross_entropy(server(device(torch.rand(4, 1, 28, 28))),
                                       torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert not torch.equal(before, net.conv1.weight)


def test_batchnorm_buffers_are_shared_too() -> None:
    net = MODELS.create("pgsl-cnn", seed=0).train()
    device, server = cut_model(net, "conv3")
    assert device.training and server.training
    before = net.conv1[1].running_mean.clone()
    device(torch.rand(4, 5, 14, 14))
    assert not torch.equal(before, net.conv1[1].running_mean)
    net.eval()
    assert not device.conv1[1].training  # eval() on the model reaches the shared stages


def test_parts_can_be_cut_again() -> None:
    net = MODELS.create("pehealth-e", seed=0).eval()
    device, server = cut_model(net, "act1")
    left, right = cut_model(server, "fc1")
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(right(left(device(x))), net(x))


def test_unknown_and_last_stage_errors_list_valid_points() -> None:
    net = MODELS.create("obfnet1")
    with pytest.raises(CutError, match=r"not a stage.*Valid cut points: flatten, fc1, relu1"):
        cut_model(net, "conv9")
    with pytest.raises(CutError, match="last stage"):
        cut_model(net, "unflatten")


def test_non_sequential_models_are_rejected() -> None:
    class Plain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="nn.Sequential"):
        cut_model(Plain(), "x")
    with pytest.raises(CutError, match="a cut needs two"):
        cut_points(Staged(OrderedDict(only=nn.ReLU())))


def test_plain_sequential_works() -> None:
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert cut_points(seq) == ["0", "1"]
    device, server = cut_model(seq, "1")
    x = torch.rand(5, 3)
    assert torch.allclose(server(device(x)), seq(x))


def test_slicing_and_name_lookup_return_stages() -> None:
    net = MODELS.create("lenet5", seed=0).eval()
    head = net[:3]
    assert isinstance(head, Staged) and head.stage_names() == ["conv1", "relu1", "pool1"]
    assert net["fc3"] is net.fc3 and net[0] is net.conv1
    x = torch.rand(1, 1, 28, 28)
    assert torch.allclose(net[3:](net[:3](x)), net(x))
    with pytest.raises(KeyError, match="no stage 'fc9'"):
        net["fc9"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_models_and_cuts_run_on_cuda() -> None:
    for name in ("lenet5", "pgsl-cnn", "resnet50", "pehealth-e"):
        options, in_shape, out_shape = CASES[name]
        net = MODELS.create(name, seed=0, **options).eval().cuda()
        x = torch.rand(in_shape, device="cuda")
        device, server = cut_model(net, cut_points(net)[1])
        with torch.no_grad():
            assert torch.allclose(server(device(x)), net(x), rtol=1e-4, atol=1e-5)
        assert net(x).shape == out_shape
