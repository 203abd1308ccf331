"""Decoder inversion (black box), white-box inversion and the DCGAN-prior attack beat the
trivial attacker."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _privacy_helpers import baseline_mse, relu_cnn, sigmoid_cnn, trained_pgsl_cnn

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


def _device_half(digits, seed: int = 0) -> torch.nn.Module:
    """The device half of PGSL's CNN (two conv/BatchNorm/ReLU blocks), briefly trained."""
    from medshield.models import cut_model

    return cut_model(trained_pgsl_cnn(digits, seed), "conv2")[0].eval()


def test_whitebox_inversion_reconstructs_through_the_known_device_half(digits):
    """The server knows the device half (it relays its weights): two conv layers are inverted
    almost exactly, far below the trivial attacker; noise on the activations slows it."""
    from medshield.attacks.privacy import WhiteBoxInversion

    x, _ = digits
    aux, secret = x[:600], x[1000:1032]
    device = _device_half(digits)
    before = {k: v.clone() for k, v in device.state_dict().items()}
    with torch.no_grad():
        acts = device(secret)
    attack = WhiteBoxInversion(iterations=150)
    res = attack.run(Observation(activations=acts), Knowledge(model=device,
                                                             input_shape=(1, 16, 16)))
    m = reconstruction_metrics(res.reconstruction, secret)
    assert res.reconstruction.shape == secret.shape and res.labels is None
    assert m["mse"] < 0.01 * baseline_mse(secret, aux) and m["ssim"] > 0.95, m
    assert res.info["relative_residual"] < 0.01 and res.info["threat_model"] == "white-box-mia"
    assert all(p.requires_grad for p in device.parameters())  # restored after the attack
    torch.testing.assert_close(device.state_dict(), before)  # the weights were not touched
    noisy = acts + torch.distributions.Laplace(0.0, 0.5).sample(acts.shape)
    res_noisy = attack.run(Observation(activations=noisy),
                           Knowledge(model=device, input_shape=(1, 16, 16)))
    assert reconstruction_metrics(res_noisy.reconstruction, secret)["mse"] > 5 * m["mse"]


def test_whitebox_inversion_in_chunks_equals_one_image_at_a_time(digits):
    """Batching is only for speed: each image's problem is independent (slow reference: one
    image per run). In float64: in float32, Adam scales the rounding noise of near-zero
    gradients up to step-sized moves, which would differ with the batch's reduction order."""
    from medshield.attacks.privacy import WhiteBoxInversion

    secret = digits[0][1000:1006].double()
    device = _device_half(digits, 1).double()
    with torch.no_grad():
        acts = device(secret)
    know = Knowledge(model=device, input_shape=(1, 16, 16))
    fast = WhiteBoxInversion(iterations=20, tv=1e-2, batch_size=4).run(
        Observation(activations=acts), know).reconstruction
    slow = torch.cat([WhiteBoxInversion(iterations=20, tv=1e-2, batch_size=1).run(
        Observation(activations=acts[i : i + 1]), know).reconstruction for i in range(6)])
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-9)


def test_whitebox_inversion_threat_model_and_errors(digits):
    from medshield.attacks import ATTACKS
    from medshield.attacks.privacy import WhiteBoxInversion

    device = _device_half(digits)
    acts = device(digits[0][:2]).detach()
    with pytest.raises(ThreatModelError, match="aux_images"):
        WhiteBoxInversion(iterations=2).run(
            Observation(activations=acts),
            Knowledge(model=device, input_shape=(1, 16, 16), aux_images=digits[0][:4]))
    with pytest.raises(ThreatModelError, match="model"):
        WhiteBoxInversion(iterations=2).run(Observation(activations=acts),
                                            Knowledge(input_shape=(1, 16, 16)))
    with pytest.raises(ValueError, match="lr"):
        WhiteBoxInversion(lr=0.0)
    assert isinstance(ATTACKS.create("rmle", iterations=3), WhiteBoxInversion)
