"""``medshield reproduce pgsl``: PGSL's figure 3 and tables I-II beside ours, plus a frontier.

Per dataset (MNIST; MIAS when present, else BreastMNIST) the experiment trains, with the real
split-learning protocol, an undefended split network, one with Laplace noise on the
activations (Titcombe et al., the paper's "[8]") and PGSL, then

* **Fig. 3** - recovery MSE of PGSL's proximal gradient on pixel-attacked test images for
  :math:`\\mu = 0.05, 0.15, \\dots, 0.95` (the paper picks 0.55);
* **Table I** - reconstruction MSE of DLG, iDLG, the DCGAN prior and the decoder inversion
  (MIA) against each model; "JSMA + X" attacks PGSL's traffic, "Ours (X)" adds PGSL's own
  recovery to the adversary's reconstruction, "[8] + X" attacks the noised model;
* **Table II** - accuracy under JSMA, C&W, BIM and FGSM (crafted on the device's surrogate
  classifier and transferred to the undefended split model), of a classifier on the gradient
  attacks' reconstructions, of PGSL's three streams and of its fused decision;
* **beyond the paper** (:mod:`medshield.experiments.pgsl_frontier`) - task accuracy against
  reconstruction SSIM for no defence, noise at several scales, NoPeek at several weights and
  PGSL, under the strongest decoder attacker (the paper's, or one trained on defended
  activations).

Reading the MSE columns: for privacy, *higher* reconstruction MSE (lower SSIM) is better.
The paper's "Ours" rows are lower than its "JSMA +" rows, i.e. PGSL's recovery brings a
reconstruction *closer* to the raw image; we report the same quantities and say so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from medshield.attacks.evasion import BIM, CW, FGSM, JSMA
from medshield.defenses.pgsl import PGSLTransform
from medshield.experiments import pgsl_paper as paper
from medshield.experiments.base import EXPERIMENTS, RunOptions
from medshield.experiments.pgsl_attacks import (
    AttackOutcome,
    decoder_attack,
    fit_gan_prior,
    gradient_attacks,
    recover_images,
    whitebox_attack,
)
from medshield.experiments.pgsl_common import (
    SETTINGS,
    ImageData,
    PGSLSettings,
    SplitModel,
    batched,
    load_images,
    log,
    train_split,
    train_surrogate,
)
from medshield.models.base import eval_mode
from medshield.results import FigureSpec, ResultsFile, Section
from medshield.runtime import seed_everything

__all__ = ["run_pgsl", "run_dataset", "mu_sweep"]

PAPER_MU = 0.55
#: the gradient attacks of Table I: the paper's three and Inverting Gradients (Geiping et al.
#: 2020), the critic's strongest attacker of the same threat model
GRADIENT_ATTACKS = ("DLG", "iDLG", "DCGAN", "IG")
#: white-box inversion of the activations (He et al. 2019): the server knows the device half
WHITE_BOX = "rMLE (white-box)"


def _paper(table: dict[str, tuple[float, float]], row: str, key: str) -> float | None:
    cols = table.get(row)
    if cols is None:
        return None
    return cols[1] if key == "MNIST" else cols[0]


def _paper_dataset(key: str) -> str:
    return "MNIST" if key == "MNIST" else "MIAS"


def mu_sweep(x: torch.Tensor, x_attacked: torch.Tensor, grid: list[float]) -> dict[str, Any]:
    """Fig. 3: MSE between PGSL's recovery of the attacked images and the originals, per mu."""
    mses = [float((recover_images(x_attacked, mu) - x).pow(2).mean()) for mu in grid]
    return {"mu": grid, "mse": mses, "attacked_mse": float((x_attacked - x).pow(2).mean()),
            "best_mu": grid[int(np.argmin(mses))]}


def _accuracy(scores: torch.Tensor, y: torch.Tensor) -> float:
    return float((scores.argmax(1) == y).float().mean())


def _table1_rows(key: str, label: str, outcomes: dict[str, AttackOutcome]) -> list[dict[str, Any]]:
    rows = []
    for name, out in outcomes.items():
        m = out.metrics
        rows.append({
            "method": name, "dataset": label, "paper dataset": _paper_dataset(key),
            "paper": _paper(paper.TABLE_I, name, key), "ours": m["mse"],
            "psnr (dB)": m["psnr"], "ssim": m["ssim"],
            "label recovery": m.get("label_recovery"),
            "classifier accuracy on reconstructions": m.get("classifier_accuracy"),
            "images": int(out.truth.shape[0]),
        })
    return rows


class _SplitPipeline(torch.nn.Module):
    """Raw images -> logits of a trained split model end to end (its device input layout,
    device half and server path): what a white-box evasion attacker differentiates."""

    def __init__(self, model: SplitModel) -> None:
        super().__init__()
        self.net = model.gradient_model()
        self.prepare = model.prepare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x, None))  # type: ignore[no-any-return]


def _evasion_attacks(model: torch.nn.Module, cfg: PGSLSettings, d: int) -> dict[str, Any]:
    """Table II's four attacks on ``model`` (the JSMA with the device's pixel budget)."""
    return {
        "JSMA": JSMA(model, theta=1.0, gamma=min(1.0, (cfg.max_pixels + 1e-9) / d)),
        "C&W": CW(model, c=1.0, steps=cfg.cw_steps, binary_search_steps=1, lr=0.05),
        "BIM": BIM(model, eps=0.1, alpha=0.01, steps=10),
        "FGSM": FGSM(model, eps=0.1),
    }


def _evasion_rows(key: str, label: str, data: ImageData, cfg: PGSLSettings,
                  vanilla: SplitModel, surrogate: torch.nn.Module,
                  jsma_images: torch.Tensor) -> list[dict[str, Any]]:
    """Accuracy of the undefended split model under Table II's attacks, crafted two ways:
    on the device's surrogate and transferred (``ours``), and white-box on the split model
    itself, the critic's attacker who knows the whole network (``ours (white-box)``)."""
    n = cfg.n_attack_eval
    x, y = data.x_test[:n], data.y_test[:n]
    dev = next(surrogate.parameters()).device
    d = x[0].numel()
    transferred: dict[str, Any] = _evasion_attacks(surrogate, cfg, d)
    transferred["JSMA"] = jsma_images[:n]  # the device's own pixel attack (PGSLTransform)
    pipeline = _SplitPipeline(vanilla).to(dev)
    whitebox = _evasion_attacks(pipeline, cfg, d)

    def accuracy_under(attack: Any) -> float:
        if isinstance(attack, torch.Tensor):
            x_adv = attack
        else:
            with eval_mode(pipeline):  # the deployed network: BatchNorm on running statistics
                x_adv = batched(lambda a, b, att=attack: att(a.to(dev), b.to(dev)).cpu(), x, y)
        return 100 * _accuracy(vanilla.scores(x_adv), y)

    rows = [{"method": "clean (undefended split model)", "dataset": label,
             "paper dataset": _paper_dataset(key), "paper": None,
             "ours": 100 * _accuracy(vanilla.scores(x), y),
             "ours (white-box)": None, "images": n}]
    for name, attack in transferred.items():
        rows.append({"method": name, "dataset": label, "paper dataset": _paper_dataset(key),
                     "paper": _paper(paper.TABLE_II, name, key),
                     "ours": accuracy_under(attack),
                     "ours (white-box)": accuracy_under(whitebox[name]), "images": n,
                     "note": "ours: crafted on the device's surrogate, transferred; white-box: "
                             "crafted on the split model itself"})
    return rows


def run_dataset(data: ImageData, cfg: PGSLSettings, opts: RunOptions) -> dict[str, Any]:
    """Everything the paper reports for one dataset; returns rows, figures' data and models."""
    seed_everything(opts.seed)
    t0 = time.perf_counter()
    key, label = data.key, data.label
    log(opts, f"{label}: {len(data.x_train)} train / {len(data.x_aux)} aux / "
              f"{len(data.x_test)} test images")
    surrogate = train_surrogate(data, cfg, opts.seed, opts.device)
    vanilla = train_split("vanilla", data, cfg, opts)
    noise = train_split("noise", data, cfg, opts, noise_scale=cfg.noise_scale)
    pgsl = train_split("pgsl", data, cfg, opts, surrogate=surrogate)

    def judge(imgs: torch.Tensor) -> torch.Tensor:
        return vanilla.scores(imgs)

    # --- Fig. 3: the mu sweep on pixel-attacked test images (before down-sampling)
    transform = PGSLTransform(surrogate, max_pixels=cfg.max_pixels)
    n_eval = max(cfg.n_attack_eval, cfg.n_grad_images)
    x_eval = data.x_test[:n_eval]
    dev = next(surrogate.parameters()).device
    x_att = batched(lambda a: transform.attack(a.to(dev))[0].cpu(), x_eval)
    m = min(64, len(x_eval), 8 if opts.mode == "fast" else 64)
    sweep = mu_sweep(x_eval[:m], x_att[:m], list(paper.FIG3["mu_grid"]))  # type: ignore[arg-type]

    log(opts, f"mu sweep done (best mu {sweep['best_mu']})")
    # --- Table I: gradient attacks (one example each) and decoder inversion
    gan = fit_gan_prior(data, cfg, opts)
    log(opts, "DCGAN prior trained")
    t1: dict[str, AttackOutcome] = {}
    t1.update(gradient_attacks(vanilla, data, cfg, gan, judge=judge, seed=opts.seed))
    t1["MIA"] = decoder_attack(vanilla, data, cfg, opts, aware=False, judge=judge)
    t1[WHITE_BOX] = whitebox_attack(vanilla, data, cfg, judge=judge)
    on_pgsl = gradient_attacks(pgsl, data, cfg, gan, judge=judge, recover_mu=PAPER_MU,
                               seed=opts.seed)
    for name in GRADIENT_ATTACKS:
        t1[f"JSMA + {name}"] = on_pgsl[f"{name}/raw"]
    t1["JSMA + MIA"] = decoder_attack(pgsl, data, cfg, opts, aware=False, judge=judge)
    t1["JSMA + MIA (defence-aware)"] = decoder_attack(pgsl, data, cfg, opts, aware=True,
                                                      judge=judge)
    t1[f"JSMA + {WHITE_BOX}"] = whitebox_attack(pgsl, data, cfg, judge=judge)
    for name, out in gradient_attacks(noise, data, cfg, gan, judge=judge, seed=opts.seed).items():
        t1[f"[8] + {name}"] = out
    t1["[8] + MIA"] = decoder_attack(noise, data, cfg, opts, aware=False, judge=judge)
    t1["[8] + MIA (defence-aware)"] = decoder_attack(noise, data, cfg, opts, aware=True,
                                                     judge=judge)
    t1[f"[8] + {WHITE_BOX}"] = whitebox_attack(noise, data, cfg, judge=judge)
    for name in GRADIENT_ATTACKS:
        t1[f"Ours ({name})"] = on_pgsl[name]

    log(opts, "Table I attacks done")
    # --- Table II: evasion attacks, reconstructions, PGSL's streams
    t2 = _evasion_rows(key, label, data, cfg, vanilla, surrogate, x_att)
    for name in GRADIENT_ATTACKS:
        out = t1[name]
        t2.append({"method": name, "dataset": label, "paper dataset": _paper_dataset(key),
                   "paper": _paper(paper.TABLE_II, name, key),
                   "ours": 100 * out.metrics.get("classifier_accuracy", float("nan")),
                   "images": int(out.truth.shape[0]),
                   "note": "undefended model's accuracy on the attack's reconstructions"})
    n = cfg.n_attack_eval
    streams = pgsl.stream_scores(data.x_test[:n])  # labels unknown at test: surrogate's
    for name, k in (("S_r", "r"), ("S_f", "f"), ("S_a", "a"), ("PGSL", "pgsl")):
        t2.append({"method": name, "dataset": label, "paper dataset": _paper_dataset(key),
                   "paper": _paper(paper.TABLE_II, name, key),
                   "ours": 100 * _accuracy(streams[k], data.y_test[:n]), "images": n,
                   "note": "PGSL pipeline on test images (pixel attack with the surrogate's "
                           "labels)"})

    cost = {m.kind: {"seconds": round(m.seconds, 2),
                     "bytes_per_sample": round(m.run.bytes_per_sample(), 1),
                     "final_train_loss": m.run.history.train_loss[-1]}
            for m in (vanilla, noise, pgsl)}
    return {
        "key": key, "label": label, "sweep": sweep, "table1": _table1_rows(key, label, t1),
        "table2": t2, "outcomes": t1, "models": {"vanilla": vanilla, "noise": noise,
                                                  "pgsl": pgsl, "surrogate": surrogate},
        "attacked": x_att, "cost": cost, "seconds": time.perf_counter() - t0, "data": data,
    }


def _image_figure(part: dict[str, Any], k: int = 3) -> FigureSpec:
    """Fig. 4's layout: original, attacked, DCGAN, DLG, DCGAN + PG, DLG + PG."""
    t1 = part["outcomes"]
    rows, labels = [], []
    cols = [("original", t1["DLG"].truth), ("attacked (PGSL device)", part["attacked"]),
            ("DCGAN", t1["DCGAN"].reconstructions), ("DLG", t1["DLG"].reconstructions),
            ("Inverting Gradients", t1["IG"].reconstructions),
            ("IG on PGSL (JSMA + IG)", t1["JSMA + IG"].reconstructions),
            ("DCGAN on PGSL + PG", t1["Ours (DCGAN)"].reconstructions),
            ("DLG on PGSL + PG", t1["Ours (DLG)"].reconstructions),
            ("MIA decoder", t1["MIA"].reconstructions),
            ("MIA on PGSL, defence-aware", t1["JSMA + MIA (defence-aware)"].reconstructions),
            ("white-box on PGSL", t1[f"JSMA + {WHITE_BOX}"].reconstructions)]
    for name, imgs in cols:
        labels.append(name)
        rows.append([imgs[i].clamp(0, 1).numpy().tolist() for i in range(min(k, len(imgs)))])
    return FigureSpec(id=f"reconstructions_{part['key'].lower()}", kind="images",
                      title=f"{part['label']}: reconstructions (cf. the paper's Fig. 4)",
                      images=rows, row_labels=labels)


def run_pgsl(opts: RunOptions, *, frontier: bool = True) -> ResultsFile:
    """Run the PGSL reproduction in ``opts.mode`` and return its results."""
    threads_before = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run_pgsl(opts, frontier)
    finally:
        torch.set_num_threads(threads_before)


def _run_pgsl(opts: RunOptions, frontier: bool) -> ResultsFile:
    from medshield.experiments.pgsl_frontier import frontier_part

    cfg = SETTINGS[opts.mode]
    res = ResultsFile(system="pgsl")
    t1_rows: list[dict[str, Any]] = []
    t2_rows: list[dict[str, Any]] = []
    fig3 = FigureSpec(id="mu_sweep", kind="line", x=list(paper.FIG3["mu_grid"]),  # type: ignore[arg-type]
                      title="Fig. 3: recovery MSE of pixel-attacked test images against mu",
                      xlabel="mu", ylabel="MSE (recovered vs original)")
    sweep_rows = []
    parts = {}
    for which in ("mnist", "medical"):
        data = load_images(which, opts, cfg)
        if data is None:
            res.data["mias"] = "missing"
            res.notes.append("Neither MIAS nor BreastMNIST is in the data directory: the "
                             "medical column was skipped (set MEDSHIELD_DATA).")
            continue
        res.data[data.key.lower()] = data.source  # type: ignore[assignment]
        if data.note:
            res.notes.append(data.note)
        part = run_dataset(data, cfg, opts)
        parts[data.key] = part
        t1_rows += part["table1"]
        t2_rows += part["table2"]
        sw = part["sweep"]
        fig3.series[data.label] = sw["mse"]
        sweep_rows.append({"dataset": data.label, "paper dataset": _paper_dataset(data.key),
                           "measure": "mu with the lowest recovery MSE",
                           "paper": paper.FIG3["best_mu"][_paper_dataset(data.key)],  # type: ignore[index]
                           "ours": sw["best_mu"], "lowest MSE": min(sw["mse"]),
                           "MSE of the attacked image (no recovery)": sw["attacked_mse"]})
        res.figures.append(_image_figure(part))
        res.meta[data.key] = {"cost": part["cost"], "seconds": round(part["seconds"], 1),
                              "n_train": len(data.x_train), "n_test": len(data.x_test),
                              "n_aux": len(data.x_aux)}
    res.tables["fig3_mu_sweep"] = sweep_rows
    res.tables["table1_reconstruction_mse"] = t1_rows
    res.tables["table2_accuracy"] = t2_rows
    res.figures.insert(0, fig3)
    sections = [
        Section(title="PGSL: choosing mu (Fig. 3)", tables=["fig3_mu_sweep"], figures=["mu_sweep"],
                text="Proximal-gradient (robust PCA) recovery of pixel-attacked test images, "
                     "MSE against the original, for each relaxation mu."),
        Section(title="PGSL: reconstruction attacks (Table I)",
                tables=["table1_reconstruction_mse"],
                figures=[f.id for f in res.figures if f.id.startswith("reconstructions_")],
                text="MSE between the adversary's reconstruction and the raw image (images in "
                     "[0, 1]; the paper does not state its scale). Higher is more private. "
                     "Gradient attacks see one example's gradient of the device half and the "
                     "server path (whole-model gradients; DLG/iDLG optimise with Adam, which "
                     "beats L-BFGS on these ReLU/BatchNorm nets). IG is Inverting Gradients "
                     "(Geiping et al. 2020, not in the paper): cosine gradient matching with a "
                     "total-variation prior, the strongest attacker of that threat model. MIA "
                     "decodes the activations of "
                     "test images with a decoder trained on auxiliary images. 'defence-aware' "
                     "rows train the decoder on defended activations. 'rMLE (white-box)' (He "
                     "et al. 2019, not in the paper) inverts the activations through the device "
                     "half's weights, which the server relays between devices' turns (in clear, "
                     "as in vanilla split learning; with a sealed hand-off, "
                     "medshield.split.HandoffSeal, the server holds no weights and these rows do "
                     "not apply). 'Ours "
                     "(X)' applies PGSL's "
                     "recovery (mu = 0.55) to the reconstruction of 'JSMA + X'."),
        Section(title="PGSL: recognition accuracy (Table II)", tables=["table2_accuracy"],
                text="Accuracy (%). Evasion attacks are crafted on the device's surrogate "
                     "classifier and transferred to the undefended split model; DLG/iDLG/DCGAN "
                     "rows give that model's accuracy on the attacks' reconstructions; S_r, S_f, "
                     "S_a and PGSL are PGSL's streams and fused decision on the test set."),
    ]
    if frontier and "MNIST" in parts:
        log(opts, "privacy-utility frontier")
        fr = frontier_part(parts["MNIST"], opts, cfg)
        res.tables["privacy_utility_frontier"] = fr["rows"]
        res.figures.append(fr["figure"])
        sections.append(Section(title="Beyond the paper: privacy-utility frontier (MNIST)",
                                tables=["privacy_utility_frontier"], figures=[fr["figure"].id],
                                text=fr["text"]))
    res.sections = sections
    res.notes.append(
        f"Mode {opts.mode!r}: {cfg.n_train} training images per dataset, width {cfg.width} "
        f"(the paper: full sets, width 64), {cfg.epochs} epochs ({cfg.small_set_epochs} for a "
        f"set under {cfg.n_train // 2} images), {cfg.devices} devices taking "
        f"turns; gradient attacks on {cfg.n_grad_images} images, decoder on "
        f"{cfg.n_mia_images}. Quick-mode numbers are indicative only.")
    res.meta["settings"] = cfg.__dict__
    return res


@EXPERIMENTS.register("pgsl")
def pgsl_experiment(opts: RunOptions) -> ResultsFile:
    """``medshield reproduce pgsl``: Fig. 3, Tables I-II beside ours, and the frontier."""
    return run_pgsl(opts)
