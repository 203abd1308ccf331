"""FedMA matched averaging: permutation invariance and a case checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medshield.federated.fedma import linear_pairs, match_layer, match_mlp
from medshield.models import MODELS


def mlp_arrays(seed: int) -> list[np.ndarray]:
    net = MODELS.create("mlp", in_features=5, hidden=(6, 4), num_classes=3, seed=seed)
    return [v.numpy().copy() for v in net.state_dict().values()]


def permute_hidden(a: list[np.ndarray], p1: np.ndarray, p2: np.ndarray) -> list[np.ndarray]:
    """The same function with hidden units permuted (layer 1 by p1, layer 2 by p2)."""
    w1, b1, w2, b2, w3, b3 = a
    return [w1[p1], b1[p1], w2[p2][:, p1], b2[p2], w3[:, p2], b3]


def forward(a: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    h = x
    for i in range(0, len(a), 2):
        h = h @ a[i].T + a[i + 1]
        if i + 2 < len(a):
            h = np.maximum(h, 0)
    return h


def test_permuted_copies_match_back_exactly() -> None:
    a = mlp_arrays(0)
    rng = np.random.default_rng(1)
    b = permute_hidden(a, rng.permutation(6), rng.permutation(4))
    x = rng.normal(size=(7, 5)).astype(np.float32)
    assert np.allclose(forward(a, x), forward(b, x), atol=1e-5)  # same function
    naive = [(u + v) / 2 for u, v in zip(a, b, strict=True)]
    assert not np.allclose(forward(naive, x), forward(a, x), atol=1e-3)  # FedAvg breaks it
    merged = match_mlp([a, b], [1.0, 1.0])
    for m, orig in zip(merged, a, strict=True):
        assert np.allclose(m, orig, atol=1e-6)


def test_hand_checked_two_unit_layer() -> None:
    # client A units: u0=(1,0), u1=(0,5); client B has them swapped and slightly moved:
    # B0=(0,4) is closest to u1 and B1=(2,0) to u0, so B is matched (1, 0) and
    # the global units are ((1+2)/2, 0) = (1.5, 0) and (0, (5+4)/2) = (0, 4.5).
    a = np.array([[1.0, 0.0], [0.0, 5.0]])
    b = np.array([[0.0, 4.0], [2.0, 0.0]])
    glob, perms = match_layer([a, b], [1.0, 1.0])
    assert perms[0].tolist() == [0, 1] and perms[1].tolist() == [1, 0]
    assert np.allclose(glob, [[1.5, 0.0], [0.0, 4.5]])
    # with weights 3:1 the global units move towards A
    glob, _ = match_layer([a, b], [3.0, 1.0])
    assert np.allclose(glob, [[1.25, 0.0], [0.0, 4.75]])


def test_output_layer_is_averaged_and_weights_count() -> None:
    a, b = mlp_arrays(2), mlp_arrays(2)
    b = [v + 1.0 for v in b]  # same alignment, shifted: matching is the identity
    merged = match_mlp([a, b], [3.0, 1.0])
    for m, u, v in zip(merged, a, b, strict=True):
        assert np.allclose(m, 0.75 * u + 0.25 * v, atol=1e-5)


def test_non_mlp_is_refused_with_a_clear_message() -> None:
    net = MODELS.create("lenet5", num_classes=10)
    state = net.state_dict()
    with pytest.raises(ValueError, match="MLP layers only"):
        linear_pairs(list(state), [tuple(v.shape) for v in state.values()])
    assert isinstance(state["conv1.weight"], torch.Tensor)
