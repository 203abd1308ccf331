"""``medshield reproduce robustness``: Yenumala et al.'s robust medical imaging study, and beyond.

Paper: Yenumala, Zhang and Lo, "Towards More Robust and Scalable Deep Learning Systems for
Medical Image Analysis" (``shared/papers/robust-medical-imaging.txt``). DenseNet121,
MobileNetV2 and ResNet50 are trained on BreastMNIST, PneumoniaMNIST, DermaMNIST and OCTMNIST
(3x32x32, Adam, batch 32, 5 epochs; Table I), attacked with FGSM at eps 0.001 ... 0.005
(Table II) and defended with FGSM adversarial training (eps 0.001) and knowledge
distillation (Table III). This experiment reruns that grid on the datasets present and puts
the paper's numbers beside ours, then goes beyond the paper: PGD adversarial training, PGD,
margin-PGD (C&W-Linf) and C&W-L2 at larger budgets, a random-noise baseline, and a
gradient-masking check for every model and defence.

Threat model: white-box evasion at test time; the attacker knows the architecture, the
weights and the defence (``docs/threat-models.md``).

Modes: ``full`` runs the whole grid (hours on a CPU; uses a GPU when present; finished cells
are kept in ``OUT/cells`` and reused when the run is restarted with the same settings),
``quick`` runs BreastMNIST with MobileNetV2 and DenseNet121 and fewer attack steps (minutes
on a CPU), ``fast`` is a seconds-long smoke run for the test suite. ImageNet weights are used
when ``$MEDSHIELD_WEIGHTS`` names a directory holding ``densenet121.pth``,
``mobilenetv2.pth`` (or ``mobilenet_v2.pth``) and ``resnet50.pth`` (``.pt`` also works);
otherwise the models are trained from scratch, and every row says which.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from medshield.benchmarks import attacks as _attacks_bench  # noqa: F401  (registers `bench attacks`)
from medshield.data import DATASETS, load_dataset
from medshield.data.base import ArraySplit, SplitDataset
from medshield.data.splits import stratified_split
from medshield.data.transforms import Resize, ToChannels, apply_transforms
from medshield.defenses import Distillation, FGSMAdversarialTraining, PGDAdversarialTraining
from medshield.experiments import robustness_demo as _demo  # noqa: F401  (registers the demo)
from medshield.experiments.base import EXPERIMENTS, RunOptions
from medshield.experiments.robustness_eval import AttackSuite, evaluate_variant
from medshield.experiments.robustness_paper import EPSILONS
from medshield.experiments.robustness_tables import build_results
from medshield.models import MODELS
from medshield.results import ResultsFile
from medshield.runtime import seed_everything
from medshield.training import fit

__all__ = [
    "PAPER_DATASETS",
    "PAPER_MODELS",
    "WEIGHTS_ENV",
    "RobustnessConfig",
    "config_for",
    "run_robustness",
    "robustness_experiment",
    "weights_file",
]

PAPER_DATASETS = ("breastmnist", "pneumoniamnist", "dermamnist", "octmnist")
PAPER_MODELS = ("densenet121", "mobilenetv2", "resnet50")
#: Environment variable naming a directory of local ImageNet ``state_dict`` files.
WEIGHTS_ENV = "MEDSHIELD_WEIGHTS"
_WEIGHT_NAMES = {
    "densenet121": ("densenet121",),
    "mobilenetv2": ("mobilenetv2", "mobilenet_v2"),
    "resnet50": ("resnet50",),
}


@dataclass(frozen=True)
class RobustnessConfig:
    """Settings of one run (:func:`config_for` gives those of each mode).

    Attributes
    ----------
    mode : the label written into every row (``"full"``, ``"quick"``, ``"fast"``)
    datasets, models : the grid (datasets that are missing are reported, not run)
    epochs, batch_size, lr : training (the paper: 5, 32, Adam; Keras' default rate 1e-3)
    max_train, max_test : class-stratified subsets of the training and test sets (``None``:
        all); the test subset gives Table I-III numbers
    max_beyond : test examples for the (costly) beyond-the-paper attacks
    at_eps, at_epochs, at_regenerate : FGSM-AT (the paper: eps 0.001; epochs not given)
    pgd_at, pgd_at_eps, pgd_at_steps, pgd_at_epochs : PGD-AT (beyond the paper)
    pgd_at_models : the models that get PGD-AT (``None``: all)
    kd_teachers : models distilled into ``student`` (the paper: DenseNet121)
    kd_datasets : datasets on which to distil (``None``: all; the paper: DermaMNIST, OCTMNIST)
    kd_temperature, kd_alpha, kd_epochs, student, student_options : distillation
    small_input_stem : the backbones' stem; ``None`` (default) keeps the models' rule: the
        ImageNet stem (as the paper's Keras models at 32x32) with ImageNet weights, the
        small-input stem from scratch (with the ImageNet stem, 5 epochs from scratch leave
        MobileNetV2 a constant classifier on BreastMNIST)
    stem_overrides : per-model stem choices that win over ``small_input_stem``
    model_options : extra options of every model (tests use tiny widths)
    suite : attacks of the evaluation
    """

    mode: str = "full"
    datasets: tuple[str, ...] = PAPER_DATASETS
    models: tuple[str, ...] = PAPER_MODELS
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    max_train: int | None = None
    max_test: int | None = None
    max_beyond: int | None = 1000
    at_eps: float = 0.001
    at_epochs: int = 5
    at_regenerate: bool = False
    pgd_at: bool = True
    pgd_at_eps: float = 8 / 255
    pgd_at_steps: int = 7
    pgd_at_epochs: int = 5
    pgd_at_models: tuple[str, ...] | None = None
    kd_teachers: tuple[str, ...] = ("densenet121",)
    kd_datasets: tuple[str, ...] | None = None
    kd_temperature: float = 10.0
    kd_alpha: float = 0.9
    kd_epochs: int = 5
    student: str = "student-cnn"
    student_options: dict[str, Any] = field(default_factory=dict)
    small_input_stem: bool | None = None
    stem_overrides: dict[str, bool] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    suite: AttackSuite = field(default_factory=AttackSuite)

    def signature(self) -> str:
        """A hash of every setting (finished cells are reused only under the same one)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_for(mode: str) -> RobustnessConfig:
    """The settings of ``mode``: ``"full"`` (the paper's grid), ``"quick"``, ``"fast"``."""
    if mode == "full":
        return RobustnessConfig()
    if mode == "quick":
        return RobustnessConfig(
            mode="quick", datasets=("breastmnist",), models=("mobilenetv2", "densenet121"),
            max_beyond=48, at_epochs=2, pgd_at_steps=3, pgd_at_epochs=2,
            pgd_at_models=("mobilenetv2",),
            stem_overrides={"densenet121": False},  # its small stem costs 9x on a CPU
            suite=AttackSuite(beyond_eps=(0.005, 8 / 255), pgd_steps=10, cw_steps=20,
                              cw_search=1, cw_lr=0.05),
        )
    if mode == "fast":
        return RobustnessConfig(
            mode="fast", models=("mobilenetv2",), epochs=1, max_train=64, max_test=32,
            max_beyond=16, at_epochs=1, pgd_at_steps=1, pgd_at_epochs=1,
            kd_teachers=("mobilenetv2",), kd_epochs=1, student_options={"width": 8},
            stem_overrides={"mobilenetv2": False},
            suite=AttackSuite(beyond_eps=(0.01, 8 / 255), pgd_steps=2, cw_steps=3, cw_search=1,
                              cw_lr=0.05, batch_size=32),
        )
    raise ValueError(f"unknown mode {mode!r}; use 'fast', 'quick' or 'full'")


def weights_file(model: str, directory: str | os.PathLike[str] | None = None) -> Path | None:
    """The local ImageNet weights of ``model`` in ``directory`` (default ``$MEDSHIELD_WEIGHTS``),
    or ``None`` when there is none (the model is then trained from scratch)."""
    base = directory if directory is not None else os.environ.get(WEIGHTS_ENV)
    if not base:
        return None
    for stem in _WEIGHT_NAMES.get(model, (model,)):
        for ext in (".pth", ".pt"):
            path = Path(base).expanduser() / f"{stem}{ext}"
            if path.is_file():
                return path
    return None


def _subset(split: ArraySplit, n: int | None, seed: int) -> ArraySplit:
    if n is None or n >= len(split):
        return split
    idx = stratified_split(split.y, [n, len(split) - n], seed)[0]
    return split.subset(np.sort(idx))


def _prepare(name: str, opts: RunOptions, cfg: RobustnessConfig
             ) -> tuple[SplitDataset, tuple[int, int]]:
    """The dataset as the paper feeds it (3 channels, 32x32, values in [0, 1]), subsets
    taken, and the full (train, test) sizes."""
    data = load_dataset(name, root=opts.data_root, seed=opts.seed, source="full")
    sizes = (len(data.train), len(data.test))
    train = _subset(data.train, cfg.max_train, opts.seed)
    test = _subset(data.test, cfg.max_test, opts.seed)
    data = SplitDataset(data.info, train, data.val.subset(slice(0, 0)), test, data.extra)
    return apply_transforms(data, [ToChannels(3), Resize(32)]), sizes


def _build_model(name: str, num_classes: int, cfg: RobustnessConfig, seed: int
                 ) -> tuple[nn.Module, str]:
    options: dict[str, Any] = {"num_classes": num_classes, "in_channels": 3, "seed": seed}
    weights = weights_file(name) if name in _WEIGHT_NAMES else None
    origin = f"ImageNet weights ({weights})" if weights is not None else "from scratch"
    if name in _WEIGHT_NAMES:
        small = cfg.stem_overrides.get(name, cfg.small_input_stem)
        if small is None:
            small = weights is None
        options["small_input_stem"] = small
        origin += ", small-input stem" if small else ", ImageNet stem"
        if weights is not None:
            options["weights"] = weights
    options.update(cfg.model_options)
    return MODELS.create(name, **options), origin


def _run_cell(dataset: str, data: SplitDataset, model_name: str, opts: RunOptions,
              cfg: RobustnessConfig, console: Console) -> dict[str, Any]:
    """Train one model on one dataset, defend it, attack every variant: a JSON-ready dict."""
    seed_everything(opts.seed)
    t_cell = time.perf_counter()
    model, origin = _build_model(model_name, data.info.num_classes, cfg, opts.seed)
    train_loader = data.train.loader(batch_size=cfg.batch_size, shuffle=True, seed=opts.seed)
    t0 = time.perf_counter()
    history = fit(model, train_loader, epochs=cfg.epochs, lr=cfg.lr, optimizer="adam",
                  device=opts.device, seed=opts.seed, progress=opts.progress)
    seconds = {"original": time.perf_counter() - t0}
    variants: dict[str, nn.Module] = {"original": model}

    t0 = time.perf_counter()
    variants["fgsm-at"] = FGSMAdversarialTraining(
        eps=cfg.at_eps, epochs=cfg.at_epochs, lr=cfg.lr, regenerate=cfg.at_regenerate,
        seed=opts.seed, progress=opts.progress,
    )(copy.deepcopy(model), train_loader, device=opts.device)
    seconds["fgsm-at"] = time.perf_counter() - t0
    if cfg.pgd_at and (cfg.pgd_at_models is None or model_name in cfg.pgd_at_models):
        t0 = time.perf_counter()
        steps = cfg.pgd_at_steps
        variants["pgd-at"] = PGDAdversarialTraining(
            eps=cfg.pgd_at_eps, alpha=2.5 * cfg.pgd_at_eps / steps, steps=steps,
            epochs=cfg.pgd_at_epochs, lr=cfg.lr, seed=opts.seed, progress=opts.progress,
        )(copy.deepcopy(model), train_loader, device=opts.device)
        seconds["pgd-at"] = time.perf_counter() - t0
    if model_name in cfg.kd_teachers and (cfg.kd_datasets is None or dataset in cfg.kd_datasets):
        t0 = time.perf_counter()
        variants["kd"] = Distillation(
            student=cfg.student, student_options=cfg.student_options,
            temperature=cfg.kd_temperature, alpha=cfg.kd_alpha, epochs=cfg.kd_epochs,
            lr=cfg.lr, seed=opts.seed, progress=opts.progress,
        )(model, train_loader, device=opts.device)
        seconds["kd"] = time.perf_counter() - t0

    x_test, y_test = data.test.tensors()
    beyond = _subset(data.test, cfg.max_beyond, opts.seed + 1)
    x_b, y_b = beyond.tensors()
    results: dict[str, Any] = {}
    for name, net in variants.items():
        t0 = time.perf_counter()
        ev = evaluate_variant(net, x_test, y_test, x_b, y_b, cfg.suite, opts.device, opts.seed)
        ev["train_seconds"] = seconds[name]
        ev["eval_seconds"] = time.perf_counter() - t0
        results[name] = ev
        b = ev["beyond"]
        console.print(
            f"  {name:8s} clean {ev['clean']:.1%}  FGSM@0.005 {ev['fgsm_paper'][-1]:.1%}  "
            f"{cfg.suite.pgd_name}@{cfg.suite.beyond_eps[-1]:.3g} {b['pgd'][-1]:.1%}  "
            f"C&W-Linf {b['cw_linf'][-1]:.1%}  strongest {b['worst'][-1]:.1%}  "
            f"(train {seconds[name]:.0f} s, attacks {ev['eval_seconds']:.0f} s)", soft_wrap=True
        )
    return {
        "dataset": dataset,
        "model": model_name,
        "origin": origin,
        "n_train": len(data.train),
        "n_test": len(y_test),
        "n_beyond": len(y_b),
        "history": history.to_dict(),
        "variants": results,
        "seconds": time.perf_counter() - t_cell,
    }


def _probe(name: str, opts: RunOptions) -> tuple[str, str]:
    av = DATASETS.create(name, root=opts.data_root).probe()
    return av.status, (av.hint or av.where)


def run_robustness(opts: RunOptions, config: RobustnessConfig | None = None) -> ResultsFile:
    """Run the experiment with ``config`` (default: that of ``opts.mode``) -> ``ResultsFile``."""
    cfg = config or config_for(opts.mode)
    console = Console(stderr=True)
    t_start = time.perf_counter()
    status: dict[str, str] = {}
    hints: dict[str, str] = {}
    for name in dict.fromkeys((*PAPER_DATASETS, *cfg.datasets)):
        status[name], hints[name] = _probe(name, opts)
    cells: list[dict[str, Any]] = []
    full_sizes: dict[str, tuple[int, int]] = {}
    cell_dir = Path(opts.out) / "cells"
    for dataset in cfg.datasets:
        if status[dataset] != "full":
            console.print(f"[yellow][robustness] {dataset}: data missing, skipped[/] ({hints[dataset]})", soft_wrap=True)
            continue
        data, full_sizes[dataset] = _prepare(dataset, opts, cfg)
        for model_name in cfg.models:
            cached = cell_dir / f"{dataset}-{model_name}.json"
            if cfg.mode == "full" and cached.is_file():
                saved = json.loads(cached.read_text())
                if saved.get("signature") == cfg.signature() and saved.get("seed") == opts.seed:
                    console.print(f"[robustness] {dataset} / {model_name}: reusing {cached}", soft_wrap=True)
                    cells.append(saved["cell"])
                    continue
            console.print(f"[bold][robustness] {dataset} / {model_name}[/] ({cfg.mode} mode, "
                          f"{len(data.train)} train, {len(data.test)} test images)", soft_wrap=True)
            cell = _run_cell(dataset, data, model_name, opts, cfg, console)
            cells.append(cell)
            console.print(f"[robustness] {dataset} / {model_name} done in {cell['seconds']:.0f} s", soft_wrap=True)
            if cfg.mode == "full":
                cell_dir.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps({"signature": cfg.signature(), "seed": opts.seed,
                                              "cell": cell}))
    res = build_results(cells, cfg, status, hints, full_sizes, paper_eps=EPSILONS)
    res.meta.update({
        "config": dataclasses.asdict(cfg),
        "seed": opts.seed,
        "device": str(opts.device),
        "torch_threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - t_start,
        "cells": cells,
    })
    return res


@EXPERIMENTS.register("robustness")
def robustness_experiment(opts: RunOptions) -> ResultsFile:
    """``medshield reproduce robustness``: Tables I-III beside ours, plus PGD/C&W and masking."""
    return run_robustness(opts)
