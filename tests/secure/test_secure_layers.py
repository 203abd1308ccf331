"""Each supported layer, compiled and run on shares, against plain PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medshield.models.layers import Square
from medshield.secure.compiler import UnsupportedLayer, compile_model
from medshield.secure.engine import run_in_process
from medshield.secure.program import GateOp
from medshield.secure.randomness import RandomSource
from medshield.secure.reference import range_report, simulate


def _check(net: nn.Module, shape: tuple[int, ...], rng: RandomSource, *, tol: float,
           ring_bits: int = 64, frac_bits: int = 16, batch: int = 3, seed: int = 0) -> None:
    torch.manual_seed(seed)
    net = net.eval()
    x = np.random.default_rng(seed).uniform(-1, 1, size=(batch, *shape))
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float()).double().numpy()
    compiled = compile_model(net, shape, frac_bits=frac_bits, ring_bits=ring_bits)
    run = run_in_process(compiled, x, rng=rng)
    assert run.output.shape == expected.shape
    assert np.abs(run.output - expected).max() < tol, np.abs(run.output - expected).max()
    # the secure result is the fixed-point reference up to stochastic rounding
    assert np.abs(run.output - simulate(compiled, x)).max() < tol / 4 + 2.0**-frac_bits
    assert max(run.online_rounds) == compiled.program.rounds()


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.uniform_(p, -0.5, 0.5)
    return module


@pytest.mark.parametrize("ring_bits,frac_bits,tol", [(64, 16, 1e-3), (32, 10, 2e-2)])
def test_linear(ring_bits: int, frac_bits: int, tol: float, rng: RandomSource) -> None:
    _check(_seeded(nn.Linear(12, 7)), (12,), rng, tol=tol, ring_bits=ring_bits,
           frac_bits=frac_bits)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((2, 1), (0, 2))])
def test_conv2d(stride, padding, rng: RandomSource) -> None:
    _check(_seeded(nn.Conv2d(2, 3, (3, 2), stride=stride, padding=padding)), (2, 7, 6), rng,
           tol=1e-3)


def test_conv1d_and_unflatten(rng: RandomSource) -> None:
    net = nn.Sequential(nn.Unflatten(1, (1, 8)), nn.Conv1d(1, 4, 3, padding=1), nn.Flatten(),
                        nn.Linear(32, 3))
    _check(_seeded(net), (8,), rng, tol=1e-3)


@pytest.mark.parametrize("ring_bits,frac_bits", [(64, 16), (32, 12)])
def test_relu(ring_bits: int, frac_bits: int, rng: RandomSource) -> None:
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4), nn.ReLU())
    _check(_seeded(net), (10,), rng, tol=5e-3 if ring_bits == 64 else 3e-2,
           ring_bits=ring_bits, frac_bits=frac_bits, batch=5)


def test_square_and_its_rescale(rng: RandomSource) -> None:
    net = _seeded(nn.Sequential(nn.Linear(6, 5), Square(), nn.Linear(5, 3)))
    compiled = compile_model(net, (6,), frac_bits=16, ring_bits=64)
    kinds = [op.kind for op in compiled.program.ops]
    assert kinds == ["linear", "square", "rescale", "linear"]  # 2f after the square -> f
    text = compiled.program.describe()
    assert "rescale" in text and "shift 16" in text and "Z_2^64" in text
    again = compile_model(net, (6,), frac_bits=16, ring_bits=64).program
    assert again.fingerprint() == compiled.program.fingerprint()
    assert compile_model(net, (6,), frac_bits=15).program.fingerprint() != again.fingerprint()
    _check(net, (6,), rng, tol=5e-3)


def test_standalone_relu_on_input(rng: RandomSource) -> None:
    # at scale f already: the gate compares without truncating (shift 0)
    compiled = compile_model(nn.Sequential(nn.ReLU()), (9,), frac_bits=16, ring_bits=64)
    assert isinstance(compiled.program.ops[0], GateOp) and compiled.program.ops[0].shift == 0
    _check(nn.Sequential(nn.ReLU()), (9,), rng, tol=1e-4)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=1, padding=1),
                                  nn.AvgPool2d(3, stride=2)])
def test_avgpool(pool: nn.Module, rng: RandomSource) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), pool, nn.ReLU(), nn.Flatten())
    _check(_seeded(net), (1, 6, 6), rng, tol=2e-3)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2),
                                  nn.MaxPool2d((1, 3), stride=(1, 2))])
def test_maxpool2d(pool: nn.Module, rng: RandomSource) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), pool, nn.ReLU())
    _check(_seeded(net), (1, 8, 9), rng, tol=2e-3)


def test_maxpool1d_as_in_pehealth_net_a(rng: RandomSource) -> None:
    from medshield.models.pehealth import PEHealthA

    _check(PEHealthA(hidden=16, seed=3), (8,), rng, tol=2e-3)


def test_unsupported_layers_are_named_with_a_fix() -> None:
    with pytest.raises(UnsupportedLayer, match=r"1 \(Sigmoid\).*Supported"):
        compile_model(nn.Sequential(nn.Linear(3, 3), nn.Sigmoid()), (3,))
    with pytest.raises(UnsupportedLayer, match="groups=2.*use groups=1"):
        compile_model(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), (2, 5, 5))
    with pytest.raises(UnsupportedLayer, match="padding"):
        compile_model(nn.Sequential(nn.MaxPool2d(2, padding=1)), (1, 4, 4))

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.fc(x)

    with pytest.raises(UnsupportedLayer, match="container"):
        compile_model(nn.Sequential(Residual()), (3,))
    with pytest.raises(UnsupportedLayer, match="does not fit|ring"):
        compile_model(nn.Sequential(nn.Linear(2, 2, bias=False).requires_grad_(False)
                                    .apply(lambda m: nn.init.constant_(m.weight, 1e9))), (2,),
                      frac_bits=12, ring_bits=32)


def test_overflow_outside_the_ring_is_reported_by_range_report(rng: RandomSource) -> None:
    """Fixed-point MPC silently wraps when a value outgrows the ring; the range check says so."""
    net = _seeded(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    with torch.no_grad():
        net[0].weight.mul_(80.0)  # outputs of a few hundred > 2^(31 - 24) = 128
    compiled = compile_model(net, (4,), frac_bits=12, ring_bits=32)
    x = np.full((2, 4), 3.0)
    rows = {row.name: row for row in range_report(compiled, x)}
    assert rows["0"].headroom_bits < 0  # the linear output does not fit
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float()).numpy()
    out = run_in_process(compiled, x, rng=rng).output
    assert np.abs(out - expected).max() > 1.0  # and the secure result is indeed wrong
    small = np.full((2, 4), 0.1)
    assert min(r.headroom_bits for r in range_report(compiled, small)) > 1
