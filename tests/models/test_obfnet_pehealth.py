"""ObfNet parameter counts (the paper's) and the PE-HEALTH reconstruction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medshield.models import (
    MODELS,
    PEHealthE,
    PEHealthF,
    Square,
    assert_secure_evaluable,
    count_parameters,
)


def test_obfnet_parameter_counts_match_the_paper() -> None:
    # Zheng et al. 2019, section 3.3: 615,440 and 1,569,784 learnable parameters
    assert count_parameters(MODELS.create("obfnet1")) == 615_440
    assert count_parameters(MODELS.create("obfnet2")) == 1_569_784


def test_obfnet_keeps_the_shape_and_feeds_lenet() -> None:
    lenet = MODELS.create("lenet5", seed=0).eval()
    x = torch.rand(3, 1, 28, 28)
    for name in ("obfnet1", "obfnet2"):
        obf = MODELS.create(name, seed=1).eval()
        z = obf(x)
        assert z.shape == x.shape
        assert (z >= 0).all(), "ReLU output: the obfuscated image is non-negative"
        assert lenet(z).shape == (3, 10)


def test_obfnet_matches_a_dense_reference() -> None:
    net = MODELS.create("obfnet2", hidden=50, seed=3).eval()
    x = torch.rand(2, 1, 28, 28)
    w1, b1, w2, b2 = net.fc1.weight, net.fc1.bias, net.fc2.weight, net.fc2.bias
    ref = torch.relu(torch.relu(x.reshape(2, -1) @ w1.T + b1) @ w2.T + b2).reshape(x.shape)
    assert torch.allclose(net(x), ref, atol=1e-6)


def test_obfnet_input_shape_is_configurable() -> None:
    net = MODELS.create("obfnet1", input_shape=(3, 28, 28))
    n = 3 * 28 * 28
    assert count_parameters(net) == n * n + n
    assert net(torch.rand(2, 3, 28, 28)).shape == (2, 3, 28, 28)
    with pytest.raises(ValueError, match="input_shape"):
        MODELS.create("obfnet1", input_shape=(0, 28, 28))


def test_square_is_x_times_x() -> None:
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(Square()(x), x**2)


@pytest.mark.parametrize("name", [f"pehealth-{c}" for c in "abcdef"])
def test_pehealth_nets_use_only_secure_layers(name: str) -> None:
    assert_secure_evaluable(MODELS.create(name))


def test_secure_layer_check_rejects_batchnorm() -> None:
    with pytest.raises(TypeError, match="BatchNorm2d"):
        assert_secure_evaluable(MODELS.create("pgsl-cnn"))


def test_pehealth_e_is_the_cryptonets_net() -> None:
    net = PEHealthE(seed=0).eval()
    assert net.stage_names() == ["conv1", "act1", "flatten", "fc1", "act2", "fc2"]
    conv = net.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (1, 5, (5, 5), (2, 2))
    assert net.fc1.in_features == 845 and net.fc1.out_features == 100
    assert isinstance(net.act1, Square) and isinstance(net.act2, Square)
    x = torch.rand(2, 1, 28, 28)
    assert net.conv1(x).shape == (2, 5, 13, 13)
    # reference: the same computation written out with functional ops
    h = nn.functional.conv2d(x, conv.weight, conv.bias, stride=2, padding=1) ** 2
    h = (h.flatten(1) @ net.fc1.weight.T + net.fc1.bias) ** 2
    ref = h @ net.fc2.weight.T + net.fc2.bias
    assert torch.allclose(net(x), ref, rtol=1e-5, atol=1e-5)


def test_pehealth_e_table_iv_variant_and_f() -> None:
    variant = PEHealthE(activation="relu", mean_pool=True).eval()
    assert variant.stage_names() == ["conv1", "act1", "pool1", "flatten", "fc1", "act2", "fc2"]
    assert isinstance(variant.pool1, nn.AvgPool2d)
    assert variant(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    f = PEHealthF()
    assert isinstance(f.act1, nn.ReLU) and isinstance(f.act2, nn.ReLU)
    assert f.fc1.in_features == 845
    with pytest.raises(ValueError, match="activation"):
        PEHealthE(activation="tanh")  # type: ignore[arg-type]


def test_pehealth_tabular_layer_types() -> None:
    """Table IV: (a)/(c) have FC, ReLU, max-pool and no conv; (b)/(d) conv, ReLU, FC."""
    for name in ("pehealth-a", "pehealth-c"):
        kinds = {type(m) for m in MODELS.create(name).modules()}
        assert nn.MaxPool1d in kinds and nn.Linear in kinds and nn.ReLU in kinds
        assert nn.Conv1d not in kinds
    for name in ("pehealth-b", "pehealth-d"):
        kinds = {type(m) for m in MODELS.create(name).modules()}
        assert nn.Conv1d in kinds and nn.Linear in kinds and nn.ReLU in kinds
        assert nn.MaxPool1d not in kinds
