"""DLG and iDLG on an undefended small model: they beat the trivial attacker by far."""

from __future__ import annotations

import pytest
import torch
from _privacy_helpers import baseline_mse, relu_cnn, sigmoid_cnn

from medshield.attacks import ATTACKS
from medshield.attacks.privacy import (
    DLG,
    IDLG,
    Knowledge,
    Observation,
    ThreatModelError,
    gradient_distance,
    observe_gradients,
    recover_labels,
)

pytestmark = pytest.mark.timeout(90)


def _setup(digits, k: int, model_fn=sigmoid_cnn):
    x, y = digits
    xi, yi = x[1000 + k : 1001 + k], y[1000 + k : 1001 + k]
    model = model_fn(k)
    obs = Observation(gradients=observe_gradients(model, xi, yi))
    return model, xi, yi, obs


def test_dlg_reconstructs_image_and_label(digits):
    aux = digits[0][:1000]
    model, xi, yi, obs = _setup(digits, 0)
    res = DLG(iterations=30, seed=0).run(obs, Knowledge(model=model, input_shape=(1, 16, 16)))
    m = res.score(xi, labels=yi)
    assert res.reconstruction.shape == xi.shape
    assert m["mse"] < 0.02 * baseline_mse(xi, aux)  # the mean image scores ~0.03
    assert m["ssim"] > 0.95 and m["label_recovery"] == 1.0


def test_dlg_with_known_labels_uses_them(digits):
    model, xi, yi, obs = _setup(digits, 1)
    obs.labels = yi
    res = DLG(iterations=25).run(obs, Knowledge(model=model, input_shape=(1, 16, 16)))
    assert torch.equal(res.labels, yi)
    assert res.info["threat_model"] == "gradient-leakage+labels"
    assert res.score(xi)["ssim"] > 0.9


def test_dlg_with_adam_on_a_relu_network(digits):
    """The Adam variant (used by the experiments) also inverts a ReLU network."""
    aux = digits[0][:1000]
    model, xi, yi, obs = _setup(digits, 5, relu_cnn)
    obs.labels = yi
    res = DLG(iterations=150, optimizer="adam", lr=0.1).run(
        obs, Knowledge(model=model, input_shape=(1, 16, 16)))
    m = res.score(xi)
    assert m["mse"] < 0.25 * baseline_mse(xi, aux) and m["ssim"] > 0.8


@pytest.mark.parametrize("model_fn", [sigmoid_cnn, relu_cnn])
def test_idlg_recovers_labels_exactly_for_batch_size_one(digits, model_fn):
    x, y = digits
    for k in range(10):
        model = model_fn(k)
        g = observe_gradients(model, x[1000 + k : 1001 + k], y[1000 + k : 1001 + k])
        last = [n for n in g if n.endswith("weight")][-1]
        assert int(recover_labels(g[last])[0]) == int(y[1000 + k])


def test_idlg_reconstructs(digits):
    aux = digits[0][:1000]
    model, xi, yi, obs = _setup(digits, 2)
    res = IDLG(iterations=30).run(obs, Knowledge(model=model, input_shape=(1, 16, 16)))
    m = res.score(xi, labels=yi)
    assert m["label_recovery"] == 1.0
    assert m["mse"] < 0.02 * baseline_mse(xi, aux) and m["ssim"] > 0.95


def test_gradient_distance_is_zero_at_the_truth_and_positive_elsewhere(digits):
    model, xi, yi, obs = _setup(digits, 3)
    assert obs.gradients is not None
    at_truth = gradient_distance(model.eval(), xi, yi, obs.gradients, soft=False)
    elsewhere = gradient_distance(model, torch.rand_like(xi), yi, obs.gradients, soft=False)
    assert float(at_truth.detach()) < 1e-12 < float(elsewhere.detach())


def test_threat_models_are_enforced(digits):
    model, xi, yi, obs = _setup(digits, 4)
    know = Knowledge(model=model, input_shape=(1, 16, 16))
    with pytest.raises(ThreatModelError, match="labels"):
        IDLG().run(Observation(gradients=obs.gradients, labels=yi), know)
    with pytest.raises(ThreatModelError, match="aux_images"):
        DLG().run(obs, Knowledge(model=model, input_shape=(1, 16, 16), aux_images=xi))
    with pytest.raises(ThreatModelError, match="input_shape"):
        DLG().run(obs, Knowledge(model=model))
    with pytest.raises(ThreatModelError, match="activations"):
        DLG().run(Observation(gradients=obs.gradients, activations=xi), know)


def test_registered_by_name():
    assert isinstance(ATTACKS.create("dlg", iterations=3), DLG)
    assert isinstance(ATTACKS.create("idlg"), IDLG)
    assert {"dlg", "idlg", "decoder-inversion", "gan-inversion"} <= set(ATTACKS.names())
