"""The ``pgsl`` part of ``medshield demo``: split learning and model inversion on embedded MNIST.

Two devices and a server train PGSL's CNN by split learning (real protocol, in-process
channels), undefended, with Laplace noise on the activations, and with PGSL; a black-box
adversary then trains a decoder on auxiliary digits to invert intercepted activations, once
as in the paper (queries reach the undefended device half) and once knowing the defence.
"""

from __future__ import annotations

from medshield.experiments.base import DEMO_SECTIONS, RunOptions
from medshield.experiments.pgsl_attacks import decoder_attack, whitebox_attack
from medshield.experiments.pgsl_common import (
    SETTINGS,
    load_images,
    train_split,
    train_surrogate,
    with_settings,
)
from medshield.results import FigureSpec, ResultsFile, Section
from medshield.runtime import seed_everything

__all__ = ["pgsl_demo", "demo_settings"]


def demo_settings(mode: str):  # type: ignore[no-untyped-def]
    """Small settings: ``fast`` runs in seconds (tests), ``quick``/``full`` in about a minute."""
    if mode == "fast":
        return SETTINGS["fast"]
    return with_settings(SETTINGS["quick"], n_train=1500, n_test=300, n_aux=800, epochs=2,
                         width=16, hidden=64, n_mia_images=100, decoder_epochs=4,
                         decoder_width=32, n_attack_eval=300, max_pixels=10)


@DEMO_SECTIONS.register("pgsl")
def pgsl_demo(opts: RunOptions) -> ResultsFile:
    """Split learning + decoder inversion with and without defences, on embedded MNIST."""
    seed_everything(opts.seed)
    cfg = demo_settings(opts.mode)
    data = load_images("mnist", opts, cfg, mnist_source="embedded")
    assert data is not None
    surrogate = train_surrogate(data, cfg, opts.seed, opts.device)
    models = {
        "none": train_split("vanilla", data, cfg, opts),
        f"Laplace noise b={cfg.noise_scale}": train_split("noise", data, cfg, opts,
                                                         noise_scale=cfg.noise_scale),
        "PGSL": train_split("pgsl", data, cfg, opts, surrogate=surrogate),
    }
    judge = models["none"].scores
    n = cfg.n_attack_eval
    rows, image_rows, labels = [], [], []
    k = 4
    image_rows.append([data.x_test[i].numpy().tolist() for i in range(k)])
    labels.append("original")
    for name, model in models.items():
        acc = float((model.scores(data.x_test[:n]).argmax(1) == data.y_test[:n]).float().mean())
        naive = decoder_attack(model, data, cfg, opts, aware=False, judge=judge)
        aware = naive if model.kind == "vanilla" else \
            decoder_attack(model, data, cfg, opts, aware=True, judge=judge)
        white = whitebox_attack(model, data, cfg, judge=judge)
        hist = model.run.history
        rows.append({
            "defence": name, "test accuracy": acc,
            "bytes per sample": round(model.run.bytes_per_sample(), 1),
            "rounds (all links)": hist.rounds_total(), "train seconds": round(model.seconds, 2),
            "MIA ssim (paper's attacker)": naive.metrics["ssim"],
            "MIA ssim (defence-aware)": aware.metrics["ssim"],
            "MIA mse (defence-aware)": aware.metrics["mse"],
            "digit recognised in reconstruction (defence-aware)":
                aware.metrics.get("classifier_accuracy"),
            "white-box ssim (server knows the device half)": white.metrics["ssim"],
        })
        image_rows.append([naive.reconstructions[i].clamp(0, 1).numpy().tolist()
                           for i in range(k)])
        labels.append(f"{name}: paper's attacker")
        if model.kind != "vanilla":
            image_rows.append([aware.reconstructions[i].clamp(0, 1).numpy().tolist()
                               for i in range(k)])
            labels.append(f"{name}: defence-aware attacker")
        image_rows.append([white.reconstructions[i].numpy().tolist() for i in range(k)])
        labels.append(f"{name}: white-box inversion")
    res = ResultsFile(system="pgsl-demo", data={"mnist": data.source})  # type: ignore[dict-item]
    res.tables["split_inversion"] = rows
    res.figures = [FigureSpec(id="inversions", kind="images", images=image_rows,
                              row_labels=labels,
                              title="Inversion of cut-layer activations")]
    res.sections = [Section(
        title="Split learning under model inversion: no defence, noise, PGSL",
        text=(f"{len(data.x_train)} embedded MNIST digits, two devices taking turns with one "
              f"server (PGSL CNN of width {cfg.width}, cut after conv2, {cfg.epochs} epochs). "
              f"The adversary trains a decoder on {len(data.x_aux)} auxiliary digits and "
              "decodes intercepted activations of test digits. Lower SSIM = more private; "
              "the defence-aware attacker queries the device with its defence on. The "
              "white-box attacker (He et al. 2019) is the server itself, which relays the "
              "device half's weights between turns and inverts the activations through them "
              "(for noise: without the noise draws)."),
        tables=["split_inversion"], figures=["inversions"])]
    return res
