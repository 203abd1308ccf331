"""The device <-> hospital exchange: the mechanism, and split SGD equals plain SGD."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from torch import nn

from medshield.data import ArraySplit
from medshield.federated.exchange import device_turn, hospital_turn, privatize_activations
from medshield.models import MODELS, cut_model
from medshield.transport import InProcessChannel


def test_clipping_bounds_every_row_and_keeps_small_rows() -> None:
    act = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = privatize_activations(act, clip=1.0, noise=0.0)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(out[1:], act[1:])


def test_noise_has_the_stated_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    act = torch.zeros(20000, 8)
    out = privatize_activations(act, clip=2.0, noise=1.5, generator=gen)
    assert out.std().item() == pytest.approx(3.0, rel=0.02)
    assert abs(out.mean().item()) < 0.05


def test_noise_without_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="clip"):
        privatize_activations(torch.ones(2, 2), clip=0.0, noise=1.0)


def test_gradient_flows_through_clipping() -> None:
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    privatize_activations(x, clip=1.0, noise=0.0).sum().backward()
    # d/dx (x / |x|) summed: (|x|^2 - x (x1 + x2)) / |x|^3
    n = 5.0
    expected = torch.tensor([(n * n - 3 * 7) / n**3, (n * n - 4 * 7) / n**3])
    assert torch.allclose(x.grad, expected)


def test_split_turn_equals_plain_sgd_on_the_whole_model() -> None:
    """Without clipping and noise, one device turn over a channel is exactly SGD on the
    uncut network with the same batches (the slow, obvious reference)."""
    rng = np.random.default_rng(0)
    data = ArraySplit(rng.normal(size=(37, 30)).astype(np.float32), rng.integers(0, 2, 37))
    net = MODELS.create("eicpp-mlp", seed=3)
    ref = copy.deepcopy(net)
    dev, srv = cut_model(net, "fc1")
    start = {"round": 1, "epoch": 0, "lr": 0.1, "momentum": 0.0, "batch_size": 8,
             "seed": 1234, "clip": 0.0, "noise": 0.0}
    a, b = InProcessChannel.pair(timeout=30)
    device_copy = copy.deepcopy(dev)

    def device() -> None:
        msg = b.recv()
        device_turn(b, device_copy, data, msg)

    th = threading.Thread(target=device)
    th.start()
    opt = torch.optim.SGD(srv.parameters(), lr=0.1)
    state, stats = hospital_turn(a, srv, opt, copy.deepcopy(dev.state_dict()), start)
    th.join()
    dev.load_state_dict(state)
    assert stats.samples == 37 and stats.batches == 5
    # reference: SGD on the whole model, same order of batches
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    x_all, y_all = data.tensors()
    order = torch.randperm(37, generator=torch.Generator().manual_seed(1234))
    for lo in range(0, 37, 8):
        idx = order[lo: lo + 8]
        loss = nn.functional.cross_entropy(ref(x_all[idx]), y_all[idx])
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
    for (k, v), (k2, v2) in zip(net.state_dict().items(), ref.state_dict().items(), strict=True):
        assert k == k2
        assert torch.allclose(v, v2, atol=1e-6), k
    # traffic was counted by the channel: 5 forward + 5 grad + start + done
    assert a.stats.messages_sent == 6 and a.stats.messages_received == 6


def test_device_noise_seed_stays_on_the_device_in_secure_mode() -> None:
    import warnings

    from medshield.federated.exchange import _device_noise_seed
    from medshield.secure import SecurityWarning

    start = {"seed": 7, "noise": 1.0, "noise_source": "seeded"}
    with pytest.warns(SecurityWarning, match="hospital can remove it"):
        assert _device_noise_seed(start) == 7 ^ 0x5DEECE66D  # what the hospital can compute
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        seeds = {_device_noise_seed({**start, "noise_source": "os"}) for _ in range(4)}
        assert len(seeds) == 4 and 7 ^ 0x5DEECE66D not in seeds
        _device_noise_seed({**start, "noise": 0.0})  # no noise: nothing to warn about
