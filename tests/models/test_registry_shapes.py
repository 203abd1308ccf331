"""Every registered model builds by name and maps its documented input to the right shape."""

from __future__ import annotations

import pytest
import torch
from model_cases import CASES
from torch import nn

import medshield
from medshield.models import MODELS, Staged, count_parameters


def test_every_registered_model_has_a_shape_case() -> None:
    assert sorted(CASES) == MODELS.names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_builds_by_name_and_output_shape(name: str) -> None:
    options, in_shape, out_shape = CASES[name]
    net = medshield.create("model", name, seed=0, **options).eval()
    assert isinstance(net, Staged) and isinstance(net, nn.Module)
    x = torch.rand(in_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == out_shape
    assert torch.isfinite(y).all()


def test_create_lenet5_as_in_the_brief() -> None:
    net = medshield.create("model", "lenet5", num_classes=10)
    assert count_parameters(net) == 61_706  # the classic LeNet-5 count for 10 classes


@pytest.mark.parametrize("name", ["lenet5", "pgsl-cnn", "student-cnn", "mlp", "pehealth-e"])
def test_seed_fixes_the_initialisation_without_touching_global_rng(name: str) -> None:
    options = CASES[name][0]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = MODELS.create(name, seed=7, **options)
    after = torch.rand(1)
    assert torch.equal(before, after), "a seeded build must not consume the global RNG"
    b = MODELS.create(name, seed=7, **options)
    c = MODELS.create(name, seed=8, **options)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


def test_unknown_option_and_bad_values_fail_clearly() -> None:
    with pytest.raises(TypeError):
        MODELS.create("lenet5", num_class=10)  # typo of num_classes
    with pytest.raises(ValueError, match="num_classes"):
        MODELS.create("lenet5", num_classes=0)
    with pytest.raises(ValueError, match="input_size >= 12"):
        MODELS.create("lenet5", input_size=8)
    with pytest.raises(ValueError, match="dropout"):
        MODELS.create("mlp", dropout=1.5)


def test_lenet5_other_input_sizes_and_channels() -> None:
    net = MODELS.create("lenet5", num_classes=3, in_channels=3, input_size=32).eval()
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert net.fc1.in_features == 16 * 6 * 6


def test_pgsl_cnn_layout_and_options() -> None:
    net = MODELS.create("pgsl-cnn", num_classes=2, in_channels=4 * 3 + 1, input_size=16)
    names = net.stage_names()
    assert names == ["conv1", "conv2", "conv3", "drop1", "conv4", "conv5", "conv6", "drop2",
                     "conv7", "flatten", "fc1", "fc2"]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7
    assert all(c.kernel_size == (3, 3) and c.out_channels == 64 for c in convs)
    assert convs[0].in_channels == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 7
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 2
    assert net.eval()(torch.rand(2, 13, 16, 16)).shape == (2, 2)
    # conv -> BN -> ReLU by default, conv -> ReLU -> BN on request
    assert isinstance(net.conv1[1], nn.BatchNorm2d)
    swapped = MODELS.create("pgsl-cnn", bn_after_relu=True)
    assert isinstance(swapped.conv1[1], nn.ReLU) and isinstance(swapped.conv1[2], nn.BatchNorm2d)
    pooled = MODELS.create("pgsl-cnn", input_size=64, pooled_size=4).eval()
    assert pooled.fc1[0].in_features == 64 * 4 * 4
    assert pooled(torch.rand(1, 5, 64, 64)).shape == (1, 10)


def test_mlp_layout_and_eicpp_preset() -> None:
    net = MODELS.create("mlp", in_features=5, hidden=[7, 6, 4], num_classes=3, dropout=0.1)
    assert net.stage_names() == ["fc1", "fc2", "fc3", "out"]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 6), (6, 4), (4, 3)]
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3
    logistic = MODELS.create("mlp", in_features=5, hidden=(), num_classes=2)
    assert logistic.stage_names() == ["out"]
    eicpp = MODELS.create("eicpp-mlp")
    linears = [m for m in eicpp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(30, 64), (64, 32), (32, 2)]


def test_student_is_small() -> None:
    for channels in (1, 3):
        net = MODELS.create("student-cnn", num_classes=10, in_channels=channels)
        assert count_parameters(net) < 300_000
        assert net.eval()(torch.rand(2, channels, 32, 32)).shape == (2, 10)


def test_eval_mode_restores_every_flag_also_on_error():
    from medshield.models.base import eval_mode

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(2))
    net.train()
    net[1].eval()  # a mixed state, as a caller may leave it
    before = [m.training for m in net.modules()]
    with eval_mode(net) as inside:
        assert inside is net and not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before
