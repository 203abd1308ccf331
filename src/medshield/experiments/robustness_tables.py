"""The results file of the robustness experiment: the paper's tables beside ours, the
beyond-the-paper tables, figures, sections and notes (built from the measured cells only).

Layout of the paper's tables (one rule for all three): Table I rows carry ``paper`` and
``ours``; Tables II-III rows carry ``paper_clean``/``ours_clean`` and ``paper_<eps>``/
``ours_<eps>`` for each FGSM budget, so each paper number sits beside ours in the same row.
A ``setting`` column says how our number was obtained (weights, epochs, subsets, mode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medshield.experiments.robustness_eval import MASKING_THRESHOLDS, masking_check
from medshield.experiments.robustness_paper import MEDMNIST_BENCHMARK, TABLE_I, TABLE_III
from medshield.results import FigureSpec, ResultsFile, Section

if TYPE_CHECKING:
    from medshield.experiments.robustness import RobustnessConfig

__all__ = ["build_results", "paper_masking_rows", "DEFENCE_LABELS"]

#: Our variant keys -> the labels of the paper's Table III (and of our extra defence).
DEFENCE_LABELS = {"original": "Original", "fgsm-at": "AT", "kd": "KD", "pgd-at": "PGD-AT"}
_PAPER_KEYS = {"original": "original", "fgsm-at": "at", "kd": "kd"}
_NAMES = {"densenet121": "DenseNet121", "mobilenetv2": "MobileNetV2", "resnet50": "ResNet50",
          "breastmnist": "BreastMNIST", "pneumoniamnist": "PneumoniaMNIST",
          "dermamnist": "DermaMNIST", "octmnist": "OCTMNIST"}

Cell = dict[str, Any]


def _nice(name: str) -> str:
    return _NAMES.get(name, name)


def _eps_label(e: float) -> str:
    return "8/255" if abs(e - 8 / 255) < 1e-9 else f"{e:g}"


def _setting(cell: Cell | None, cfg: RobustnessConfig, status: str,
             sizes: tuple[int, int] | None) -> str:
    if cell is None:
        return "data missing: not run" if status != "full" else "not run"
    n_tr, n_te = sizes or (cell["n_train"], cell["n_test"])
    return (f"{cell['origin']}; {cfg.epochs} epochs; train {cell['n_train']}/{n_tr}; "
            f"test {cell['n_test']}/{n_te}; {cfg.mode} mode")


def _defence_setting(key: str, cfg: RobustnessConfig) -> str:
    if key == "fgsm-at":
        how = "online" if cfg.at_regenerate else "static (perturbed once, as the paper)"
        return f"FGSM-AT eps={cfg.at_eps:g}, {how}, {cfg.at_epochs} further epochs"
    if key == "pgd-at":
        return (f"PGD-AT eps={_eps_label(cfg.pgd_at_eps)}, {cfg.pgd_at_steps} steps, "
                f"{cfg.pgd_at_epochs} further epochs")
    if key == "kd":
        return (f"student {cfg.student}, T={cfg.kd_temperature:g}, alpha={cfg.kd_alpha:g}, "
                f"{cfg.kd_epochs} epochs")
    return ""


def _table_i(grid: list[tuple[str, str, Cell | None]], cfg: RobustnessConfig,
             status: dict[str, str], sizes: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    rows = []
    for d, m, cell in grid:
        paper = TABLE_I.get(d, {}).get(m)
        ours = cell["variants"]["original"]["clean"] if cell else None
        row: dict[str, Any] = {"dataset": _nice(d), "model": _nice(m), "paper": paper,
                               "ours": ours, "setting": _setting(cell, cfg, status[d], sizes.get(d))}
        if d == "breastmnist" and m == "resnet50":
            row["setting"] += "; the paper excluded this pair (25 % accuracy, overfitting)"
        rows.append(row)
    return rows


def _fgsm_row(d: str, m: str, key: str, cell: Cell | None, eps: tuple[float, ...]
              ) -> dict[str, Any]:
    paper = TABLE_III.get((d, m, _PAPER_KEYS.get(key, "")))
    ev = cell["variants"].get(key) if cell else None
    ours = [ev["clean"], *ev["fgsm_paper"]] if ev else None
    row: dict[str, Any] = {"dataset": _nice(d), "model": _nice(m), "defence": DEFENCE_LABELS[key]}
    for i, label in enumerate(["clean", *[f"{e:g}" for e in eps]]):
        row[f"paper_{label}"] = paper[i] if paper else None
        row[f"ours_{label}"] = ours[i] if ours else None
    return row


def _tables_ii_iii(grid: list[tuple[str, str, Cell | None]], cfg: RobustnessConfig,
                   status: dict[str, str], sizes: dict[str, tuple[int, int]],
                   eps: tuple[float, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    t2, t3 = [], []
    for d, m, cell in grid:
        base = _setting(cell, cfg, status[d], sizes.get(d))
        row = _fgsm_row(d, m, "original", cell, eps)
        row["setting"] = base
        t2.append(dict(row))
        t3.append(row)
        for key in ("fgsm-at", "kd"):
            ran = cell is not None and key in cell["variants"]
            if ran or (d, m, _PAPER_KEYS[key]) in TABLE_III:
                r = _fgsm_row(d, m, key, cell, eps)
                r["setting"] = f"{base}; {_defence_setting(key, cfg)}" if ran else (
                    f"{base}; not run" if cell else base)
                t3.append(r)
    for rows in (t2, t3):
        for r in rows:
            if r.get("paper_clean") is None and r["dataset"] == "BreastMNIST" and r["model"] == "ResNet50":
                r["setting"] += "; the paper excluded this pair"
    return t2, t3


def _beyond(cells: list[Cell], cfg: RobustnessConfig) -> tuple[list[dict[str, Any]], ...]:
    s = cfg.suite
    eps_cols = [f"eps={_eps_label(e)}" for e in s.beyond_eps]
    attacks = [("noise", "random sign noise"), ("fgsm", "FGSM"), ("pgd", s.pgd_name),
               ("cw_linf", f"C&W-Linf (margin {s.pgd_name})"),
               ("worst", "strongest per example (all attacks, all eps' <= eps)")]
    acc_rows, l2_rows, mask_rows = [], [], []
    for cell in cells:
        for key, ev in cell["variants"].items():
            ident = {"dataset": _nice(cell["dataset"]), "model": _nice(cell["model"]),
                     "defence": DEFENCE_LABELS[key]}
            b = ev["beyond"]
            for akey, label in attacks:
                acc_rows.append({**ident, "attack": label, "clean": b["clean"],
                                 **dict(zip(eps_cols, b[akey], strict=True)),
                                 "n": ev["n_beyond"]})
            cw = ev["cw_l2"]
            l2_rows.append({**ident, "clean": b["clean"], "success": cw["success"],
                            "median L2": cw["median_l2"],
                            **{f"robust@L2={r:g}": cw[f"robust@{r:g}"] for r in s.l2_radii},
                            "n": ev["n_beyond"],
                            "setting": f"C&W-L2 {s.cw_steps} steps x {s.cw_search} searches, "
                                       f"lr {s.cw_lr:g}, c0 {s.cw_c:g}"})
            masked, reasons, caveats = masking_check(ev, s.beyond_eps, s.pgd_name)
            mask_rows.append({**ident, "source": "ours", "gradient masking": masked,
                              "reasons": "; ".join(reasons) or "no sign found",
                              "caveats": "; ".join(caveats),
                              f"FGSM@{eps_cols[-1][4:]}": b["fgsm"][-1],
                              f"{s.pgd_name}@{eps_cols[-1][4:]}": b["pgd"][-1],
                              f"C&W-Linf@{eps_cols[-1][4:]}": b["cw_linf"][-1],
                              f"noise@{eps_cols[-1][4:]}": b["noise"][-1],
                              f"strongest@{eps_cols[-1][4:]}": b["worst"][-1]})
    return acc_rows, l2_rows, mask_rows


def paper_masking_rows() -> list[dict[str, Any]]:
    """The paper's own defended FGSM curves that are suspiciously flat.

    With FGSM only, the paper's numbers allow one check: a defended model's accuracy falling
    by less than a fifth of what the undefended model loses from eps 0.001 to 0.005 (or
    rising). That is what gradient masking produces; it is not proof without an iterative
    or logit-based attack.
    """
    rows = []
    for (d, m, k), accs in TABLE_III.items():
        if k == "original":
            continue
        base = TABLE_III[(d, m, "original")]
        drop, base_drop = accs[1] - accs[-1], base[1] - base[-1]
        if drop < base_drop / 5:
            rows.append({"dataset": _nice(d), "model": _nice(m), "defence": k.upper(),
                         "source": "paper (FGSM only)", "gradient masking": None,
                         "reasons": (f"FGSM curve flat: {accs[1]:.2%} at eps 0.001, "
                                     f"{accs[-1]:.2%} at 0.005, while the undefended model "
                                     f"falls {base[1]:.2%} -> {base[-1]:.2%}; consistent "
                                     "with gradient masking, untested in the paper"),
                         "caveats": ""})
    return rows


def _figures(grid: list[tuple[str, str, Cell | None]], cells: list[Cell],
             cfg: RobustnessConfig, eps: tuple[float, ...]) -> list[FigureSpec]:
    figs = []
    for d in cfg.datasets:
        series: dict[str, list[float | None]] = {}
        for dd, m, cell in grid:
            if dd != d:
                continue
            for key in ("original", "fgsm-at", "kd"):
                paper = TABLE_III.get((d, m, _PAPER_KEYS[key]))
                ev = cell["variants"].get(key) if cell else None
                label = f"{_nice(m)} {DEFENCE_LABELS[key]}"
                if ev:
                    series[f"{label} (ours)"] = [ev["clean"], *ev["fgsm_paper"]]
                if paper:
                    series[f"{label} (paper)"] = list(paper)
        if series:
            figs.append(FigureSpec(
                id=f"fgsm_{d}", kind="line", x=[0.0, *eps], series=series,
                title=f"{_nice(d)}: accuracy under FGSM, paper vs ours (Tables II-III)",
                xlabel="FGSM eps (L-inf, images in [0, 1])", ylabel="test accuracy"))
    s = cfg.suite
    for cell in cells:
        series = {}
        for key, ev in cell["variants"].items():
            b = ev["beyond"]
            series[f"{DEFENCE_LABELS[key]}: FGSM"] = [b["clean"], *b["fgsm"]]
            series[f"{DEFENCE_LABELS[key]}: strongest attack"] = [b["clean"], *b["worst"]]
        figs.append(FigureSpec(
            id=f"beyond_{cell['dataset']}_{cell['model']}", kind="line",
            x=[0.0, *s.beyond_eps], series=series,
            title=f"{_nice(cell['dataset'])} / {_nice(cell['model'])}: FGSM vs iterative "
                  "attacks at larger budgets",
            xlabel="eps (L-inf)", ylabel="robust accuracy"))
    return figs


def _notes(cells: list[Cell], cfg: RobustnessConfig, status: dict[str, str],
           hints: dict[str, str], mask_rows: list[dict[str, Any]]) -> list[str]:
    s = cfg.suite
    notes = [
        "Threat model: white-box evasion at test time. The attacker knows the architecture, "
        "the weights and the defence (including the distilled student and the adversarially "
        "trained weights) and perturbs test images within an L-inf ball (or, for C&W-L2, "
        "with the smallest L2 change it finds); images are in [0, 1]. Every robust accuracy "
        "is an upper bound: a stronger attack can only lower it.",
        "Ours vs the paper: PyTorch, not Keras; binary tasks use two logits with softmax "
        "cross-entropy (the paper: one sigmoid and binary cross-entropy); with ImageNet weights "
        "the backbones keep the ImageNet stem at 32x32 as Keras' do, from scratch they use "
        "the small-input stem unless the row says otherwise; the last epoch is evaluated (no model "
        "selection); one seed. The paper gives neither the number of further AT epochs nor "
        "the distillation temperature, loss mix or student; ours are stated in each row.",
        f"Mode {cfg.mode!r}: {cfg.epochs} training epochs, FGSM-AT {cfg.at_epochs} further "
        f"epochs, PGD-AT on {', '.join(cfg.pgd_at_models) if cfg.pgd_at_models else 'every model'}"
        f"{'' if cfg.pgd_at else ' (off)'}, beyond-the-paper attacks on at most "
        f"{cfg.max_beyond} test images with "
        f"{s.pgd_name} and C&W-L2 ({s.cw_steps} steps x {s.cw_search} binary-search rounds)"
        + ("; the paper's grid is `medshield reproduce robustness --full`." if cfg.mode != "full"
           else "."),
        "Gradient-masking check (Athalye et al., ICML 2018): a model/defence is flagged when "
        f"FGSM leaves >= {MASKING_THRESHOLDS['fgsm_vs_pgd']:.0%} more accuracy than PGD at "
        "the same eps, when accuracy does not fall as eps grows, when FGSM is no stronger "
        "than random sign noise although PGD is, or when margin-PGD (C&W-Linf) beats "
        f"cross-entropy PGD by >= {MASKING_THRESHOLDS['ce_vs_margin']:.0%}. The reason is in "
        "each row.",
    ]
    origins = sorted({c["origin"] for c in cells})
    if origins:
        notes.append("Weights: " + ", ".join(origins) + (
            ". The paper fine-tunes ImageNet weights; from-scratch models on 5 epochs are "
            "expected to fall below its Table I. Set $MEDSHIELD_WEIGHTS to a directory of "
            "torchvision state_dicts (densenet121.pth, mobilenetv2.pth, resnet50.pth) to "
            "fine-tune as the paper does." if any("scratch" in o for o in origins) else "."))
    for d, st in status.items():
        if st != "full":
            notes.append(f"{d}: data missing, its rows show the paper's numbers only; {hints[d]}")
    notes.append("The paper's distilled DenseNet121 keeps a flat FGSM curve (DermaMNIST "
                 "68.98 % -> 68.73 %, OCTMNIST 78.36 % -> 77.13 % from eps 0.001 to 0.005), "
                 "the pattern gradient masking produces (Carlini and Wagner 2016 break "
                 "defensive distillation by attacking the logits).")
    for r in mask_rows:
        if r["defence"] == "KD" and r["source"] == "ours":
            keys = [k for k in r if "@" in k]
            measured = ", ".join(f"{k} {r[k]:.1%}" for k in keys)
            notes.append(
                f"Our KD student on {r['dataset']} (teacher {r['model']}): {measured}; "
                f"gradient masking {'flagged' if r['gradient masking'] else 'not flagged'} "
                f"({r['reasons']})" + (f"; caveat: {r['caveats']}" if r["caveats"] else "")
                + ".")
    return notes


def build_results(cells: list[Cell], cfg: RobustnessConfig, status: dict[str, str],
                  hints: dict[str, str], sizes: dict[str, tuple[int, int]],
                  paper_eps: tuple[float, ...]) -> ResultsFile:
    """The :class:`ResultsFile` of a run from its measured ``cells``."""
    by_key = {(c["dataset"], c["model"]): c for c in cells}
    grid = [(d, m, by_key.get((d, m))) for d in cfg.datasets for m in cfg.models]
    res = ResultsFile(system="robustness",
                      data={d: ("full" if st == "full" else "missing") for d, st in status.items()})
    res.tables["table1_clean_accuracy"] = _table_i(grid, cfg, status, sizes)
    t2, t3 = _tables_ii_iii(grid, cfg, status, sizes, paper_eps)
    res.tables["table2_fgsm"] = t2
    res.tables["table3_defences"] = t3
    acc, l2, mask = _beyond(cells, cfg)
    res.tables["beyond_robust_accuracy"] = acc
    res.tables["beyond_cw_l2"] = l2
    res.tables["gradient_masking"] = mask + paper_masking_rows()
    res.tables["medmnist_benchmark"] = [
        {"dataset": _nice(d), "model": _nice(m),
         "MedMNIST v2 benchmark (ResNet-18, 28)": MEDMNIST_BENCHMARK.get(d),
         "paper": TABLE_I.get(d, {}).get(m),
         "ours": cell["variants"]["original"]["clean"] if cell else None}
        for d, m, cell in grid
    ]
    res.figures = _figures(grid, cells, cfg, paper_eps)
    fgsm_figs = [f.id for f in res.figures if f.id.startswith("fgsm_")]
    beyond_figs = [f.id for f in res.figures if f.id.startswith("beyond_")]
    res.sections = [
        Section(title="Robust medical imaging (Yenumala et al.): Table I, clean accuracy",
                text="Each row puts the paper's Table I accuracy beside ours; `setting` says "
                     "how ours was obtained.", tables=["table1_clean_accuracy"]),
        Section(title="Tables II-III: FGSM and the paper's defences (AT, KD)",
                text="paper_<eps> and ours_<eps>: test accuracy under FGSM at that budget.",
                tables=["table2_fgsm", "table3_defences"], figures=fgsm_figs),
        Section(title="Beyond the paper: PGD, C&W and larger budgets",
                text="Every model and defence (with PGD adversarial training added) under "
                     "random noise, FGSM, PGD and margin-PGD at larger L-inf budgets, and "
                     "under the minimum-norm C&W-L2 attack.",
                tables=["beyond_robust_accuracy", "beyond_cw_l2"], figures=beyond_figs),
        Section(title="Gradient masking", text="Flags with their reasons; paper rows apply "
                "the only check FGSM-only numbers allow.", tables=["gradient_masking"]),
        Section(title="MedMNIST v2 benchmark", text="The official MedMNIST v2 test accuracy "
                "(ResNet-18 at 28x28, Yang et al. 2023) beside the paper's and ours.",
                tables=["medmnist_benchmark"]),
    ]
    res.notes = _notes(cells, cfg, status, hints, mask)
    return res
