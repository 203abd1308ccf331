"""The attack harness of the PGSL experiments: gradient and activation inversion per defence.

Each attack receives exactly its threat model's :class:`~medshield.attacks.privacy.Observation`
and :class:`~medshield.attacks.privacy.Knowledge`:

* DLG, iDLG: the gradient of one training example's loss w.r.t. the device half and the
  server path its gradient comes from (for PGSL: the fused stream), and that model; the
  reconstruction is of the device input, mapped back to an image by PGSL's up-sampling.
  We optimise with Adam (``dlg_optimizer``), which beats the paper's L-BFGS on these
  ReLU/BatchNorm networks; both stall far from the image on the trained models;
* Inverting Gradients (Geiping et al. 2020; not in the paper): the same observation, cosine
  matching with a total-variation prior measured on the up-sampled image: the strongest
  gradient attacker of this threat model, which succeeds where DLG fails;
* DCGAN prior: the same gradients, plus the adversary's auxiliary images; it searches raw
  images (the generator's output is fed through the clean down-sampling);
* decoder inversion (MIA): the cut-layer activations, with query access to the device (the
  paper's attacker queries the undefended device half; the defence-aware one queries the
  device as deployed, defence included);
* white-box inversion (rMLE, He et al. 2019; not in the paper): the cut-layer activations and
  the device half's weights, which the split-learning server relays between devices' turns
  (for the noise defence: the weights without the noise draws).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medshield.attacks.privacy import (
    DLG,
    IDLG,
    DecoderInversion,
    GANInversion,
    InvertingGradients,
    Knowledge,
    Observation,
    WhiteBoxInversion,
    observe_gradients,
    reconstruction_metrics,
)
from medshield.defenses.pgsl import rpca, upsample
from medshield.experiments.pgsl_common import (
    ImageData,
    PGSLSettings,
    SplitModel,
    batched,
    clean_input,
)

__all__ = ["AttackOutcome", "recover_images", "gradient_attacks", "decoder_attack",
           "whitebox_attack", "fit_gan_prior", "CleanAdapter"]

Judge = Callable[[Tensor], Tensor]  # raw images -> class scores


@dataclass
class AttackOutcome:
    """Mean metrics over the attacked images, and the reconstructions."""

    metrics: dict[str, float]
    reconstructions: Tensor
    truth: Tensor
    info: dict[str, Any] = field(default_factory=dict)


def recover_images(x: Tensor, mu: float, iters: int = 50) -> Tensor:
    """PGSL's proximal-gradient recovery applied to images ``(N, C, H, W)`` (one matrix each).

    Float32 with Gram-matrix thresholding (exact for every singular value above about
    ``3e-4 s_max``, far below the threshold ``mu / 2`` times the image's RMS entry)
    and a relative tolerance of 1e-4. ``mu`` is relative to each image's scale
    (:func:`~medshield.defenses.pgsl.rpca.matrix_scale`).
    """
    n, c, h, w = x.shape
    out = rpca(x.reshape(n * c, h, w).float(), mu=mu, max_iter=iters, tol=1e-4, method="apg",
               svd="gram")
    return out.low_rank.reshape(n, c, h, w).clamp(0, 1)


def _score(rec: Tensor, truth: Tensor, labels: Tensor, judge: Judge | None,
           recovered: Tensor | None = None) -> dict[str, float]:
    m = reconstruction_metrics(rec, truth, labels=labels, recovered_labels=recovered)
    if judge is not None:
        pred = judge(rec.clamp(0, 1)).argmax(1)
        m["classifier_accuracy"] = float((pred == labels).float().mean())
    return m


def _image_part(t: Tensor) -> Tensor:
    """The image inside a device input ``(N, 4C+1, H/2, W/2)`` (PGSL's up-sampling)."""
    return upsample(t)[0]


class CleanAdapter(nn.Module):
    """Raw images -> the device input layout (clean down-sampling, zero map)."""

    def forward(self, x: Tensor) -> Tensor:
        return clean_input(x)


def fit_gan_prior(data: ImageData, cfg: PGSLSettings, opts: Any) -> GANInversion:
    """A DCGAN prior trained on the adversary's auxiliary images (once per dataset)."""
    attack = GANInversion(gan_epochs=cfg.gan_epochs, candidates=cfg.gan_candidates, restarts=1,
                          iterations=cfg.gan_iters, lr=0.1, device=opts.device, seed=opts.seed)
    attack.fit_prior(Knowledge(aux_images=data.x_aux))
    return attack


def gradient_attacks(
    model: SplitModel,
    data: ImageData,
    cfg: PGSLSettings,
    gan: GANInversion | None,
    *,
    judge: Judge | None,
    recover_mu: float | None = None,
    seed: int = 0,
) -> dict[str, AttackOutcome]:
    """DLG, iDLG, Inverting Gradients and the DCGAN prior against one gradient per secret
    test image.

    With ``recover_mu``, the adversary also applies PGSL's recovery (robust PCA with that
    :math:`\\mu`) to its reconstructions ("Ours (...)" rows); the raw reconstructions are
    returned as well under ``"<attack>/raw"``.
    """
    dev = next(model.device_core.parameters()).device
    replay = model.gradient_model().to(dev)  # what the adversary knows (no defence randomness)
    observed_model = model.gradient_model(with_defence=True).to(dev)
    x_all = data.x_test[: cfg.n_grad_images]
    y_all = data.y_test[: cfg.n_grad_images]
    recs: dict[str, list[Tensor]] = {"DLG": [], "iDLG": [], "IG": [], "DCGAN": []}
    labels: dict[str, list[Tensor]] = {k: [] for k in recs}
    for i in range(len(x_all)):
        x, y = x_all[i : i + 1], y_all[i : i + 1]
        t = model.prepare(x, y).to(dev)
        grads = observe_gradients(observed_model, t, y.to(dev))
        know = Knowledge(model=replay, input_shape=tuple(t.shape[1:]))
        opt = {"iterations": cfg.dlg_iters, "optimizer": cfg.dlg_optimizer, "lr": cfg.dlg_lr,
               "seed": seed + i}
        ig = InvertingGradients(iterations=cfg.ig_iters, tv=cfg.ig_tv, seed=seed + i,
                                image_of=_image_part)
        for name, attack in (("DLG", DLG(**opt)), ("iDLG", IDLG(**opt)), ("IG", ig)):
            res = attack.run(Observation(gradients=grads), know)
            recs[name].append(upsample(res.reconstruction.clamp(0, 1))[0])
            labels[name].append(res.labels if res.labels is not None else y)
        if gan is not None:
            raw_model = nn.Sequential(CleanAdapter(), replay)
            gan_grads = {f"1.{k}": v for k, v in grads.items()}
            res = gan.run(Observation(gradients=gan_grads),
                          Knowledge(model=raw_model, input_shape=tuple(x.shape[1:]),
                                    aux_images=data.x_aux))
            recs["DCGAN"].append(res.reconstruction)
            labels["DCGAN"].append(res.labels if res.labels is not None else y)
    out: dict[str, AttackOutcome] = {}
    for name, parts in recs.items():
        if not parts:
            continue
        rec = torch.cat(parts)
        got = torch.cat(labels[name]).cpu()
        if recover_mu is not None:
            out[f"{name}/raw"] = AttackOutcome(_score(rec, x_all, y_all, judge, got), rec, x_all)
            rec = recover_images(rec, recover_mu)
        out[name] = AttackOutcome(_score(rec, x_all, y_all, judge, got), rec, x_all)
    return out


def decoder_attack(
    model: SplitModel,
    data: ImageData,
    cfg: PGSLSettings,
    opts: Any,
    *,
    aware: bool,
    judge: Judge | None,
) -> AttackOutcome:
    """Black-box model inversion (He et al. 2019) of the activations of secret test images.

    ``aware=False``: the paper's attacker, whose queries reach the undefended device half
    (clean down-sampled images, no noise); ``aware=True``: the queries go through the deployed
    device, defence included (PGSL's pixel attack with the surrogate's labels, noise ...).
    """
    x = data.x_test[: cfg.n_mia_images]
    y = data.y_test[: cfg.n_mia_images]
    core = model.device_core.eval()
    dev = next(core.parameters()).device

    if aware:
        def query(imgs: Tensor) -> Tensor:
            return model.wire(imgs)
    else:
        @torch.no_grad()
        def query(imgs: Tensor) -> Tensor:
            return batched(lambda t: core(clean_input(t).to(dev)).cpu(), imgs)

    attack = DecoderInversion(epochs=cfg.decoder_epochs, batch_size=64, lr=2e-3,
                              width=cfg.decoder_width, device=opts.device, seed=opts.seed)
    res = attack.run(Observation(activations=model.wire(x, y)),
                     Knowledge(aux_images=data.x_aux, aux_labels=data.y_aux, query=query,
                               defence=model.kind if aware else None))
    return AttackOutcome(_score(res.reconstruction, x, y, judge), res.reconstruction, x,
                         info={"decoder_train_mse": res.info.get("decoder_train_mse")})


def whitebox_attack(model: SplitModel, data: ImageData, cfg: PGSLSettings, *,
                    judge: Judge | None) -> AttackOutcome:
    """White-box inversion (He et al. 2019, rMLE) of the activations of secret test images
    through the device half's known weights; the reconstruction's image part is scored."""
    x = data.x_test[: cfg.n_mia_images]
    y = data.y_test[: cfg.n_mia_images]
    attack = WhiteBoxInversion(iterations=cfg.wb_iters, tv=cfg.wb_tv, image_of=_image_part)
    res = attack.run(Observation(activations=model.wire(x, y)),
                     Knowledge(model=model.device_core,
                               input_shape=tuple(clean_input(x[:1]).shape[1:])))
    rec = _image_part(res.reconstruction).clamp(0, 1)
    return AttackOutcome(_score(rec, x, y, judge), rec, x,
                         info={"relative_residual": res.info["relative_residual"]})


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())
