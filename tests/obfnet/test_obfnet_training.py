"""Training ObfNets in front of a frozen LeNet (Zheng et al. 2019, section 3.2)."""

from __future__ import annotations

import copy

import pytest
import torch
from _obfnet_helpers import accuracy
from torch import nn

from medshield.defenses.obfnet import (
    Coordinator,
    FrozenModelChanged,
    ObfNetDefense,
    ObfuscatedModel,
    frozen,
    train_obfnet,
)
from medshield.models import ObfNet1, ObfNet2

pytestmark = pytest.mark.timeout(120)


def test_obfnet_training_keeps_accuracy_and_freezes_the_model(mnist, lenet):
    x, y = mnist.test.tensors()
    x, y = x[:500], y[:500]
    before = copy.deepcopy(lenet.state_dict())
    flags = [p.requires_grad for p in lenet.parameters()]
    raw = accuracy(lenet, x, y)
    net = ObfNet2(seed=3)
    untrained = accuracy(ObfuscatedModel(net, lenet).eval(), x, y)
    w0 = net.fc1.weight.detach().clone()
    train = mnist.train.subset(slice(1500, 2700))
    hist = train_obfnet(
        net, lenet, train.loader(batch_size=64, shuffle=True), epochs=2, lr=1e-3, device="cpu"
    )
    obf = accuracy(ObfuscatedModel(net, lenet).eval(), x, y)
    # the pipeline keeps (nearly) the raw accuracy; untrained it is near chance
    assert raw > 0.8
    assert untrained < 0.4
    assert obf > raw - 0.08, (raw, obf)
    assert hist.train_loss[-1] < hist.train_loss[0]
    # the ObfNet changed, the inference model did not (weights, requires_grad, mode)
    assert not torch.equal(net.fc1.weight, w0)
    for k, v in lenet.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in lenet.parameters()] == flags
    # the obfuscated samples look nothing like the raw ones
    with torch.no_grad():
        out = net(x[:50])
    assert out.shape == x[:50].shape
    assert torch.corrcoef(torch.stack([out.flatten(), x[:50].flatten()]))[0, 1] < 0.5


def test_frozen_detects_a_changed_model():
    model = nn.Linear(4, 2)
    with pytest.raises(FrozenModelChanged, match="weight"):
        with frozen(model):
            with torch.no_grad():
                model.weight.add_(1.0)
    assert model.weight.requires_grad  # restored even so


def test_frozen_model_stays_in_eval_mode_while_the_obfnet_trains():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 2))
    pipe = ObfuscatedModel(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Unflatten(1, (1, 4, 4))), model
    )
    pipe.train()
    assert pipe.obfnet.training and not model.training
    x = torch.rand(8, 1, 4, 4)
    with frozen(model):
        assert torch.equal(pipe(x), pipe(x))  # dropout off: deterministic


def test_coordinator_trains_releases_and_admits_raw_and_obfuscated(mnist, lenet):
    coord = Coordinator(copy.deepcopy(lenet), device="cpu")
    train = mnist.train.subset(slice(1500, 2100))
    coord.add_obfnet(
        "ObfNet1", ObfNet1(seed=1), train.loader(batch_size=64, shuffle=True), epochs=1
    )
    with pytest.raises(ValueError, match="exists already"):
        coord.add_obfnet("ObfNet1", ObfNet1(seed=2), train.loader(batch_size=64), epochs=1)
    (released,) = coord.release()
    assert released is not coord.obfnets["ObfNet1"]
    assert not any(p.requires_grad for p in released.parameters())
    x, y = mnist.test.tensors()
    raw_labels, probs = coord.classify(x[:64])
    obf_labels, _ = coord.classify(released(x[:64]))
    assert probs.shape == (64, 10)
    assert (raw_labels == y[:64].numpy()).mean() > 0.7
    assert (obf_labels == y[:64].numpy()).mean() > 0.5
    rep = coord.evaluate(mnist.test.loader(batch_size=256), obfuscate=released)
    assert rep["accuracy"] > 0.5


def test_obfnet_defense_returns_a_pipeline(mnist, lenet):
    from medshield.defenses import DEFENSES

    model = copy.deepcopy(lenet)
    train = mnist.train.subset(slice(0, 256))
    defense = DEFENSES.create("obfnet", k=2, kind="obfnet1", epochs=1)
    pipe = defense(model, train.loader(batch_size=64))
    assert len(pipe.obfnets) == 2 and pipe.model is defense.coordinator.model
    assert pipe(mnist.test.tensors()[0][:5]).shape == (5, 10)
    with pytest.raises(ValueError, match="k must be"):
        ObfNetDefense(k=0)
