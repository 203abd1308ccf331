"""Beyond the PGSL paper: the privacy-utility frontier of split-learning defences.

For no defence, Laplace noise at several scales (Titcombe et al.), NoPeek at several weights
(Vepakomma et al.) and PGSL, on MNIST: the task accuracy of the deployed pipeline against the
SSIM of the best reconstruction of its activations. Three attackers are tried
(``docs/threat-models.md``: report the strongest): the paper's decoder, trained on the
undefended device half's outputs; the defence-aware decoder, trained on the defended device's
outputs (the noise added, the NoPeek-trained weights, PGSL's pixel attack and down-sampling);
and the white-box inversion through the device half's weights, which the split-learning
server relays between turns (He et al. 2019).
"""

from __future__ import annotations

from typing import Any

from medshield.experiments.base import RunOptions
from medshield.experiments.pgsl_attacks import decoder_attack, whitebox_attack
from medshield.experiments.pgsl_common import PGSLSettings, SplitModel, train_split
from medshield.results import FigureSpec

__all__ = ["frontier_part", "frontier_row"]


def frontier_row(name: str, model: SplitModel, part: dict[str, Any], cfg: PGSLSettings,
                 opts: RunOptions) -> dict[str, Any]:
    """Accuracy and reconstruction quality of one defended model under the three attackers."""
    data = part["data"]
    judge = part["models"]["vanilla"].scores
    n = cfg.n_attack_eval
    acc = float((model.scores(data.x_test[:n]).argmax(1) == data.y_test[:n]).float().mean())
    naive = decoder_attack(model, data, cfg, opts, aware=False, judge=judge).metrics
    aware = naive if model.kind == "vanilla" else \
        decoder_attack(model, data, cfg, opts, aware=True, judge=judge).metrics
    white = whitebox_attack(model, data, cfg, judge=judge).metrics
    attackers = {"paper's": naive, "defence-aware": aware, "white-box": white}
    if model.kind == "vanilla":
        del attackers["defence-aware"]  # the same attacker as the paper's
    label, strongest = max(attackers.items(), key=lambda kv: kv[1]["ssim"])
    return {
        "defence": name, "accuracy": acc,
        "ssim (paper's attacker)": naive["ssim"], "ssim (defence-aware)": aware["ssim"],
        "ssim (white-box)": white["ssim"],
        "ssim (strongest)": strongest["ssim"], "mse (strongest)": strongest["mse"],
        "classifier accuracy on reconstructions (strongest)":
            strongest.get("classifier_accuracy"),
        "strongest attacker": label,
        "bytes per sample": round(model.run.bytes_per_sample(), 1),
    }


def frontier_part(part: dict[str, Any], opts: RunOptions, cfg: PGSLSettings) -> dict[str, Any]:
    """Rows, a figure and a caption for the frontier on the dataset of ``part``."""
    data = part["data"]
    models = part["models"]
    rows = [frontier_row("none", models["vanilla"], part, cfg, opts)]
    for scale in cfg.frontier_noise:
        if scale == cfg.noise_scale:
            model = models["noise"]
        else:
            model = train_split("noise", data, cfg, opts, noise_scale=scale,
                                epochs=cfg.frontier_epochs)
        rows.append(frontier_row(f"noise b={scale}", model, part, cfg, opts))
    for weight in cfg.frontier_nopeek:
        model = train_split("nopeek", data, cfg, opts, nopeek_weight=weight,
                            epochs=cfg.frontier_epochs)
        rows.append(frontier_row(f"NoPeek alpha={weight}", model, part, cfg, opts))
    rows.append(frontier_row("PGSL", models["pgsl"], part, cfg, opts))
    fig = FigureSpec(
        id="frontier", kind="scatter", x=[r["ssim (strongest)"] for r in rows],
        series={"defended pipeline": [r["accuracy"] for r in rows]},
        point_labels=[r["defence"] for r in rows],
        title=f"{data.label}: privacy-utility frontier (better: up and left)",
        xlabel="reconstruction SSIM, strongest attacker (lower: more private)",
        ylabel="task accuracy",
    )
    text = ("Task accuracy of each deployed pipeline (test images) against the SSIM of the "
            "best reconstruction of its activations; lower SSIM = more private. "
            "'strongest' is the best of the paper's decoder, the defence-aware decoder and "
            "the white-box inversion through the device half's weights (which the server "
            "relays between devices' turns). "
            f"Models other than the Table I ones train for {cfg.frontier_epochs} epochs.")
    return {"rows": rows, "figure": fig, "text": text}
