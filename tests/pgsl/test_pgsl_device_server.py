"""PGSL's device transform (saliency map, pixel attack) and server head, alone and in split learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medshield.defenses.pgsl import PGSLHead, PGSLTransform, pgsl_network, saliency_map, upsample
from medshield.split import SplitDevice, SplitServer, run_in_process

pytestmark = pytest.mark.timeout(60)


def _surrogate(seed: int = 0, side: int = 8, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(side * side, 16), nn.Tanh(), nn.Linear(16, k))


def test_saliency_map_matches_a_per_pixel_reference():
    model = _surrogate()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2])
    for inverted in (False, True):
        ours = saliency_map(model, x, y, inverted=inverted, normalize=False)
        for n in range(3):
            xi = x[n : n + 1].clone().requires_grad_(True)
            jac = torch.autograd.functional.jacobian(lambda t: model(t)[0], xi)[:, 0, 0]  # (K, 8, 8)
            for r in range(8):
                for c in range(8):
                    alpha = float(jac[y[n], r, c])
                    beta = float(jac[:, r, c].sum()) - alpha
                    ok = (alpha < 0 < beta) if inverted else (alpha > 0 > beta)
                    want = -alpha * beta if ok else 0.0
                    assert float(ours[n, 0, r, c]) == pytest.approx(want, abs=1e-7)
    normalised = saliency_map(model, x, y)
    assert float(normalised.max()) == pytest.approx(1.0) and float(normalised.min()) >= 0


def test_pgsl_transform_attacks_few_pixels_and_stacks_the_map():
    model = _surrogate(1)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    transform = PGSLTransform(model, max_pixels=3)
    x_adv, smap = transform.attack(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    changed = (x_adv != x).flatten(1).sum(1)
    assert bool((changed <= 3).all()) and int(changed.sum()) > 0
    out = transform(x, None)  # labels from the surrogate
    assert out.shape == (6, 5, 4, 4)
    image, _ = upsample(out)
    x_adv_pred, _ = transform.attack(x)
    assert torch.equal(image, x_adv_pred)


def test_pgsl_head_sends_only_the_fused_streams_gradient():
    device_half, head = pgsl_network(num_classes=3, image_size=8, width=4, hidden=8,
                                     dropout=0.0, seed=0)
    t = torch.rand(4, 5, 4, 4)
    y = torch.tensor([0, 1, 2, 0])
    act = device_half(t).detach().requires_grad_(True)
    out = head.split_losses(act, y)
    (g_dev,) = torch.autograd.grad(out.to_device, act, retain_graph=True)
    logits = head.stream_logits(act)
    (g_f,) = torch.autograd.grad(F.cross_entropy(logits["f"], y), act)
    torch.testing.assert_close(g_dev, g_f)
    total = sum(F.cross_entropy(v, y) for v in logits.values())
    torch.testing.assert_close(out.total, total)
    # the recovered stream sees no gradient path to the activations
    assert not head.recover(act).requires_grad
    probs = head.predict(act)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))


def test_pgsl_one_backward_pass_equals_the_two_pass_reference():
    """The server's single backward pass (stream a on detached activations) gives the device
    the fused stream's gradient and every parameter the gradient of the summed loss, as the
    obvious reference does: the plain stream logits, one autograd.grad of the fused loss for
    the device, one backward of the sum for the parameters."""
    device_half, head = pgsl_network(num_classes=3, image_size=8, width=4, hidden=8,
                                     dropout=0.0, seed=0, rpca_iters=3)
    t = torch.rand(5, 5, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])
    base = device_half(t).detach()

    act = base.clone().requires_grad_(True)
    out = head.split_losses(act, y)
    assert out.to_device is out.total
    head.zero_grad()
    out.total.backward()
    fast_sent = act.grad.clone()
    fast = {n: p.grad.clone() for n, p in head.named_parameters()}

    act = base.clone().requires_grad_(True)
    logits = head.stream_logits(act)
    losses = {k: F.cross_entropy(v, y) for k, v in logits.items()}
    (ref_sent,) = torch.autograd.grad(losses["f"], act, retain_graph=True)
    head.zero_grad()
    sum(losses.values()).backward()
    torch.testing.assert_close(fast_sent, ref_sent)
    for name, p in head.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, msg=name)
    # and the sent gradient is not the summed loss's (stream a's path is really cut)
    assert not torch.allclose(act.grad, ref_sent)


def test_pgsl_head_layouts_and_stream_width():
    _, head = pgsl_network(num_classes=3, image_size=8, width=4, hidden=8, stream_width=2,
                           layout="maps", rpca_iters=3)
    assert isinstance(head, PGSLHead)
    act = torch.rand(2, 4, 4, 4)
    assert head.recover(act).shape == act.shape
    assert head.predict(act).shape == (2, 3)


def test_pgsl_trains_in_split_learning():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(48, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    device_half, head = pgsl_network(num_classes=2, image_size=8, width=4, hidden=8,
                                     dropout=0.0, seed=0, rpca_iters=5)
    transform = PGSLTransform(_surrogate(2, k=2), max_pixels=2)
    before = [p.detach().clone() for p in device_half.parameters()]
    run = run_in_process(
        SplitServer(head, lr=1e-2, device="cpu"),
        [SplitDevice(device_half, batches, eval_data=batches[:1], transform=transform,
                     lr=1e-2, device="cpu")],
        epochs=3,
    )
    assert run.history.samples == 3 * 48
    assert run.history.train_loss[-1] < run.history.train_loss[0]
    assert any(not torch.equal(b, p) for b, p in zip(before, device_half.parameters(), strict=True))
    assert run.history.eval_accuracy[0] is not None
