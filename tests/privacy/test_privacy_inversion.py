"""Decoder inversion (black box) and the DCGAN-prior attack beat the trivial attacker."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _privacy_helpers import baseline_mse, relu_cnn, sigmoid_cnn

from medshield.attacks.privacy import (
    DecoderInversion,
    GANInversion,
    Knowledge,
    Observation,
    ThreatModelError,
    observe_gradients,
    reconstruction_metrics,
)
from medshield.metrics import ssim

pytestmark = pytest.mark.timeout(90)


def _classifier(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    """A quick digit classifier (trained on the auxiliary images) to judge reconstructions."""
    torch.manual_seed(0)
    net = relu_cnn(1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(4):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            F.cross_entropy(net(x[i : i + 50]), y[i : i + 50]).backward()
            opt.step()
    return net.eval()


def test_decoder_inversion_beats_the_mean_image(digits):
    x, y = digits
    aux, secret, labels = x[:600], x[1000:1100], y[1000:1100]
    device_half = relu_cnn(0)[:3].eval()  # conv, ReLU, max-pool: 8 x 8 x 8 activations
    query = lambda imgs: device_half(imgs)  # noqa: E731 - black-box access to the device half
    attack = DecoderInversion(epochs=3, batch_size=32, width=16, lr=2e-3, device="cpu")
    res = attack.run(Observation(activations=device_half(secret).detach()),
                     Knowledge(aux_images=aux, aux_labels=y[:600], query=query))
    clf = _classifier(aux, y[:600])
    m = res.score(secret, labels=labels, classifier=clf)
    trivial = reconstruction_metrics(aux.mean(0, keepdim=True).expand_as(secret), secret,
                                     labels=labels, classifier=clf)
    assert m["mse"] < 0.35 * baseline_mse(secret, aux)
    assert m["ssim"] > trivial["ssim"] + 0.4
    assert m["classifier_accuracy"] > trivial["classifier_accuracy"] + 0.4
    assert attack.train_loss[-1] < attack.train_loss[0]


def test_decoder_inversion_needs_query_access(digits):
    x, _ = digits
    with pytest.raises(ThreatModelError, match="query"):
        DecoderInversion(epochs=1).run(Observation(activations=x[:2]),
                                       Knowledge(aux_images=x[:10]))
    with pytest.raises(ThreatModelError, match="model"):
        DecoderInversion(epochs=1).run(
            Observation(activations=x[:2]),
            Knowledge(aux_images=x[:10], query=lambda t: t, model=torch.nn.Identity()))


def test_gan_prior_attack_beats_the_mean_image_in_ssim(digits):
    x, y = digits
    aux = x[:1000]
    attack = GANInversion(gan_epochs=3, candidates=32, restarts=1, iterations=100, lr=0.1,
                          device="cpu", seed=0)
    attack.fit_prior(Knowledge(aux_images=aux))
    gains = []
    for k in range(2):
        xi, yi = x[1000 + k : 1001 + k], y[1000 + k : 1001 + k]
        model = sigmoid_cnn(k)
        res = attack.run(Observation(gradients=observe_gradients(model, xi, yi)),
                         Knowledge(model=model, input_shape=(1, 16, 16), aux_images=aux))
        m = res.score(xi, labels=yi)
        assert m["label_recovery"] == 1.0  # labels read off the last layer (iDLG)
        gains.append(m["ssim"] - float(ssim(aux.mean(0, keepdim=True), xi)))
    assert sum(gains) / len(gains) > 0.2, gains
