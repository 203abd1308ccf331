"""The ``elgamal-2pc`` protocol end to end against plaintext, costs, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import medshield
from medshield.secure.elgamal import TOY_GROUP, run_elgamal_in_process
from medshield.secure.randomness import RandomSource, SecurityWarning

pytestmark = pytest.mark.filterwarnings("ignore:the toy-32 group is NOT SECURE")


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    return net.eval()


def _plain(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x).float()).double().numpy()


def test_registered_and_matches_plaintext(rng) -> None:
    net = _mlp()
    x = np.random.default_rng(1).normal(size=(4, 6))
    proto = medshield.create("protocol", "elgamal-2pc", frac_bits=5, dp_bits=16, probe=True)
    run = proto.infer(net, x, rng=rng)
    conv = run.extra["conversions"]
    assert sum(c["errors"] for c in conv.values()) == 0  # seeded; ~0.5 % chance otherwise
    assert np.abs(run.output - _plain(net, x)).max() < 0.25  # 5 fractional bits
    assert run.online_rounds[0] > 0 and run.extra["walk_failures"] == 0


def test_conv1d_model_with_leading_reshape(rng) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 2, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(12, 2)).eval()
    x = np.random.default_rng(2).normal(size=(3, 6))
    proto = medshield.create("protocol", "elgamal", frac_bits=4, dp_bits=16, probe=True)
    run = proto.infer(net, x, rng=rng)
    if sum(c["errors"] for c in run.extra["conversions"].values()) == 0:
        assert np.abs(run.output - _plain(net, x)).max() < 0.5
    assert set(run.extra["conversions"]) == {"1", "4"}


def test_linear_layers_need_no_messages(rng) -> None:
    net = nn.Sequential(nn.Linear(4, 3)).eval()
    x = np.random.default_rng(3).normal(size=(2, 4))
    run = medshield.create("protocol", "elgamal-2pc", frac_bits=3, dp_bits=14).infer(
        net, x, rng=rng)
    assert run.online_bytes == (0, 0) and run.online_rounds == (0, 0)


def test_error_rate_grows_with_precision(make_rng) -> None:
    net = _mlp()
    x = np.random.default_rng(4).normal(size=(16, 6))
    rates = []
    for f in (2, 8):
        proto = medshield.create("protocol", "elgamal-2pc", frac_bits=f, dp_bits=8, probe=True)
        conv = proto.infer(net, x, rng=make_rng(f)).extra["conversions"]
        rates.append(sum(c["errors"] for c in conv.values()) / sum(c["outputs"] for c in conv.values()))
    assert rates[0] < 0.2 < rates[1]


def test_clear_errors() -> None:
    from medshield.secure.compiler import compile_model

    relu_first = nn.Sequential(nn.ReLU(), nn.Linear(3, 2)).eval()
    proto = medshield.create("protocol", "elgamal-2pc")
    with pytest.raises(ValueError, match="beaver-2pc"):
        proto.infer(relu_first, np.zeros((1, 3)))
    compiled = compile_model(_mlp(), (6,), frac_bits=4, ring_bits=32)
    with pytest.raises(ValueError, match="ring_bits=64"):
        run_elgamal_in_process(compiled, np.zeros((1, 6)), group=TOY_GROUP)


def test_seeded_randomness_and_toy_group_warn() -> None:
    with pytest.warns(SecurityWarning, match="NOT SECURE"):
        rs = RandomSource(seed=3)
    net = nn.Sequential(nn.Linear(2, 1)).eval()
    with pytest.warns(SecurityWarning, match="toy-32 group is NOT SECURE"):
        run_elgamal_in_process(_compile(net, 2), np.zeros((1, 2)), group=TOY_GROUP, rng=rs)


def _compile(net: nn.Module, n: int):
    from medshield.secure.compiler import compile_model

    return compile_model(net, (n,), frac_bits=3, ring_bits=64)


@pytest.mark.slow
def test_runs_in_the_secure_2048_bit_group(rng) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)).eval()
    x = np.array([[0.5, -1.0, 0.25]])
    proto = medshield.create("protocol", "elgamal-2pc", frac_bits=2, dp_bits=6,
                             group="modp-2048", probe=True)
    run = proto.infer(net, x, rng=rng)
    assert sum(c["errors"] for c in run.extra["conversions"].values()) == 0
    assert np.abs(run.output - _plain(net, x)).max() <= 0.3  # 2 fractional bits
    assert run.setup_bytes > 2 * 8 * 256  # 2048-bit ciphertexts
