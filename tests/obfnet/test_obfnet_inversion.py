"""The honest-but-curious coordinator's attacks: inversion and identification of ObfNets."""

from __future__ import annotations

import pytest
import torch

from medshield.attacks.privacy import Observation, ThreatModelError, reconstruction_metrics
from medshield.attacks.privacy.obfnet_inversion import (
    ObfNetIdentifier,
    ObfNetInversion,
    ObfNetKnowledge,
    mean_image_baseline,
    mixture_query,
)
from medshield.models import ObfNet1, ObfNet2

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def split(mnist):
    x, _ = mnist.train.tensors()
    secret, _ = mnist.test.tensors()
    return x[:1500], secret[:100]  # public (the coordinator's) / held-out (the participant's)


def test_decoder_inversion_beats_the_trivial_attacker(split):
    public, secret = split
    net = ObfNet1(seed=0).eval()
    with torch.no_grad():
        observed = net(secret)
    know = ObfNetKnowledge(obfnets=[net], aux_images=public)
    attack = ObfNetInversion(method="decoder", epochs=6, hidden=256, batch_size=64, device="cpu")
    res = attack.run(Observation(activations=observed), know)
    m = res.score(secret)
    trivial = reconstruction_metrics(mean_image_baseline(know, len(secret)), secret)
    as_is = reconstruction_metrics(observed.clamp(0, 1), secret)
    assert res.reconstruction.shape == secret.shape
    assert m["ssim"] > trivial["ssim"] + 0.15, (m, trivial)
    assert m["ssim"] > as_is["ssim"] + 0.15
    assert m["mse"] < 0.75 * trivial["mse"]
    assert attack.train_loss[-1] < attack.train_loss[0]


def test_white_box_optimisation_improves_the_decoder(split):
    public, secret = split
    secret = secret[:24]
    net = ObfNet1(seed=1).eval()
    with torch.no_grad():
        observed = net(secret)
    know = ObfNetKnowledge(obfnets=[net], aux_images=public[:600])
    attack = ObfNetInversion(
        method="hybrid", epochs=3, hidden=128, steps=150, step_lr=0.05, device="cpu"
    ).fit(know)
    attack.method = "decoder"
    dec, _ = attack.reconstruct(observed)
    attack.method = "hybrid"
    hyb, which = attack.reconstruct(observed)
    assert (which == 0).all()
    with torch.no_grad():
        res_dec = (net(dec) - observed).pow(2).mean()
        res_hyb = (net(hyb) - observed).pow(2).mean()
    assert res_hyb < 0.5 * res_dec  # it matches what was observed far better ...
    assert reconstruction_metrics(hyb, secret)["mse"] < reconstruction_metrics(dec, secret)["mse"]


def test_identification_beats_chance_and_fails_on_identical_obfnets(split):
    public, secret = split
    nets = [ObfNet2(seed=s, hidden=200).eval() for s in range(3)]
    clf = ObfNetIdentifier(epochs=2, hidden=64, device="cpu").fit(
        ObfNetKnowledge(obfnets=nets, aux_images=public[:500])
    )
    truth = torch.arange(len(secret)) % 3
    with torch.no_grad():
        observed = torch.stack([nets[int(k)](secret[i : i + 1])[0] for i, k in enumerate(truth)])
    acc = float((torch.from_numpy(clf.identify(observed)) == truth).float().mean())
    assert acc > 0.9
    # control: three copies of one ObfNet cannot be told apart (chance is 1/3)
    same = [nets[0]] * 3
    clf = ObfNetIdentifier(epochs=2, hidden=64, device="cpu").fit(
        ObfNetKnowledge(obfnets=same, aux_images=public[:500])
    )
    with torch.no_grad():
        obs_same = nets[0](secret)
    acc_same = float((torch.from_numpy(clf.identify(obs_same)) == truth).float().mean())
    assert acc_same < 0.55


def test_mixture_query_uses_every_obfnet():
    nets = [ObfNet1(seed=s).eval() for s in range(3)]
    x = torch.rand(60, 1, 28, 28)
    out = mixture_query(nets, seed=0)(x)
    with torch.no_grad():
        per = torch.stack([n(x) for n in nets])  # (3, N, ...)
    match = (per - out).flatten(2).abs().amax(2) < 1e-5  # (3, N)
    assert (match.sum(0) == 1).all() and (match.sum(1) > 0).all()


def test_attack_receives_only_its_threat_model(split):
    public, secret = split
    net = ObfNet1(seed=0).eval()
    know = ObfNetKnowledge(obfnets=[net], aux_images=public[:50])
    with pytest.raises(ThreatModelError, match="labels"):  # the coordinator never sees them
        ObfNetInversion(epochs=1).run(
            Observation(activations=secret[:2], labels=torch.zeros(2)), know
        )
    with pytest.raises(ThreatModelError, match="obfnets"):
        ObfNetInversion(epochs=1).run(
            Observation(activations=secret[:2]), ObfNetKnowledge(aux_images=public[:50])
        )
    with pytest.raises(ValueError, match="method"):
        ObfNetInversion(method="magic")  # type: ignore[arg-type]
