"""The ObfNet study behind ``medshield reproduce obfnet`` and the demo section.

One function per step, each returning JSON-serialisable dicts:

1. :func:`train_scheme` -- the coordinator's side of Zheng et al. 2019 (section 3.3): LeNet on
   the training split, then ObfNet1 and K ObfNet2-x trained in front of the frozen LeNet;
   test accuracy of each, and of a voluntary mixed stream (some samples raw, the rest through
   a randomly chosen ObfNet2).
2. :func:`attack_scheme` -- beyond the paper: what the honest-but-curious coordinator recovers
   (inverse decoder and white-box optimisation) from held-out test images it never saw,
   against the trivial attackers; and how well it identifies the ObfNet used, against K.

Settings per mode are :data:`SETTINGS` (``fast``: seconds, for tests; ``quick``: minutes on
two CPU cores; ``full``: the paper's K = 10, longer training).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medshield.attacks.privacy.obfnet_inversion import (
    ObfNetIdentifier,
    ObfNetInversion,
    ObfNetKnowledge,
    mean_image_baseline,
    mixture_query,
)
from medshield.attacks.privacy.result import reconstruction_metrics
from medshield.data import ArraySplit, SplitDataset
from medshield.defenses.obfnet import Coordinator, Participant
from medshield.experiments.base import RunOptions
from medshield.models import MODELS, count_parameters
from medshield.runtime import seed_everything
from medshield.training import fit

__all__ = [
    "StudySettings",
    "SETTINGS",
    "Scheme",
    "train_scheme",
    "attack_scheme",
    "display",
    "subset",
]


@dataclass(frozen=True)
class StudySettings:
    """How much of the study to run (see :data:`SETTINGS`)."""

    lenet_epochs: int
    obf_epochs: int
    k: int  # number of ObfNet2-x
    max_train: int | None = None  # training images (LeNet and ObfNets); None: all
    max_test: int | None = None
    batch_size: int = 128
    lenet_lr: float = 2e-3
    obf_lr: float = 1e-3
    p_raw: float = 0.3  # voluntary stream: share of samples sent raw
    public: int = 5000  # the coordinator's public images (from the training split)
    attacked: int = 500  # held-out test images attacked
    decoder_epochs: int = 6
    decoder_hidden: int = 512
    opt_images: int = 100  # images also attacked by white-box optimisation
    opt_steps: int = 100
    identify_ks: tuple[int, ...] = (2, 3)
    identify_epochs: int = 3


SETTINGS: dict[str, StudySettings] = {
    "fast": StudySettings(
        lenet_epochs=2,
        obf_epochs=1,
        k=2,
        max_train=320,
        max_test=200,
        batch_size=32,
        public=200,
        attacked=32,
        decoder_epochs=1,
        decoder_hidden=64,
        opt_images=4,
        opt_steps=3,
        identify_ks=(2,),
        identify_epochs=1,
    ),
    "quick": StudySettings(
        lenet_epochs=3,
        obf_epochs=1,
        k=3,
        batch_size=64,
        lenet_lr=1e-3,
        public=5000,
        attacked=500,
        decoder_epochs=6,
        opt_images=100,
        opt_steps=100,
        identify_ks=(2, 3),
    ),
    "full": StudySettings(
        lenet_epochs=10,
        obf_epochs=10,
        k=10,
        batch_size=64,
        lenet_lr=1e-3,
        public=10000,
        attacked=1000,
        decoder_epochs=20,
        decoder_hidden=1024,
        opt_images=500,
        opt_steps=300,
        identify_ks=(2, 3, 5, 10),
        identify_epochs=5,
    ),
}


def subset(split: ArraySplit, n: int | None, seed: int) -> ArraySplit:
    """A seeded random subset of ``n`` samples (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return split.subset(idx)


def display(x: torch.Tensor) -> list[list[list[float]]]:
    """Images ``(N, 1, H, W)`` min-max scaled per image to [0, 1], as nested lists (figures)."""
    flat = x.detach().float().cpu().flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scaled = ((flat - lo) / (hi - lo).clamp_min(1e-8)).view(len(x), *x.shape[2:])
    return [img.tolist() for img in scaled]


@dataclass
class Scheme:
    """The trained scheme: the coordinator (LeNet + ObfNets) and what was measured."""

    coordinator: Coordinator
    data: SplitDataset
    train: ArraySplit
    test: ArraySplit
    report: dict[str, Any]

    @property
    def obfnet2(self) -> list[nn.Module]:
        return [n for name, n in self.coordinator.obfnets.items() if name.startswith("ObfNet2")]


def train_scheme(data: SplitDataset, cfg: StudySettings, opts: RunOptions) -> Scheme:
    """LeNet, then ObfNet1 and ObfNet2-0 ... ObfNet2-(K-1) in front of it; test accuracies.

    The voluntary stream draws the participant's choice from a seeded generator so that the
    run is reproducible (a deployment leaves ``Participant(seed=None)``: OS randomness).
    """
    seed_everything(opts.seed)
    train = subset(data.train, cfg.max_train, opts.seed)
    test = subset(data.test, cfg.max_test, opts.seed + 1)
    n_cls = data.info.num_classes
    lenet = MODELS.create(
        "lenet5", num_classes=n_cls, in_channels=data.info.shape[0], seed=opts.seed
    )
    t0 = time.perf_counter()
    hist = fit(
        lenet,
        train.loader(batch_size=cfg.batch_size, shuffle=True, seed=opts.seed),
        epochs=cfg.lenet_epochs,
        lr=cfg.lenet_lr,
        device=opts.device,
        seed=opts.seed,
        progress=opts.progress,
    )
    lenet_s = time.perf_counter() - t0
    coord = Coordinator(lenet, device=opts.device)
    test_loader = test.loader(batch_size=512)
    raw = coord.evaluate(test_loader)
    runs: dict[str, Any] = {
        "LeNet": {"test": raw, "seconds": lenet_s, "train_accuracy": hist.train_accuracy}
    }
    names = ["ObfNet1"] + [f"ObfNet2-{x}" for x in range(cfg.k)]
    for i, name in enumerate(names):
        net = MODELS.create(
            "obfnet1" if name == "ObfNet1" else "obfnet2",
            input_shape=tuple(data.info.shape),
            seed=opts.seed + 101 + i,
        )
        t0 = time.perf_counter()
        h = coord.add_obfnet(
            name,
            net,
            train.loader(batch_size=cfg.batch_size, shuffle=True, seed=opts.seed + i),
            epochs=cfg.obf_epochs,
            lr=cfg.obf_lr,
            seed=opts.seed + i,
            progress=opts.progress,
        )
        runs[name] = {
            "test": coord.evaluate(test_loader, obfuscate=net),
            "seconds": time.perf_counter() - t0,
            "train_accuracy": h.train_accuracy,
            "parameters": count_parameters(net),
        }
    released = coord.release()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # seeded on purpose: reproducible runs
        device = Participant(released[1:], p_raw=cfg.p_raw, seed=opts.seed)
    x, y = test.tensors()
    sent, choice = device.obfuscate(x)
    labels, _ = coord.classify(sent)
    runs["voluntary"] = {
        "accuracy": float((labels == y.numpy()).mean()),
        "raw_share": float((choice < 0).mean()),
        "p_raw": cfg.p_raw,
        "n": len(y),
    }
    report = {
        "dataset": data.info.name,
        "source": data.info.source,
        "origin": data.info.origin,
        "n_train": len(train),
        "n_test": len(test),
        "classes": list(data.info.classes),
        "settings": dataclasses.asdict(cfg),
        "runs": runs,
    }
    return Scheme(coordinator=coord, data=data, train=train, test=test, report=report)


def _inversion_rows(
    label: str,
    nets: list[nn.Module],
    public: torch.Tensor,
    secret: torch.Tensor,
    cfg: StudySettings,
    opts: RunOptions,
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Attack the secret images sent through ``nets`` (one of them at random per image)."""
    observed = mixture_query(nets, seed=opts.seed + 7)(secret)  # the participant's draws
    know = ObfNetKnowledge(obfnets=nets, aux_images=public)
    k = len(nets)
    rows = []

    def row(attacker: str, rec: torch.Tensor, truth: torch.Tensor, **extra: Any) -> None:
        m = reconstruction_metrics(rec, truth)
        rows.append(
            {
                "observed": label,
                "K": k,
                "attacker": attacker,
                "images": len(truth),
                "ssim": m["ssim"],
                "mse": m["mse"],
                "psnr": m["psnr"],
                **extra,
            }
        )

    row("mean public image (trivial)", mean_image_baseline(know, len(secret)), secret)
    row("observed as-is (clipped to [0, 1])", observed.clamp(0, 1), secret)
    attack = ObfNetInversion(
        method="hybrid",
        epochs=cfg.decoder_epochs,
        hidden=cfg.decoder_hidden,
        batch_size=128,
        steps=cfg.opt_steps,
        identify_epochs=cfg.identify_epochs,
        device=opts.device,
        seed=opts.seed,
    ).fit(know)
    saved, attack.method = attack.method, "decoder"
    dec, _ = attack.reconstruct(observed)
    attack.method = saved
    row("inverse decoder (public data)", dec, secret)
    m = min(cfg.opt_images, len(secret))
    hyb, which = attack.reconstruct(observed[:m])
    same = reconstruction_metrics(dec[:m], secret[:m])["ssim"]
    row("decoder + white-box optimisation", hyb, secret[:m], **{"decoder ssim, same images": same})
    return rows, {"observed": observed, "decoder": dec, "hybrid": hyb}


def attack_scheme(scheme: Scheme, cfg: StudySettings, opts: RunOptions) -> dict[str, Any]:
    """Reconstruction (raw, ObfNet1, ObfNet2-0, ObfNet2 one of K) and identification vs K.

    The attacker's public images come from the training split (the coordinator's own data);
    the attacked images are held-out test images it never saw.
    """
    seed_everything(opts.seed)
    public = torch.from_numpy(subset(scheme.train, cfg.public, opts.seed + 3).x).float()
    secret = torch.from_numpy(scheme.test.x[: cfg.attacked]).float()
    nets = scheme.coordinator.release()
    obf1, obf2 = nets[0], nets[1:]
    raw_m = reconstruction_metrics(secret, secret)
    rows: list[dict[str, Any]] = [
        {
            "observed": "raw (participant opts out)",
            "K": 0,
            "attacker": "reads the sample",
            "images": len(secret),
            "ssim": raw_m["ssim"],
            "mse": raw_m["mse"],
            "psnr": raw_m["psnr"],
        }
    ]
    recon: dict[str, Any] = {}
    t0 = time.perf_counter()
    for label, group in (
        ("ObfNet1", [obf1]),
        ("ObfNet2-0", obf2[:1]),
        (f"ObfNet2, one of {len(obf2)}", obf2),
    ):
        if label.startswith("ObfNet2, one") and len(obf2) < 2:
            continue
        r, imgs = _inversion_rows(label, group, public, secret, cfg, opts)
        rows.extend(r)
        recon[label] = imgs
    invert_s = time.perf_counter() - t0
    ident = []
    t0 = time.perf_counter()
    for k in cfg.identify_ks:
        if k > len(obf2):
            continue
        group = obf2[:k]
        know = ObfNetKnowledge(obfnets=group, aux_images=public)
        clf = ObfNetIdentifier(epochs=cfg.identify_epochs, device=opts.device, seed=opts.seed).fit(
            know
        )
        truth = torch.randint(k, (len(secret),), generator=torch.Generator().manual_seed(k))
        observed = torch.empty_like(secret)
        for j in range(k):
            idx = (truth == j).nonzero().view(-1)
            with torch.no_grad():
                observed[idx] = group[j](secret[idx]).float()
        guess = clf.identify(observed)
        ident.append(
            {
                "K": k,
                "accuracy": float((guess == truth.numpy()).mean()),
                "chance": 1.0 / k,
                "images": len(secret),
            }
        )
    return {
        "rows": rows,
        "identification": ident,
        "images": recon,
        "secret": secret,
        "public": len(public),
        "seconds": {"inversion": invert_s, "identification": time.perf_counter() - t0},
    }
