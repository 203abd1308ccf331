"""A plain supervised train/evaluate loop for classifiers.

The model maps a batch ``x`` to logits of shape ``(N, K)`` (``K >= 2`` classes: softmax and
cross-entropy) or ``(N,)``/``(N, 1)`` (one logit of the positive class of a binary task:
sigmoid and binary cross-entropy). Loaders yield ``(x, y, ...)`` tuples (or dicts with
``"x"`` and ``"y"``) with integer labels ``y`` of shape ``(N,)`` (``(N, 1)`` is flattened).

Reproducibility: :func:`fit` seeds every generator from ``seed`` and, before each epoch,
reseeds the training loader's shuffling generator (if it has one, as
:meth:`ArraySplit.loader` does) from ``(seed, epoch)``. Together with the RNG states kept in
the checkpoint, training ``E`` epochs in one go or in pieces with ``resume=True`` gives
bit-identical weights on the CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from medshield.metrics.classification import classification_report
from medshield.runtime import get_device, seed_everything
from medshield.training.checkpoint import LAST, load_checkpoint, save_checkpoint
from medshield.training.history import History

__all__ = ["LossFn", "BatchLossFn", "OptimizerSpec", "fit", "evaluate", "predict", "epoch_seed"]

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``batch_loss(model, x, y) -> (loss, logits)``: the loss of one training batch, for training
#: schemes that change the inputs or the targets per batch (adversarial training,
#: distillation). ``logits`` (N rows, one per label in ``y``) only feed the training accuracy.
BatchLossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
OptimizerSpec = (
    str | torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
)
_OPTIMIZERS = ("adam", "adamw", "sgd")


# ----------------------------------------------------------------------------- helpers


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of 0-based ``epoch`` in a run seeded with ``seed`` (a 63-bit int
    derived with NumPy's ``SeedSequence``, so nearby seeds/epochs give unrelated orders)."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(epoch)]).generate_state(1, np.uint64)
    return int(state[0]) & (2**63 - 1)


def _reseed_loader(loader: Iterable[Any], seed: int, epoch: int) -> bool:
    """Reseed every ``torch.Generator`` the loader shuffles with; ``True`` if there was one."""
    gens: dict[int, torch.Generator] = {}
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(
            getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None
        ),
    ]
    for g in candidates:
        if isinstance(g, torch.Generator):
            gens[id(g)] = g
    for g in gens.values():
        g.manual_seed(epoch_seed(seed, epoch))
    return bool(gens)


def _split_batch(batch: Any, need_labels: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, dict):
        x, y = batch.get("x"), batch.get("y")
    elif isinstance(batch, list | tuple):
        x = batch[0] if len(batch) > 0 else None
        y = batch[1] if len(batch) > 1 else None
    else:
        x, y = batch, None
    if not isinstance(x, torch.Tensor) or (need_labels and not isinstance(y, torch.Tensor)):
        raise TypeError(
            f"a batch must be (x, y, ...) tensors or a dict with 'x' and 'y', got "
            f"{type(batch).__name__}; wrap your data in a TensorDataset or ArraySplit.loader()"
        )
    if isinstance(y, torch.Tensor) and y.ndim == 2 and y.shape[1] == 1:
        y = y.view(-1)
    return x, y


def _is_single_logit(out: torch.Tensor) -> bool:
    return out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)


def _default_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on (N, K) logits; binary cross-entropy on one logit per sample."""
    if _is_single_logit(out):
        return F.binary_cross_entropy_with_logits(out.view(-1), y.to(out.dtype))
    return F.cross_entropy(out, y.long())


def _probs(out: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, K >= 2) from logits."""
    if _is_single_logit(out):
        p = torch.sigmoid(out.view(-1).float())
        return torch.stack([1 - p, p], dim=1)
    if out.ndim != 2:
        raise ValueError(
            f"the model returned outputs of shape {tuple(out.shape)}; a classifier must return "
            "logits of shape (N, K) or (N,)"
        )
    return torch.softmax(out.float(), dim=1)


def _make_optimizer(spec: OptimizerSpec, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if isinstance(spec, torch.optim.Optimizer):
        own = {id(p) for p in model.parameters()}
        foreign = [p for g in spec.param_groups for p in g["params"] if id(p) not in own]
        if foreign:
            raise ValueError(
                f"the optimizer holds {len(foreign)} tensors that are not parameters of the "
                "model; build it from model.parameters() (after moving the model to its device)"
            )
        return spec
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if isinstance(spec, str):
        name = spec.lower()
        if name == "adam":
            return torch.optim.Adam(params, lr=lr)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr)
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9)
        raise ValueError(
            f"unknown optimizer {spec!r}; use one of {_OPTIMIZERS}, an optimizer instance or a "
            "factory such as functools.partial(torch.optim.SGD, lr=0.1)"
        )
    if callable(spec):
        return spec(params)
    raise TypeError(
        f"optimizer must be a name, an Optimizer or a factory, got {type(spec).__name__}"
    )


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return get_device(device)
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else get_device(None)


def _progress(enabled: bool) -> Progress:
    """A rich progress display on stderr; silent when disabled or stderr is not a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _infer(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device,
    *,
    need_labels: bool,
    loss_fn: LossFn | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray | None, np.ndarray, float | None]:
    """Run the model over a loader: (true labels or None, probabilities (N, K), mean loss)."""
    labels: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    task = progress.add_task("evaluate", total=_length(loader), info="") if progress else None
    with _eval_mode(model):
        for batch in loader:
            x, y = _split_batch(batch, need_labels)
            out = model(x.to(device, non_blocking=True))
            probs.append(_probs(out).cpu())
            if y is not None and need_labels:
                y = y.to(device, non_blocking=True)
                labels.append(y.cpu())
                loss = (loss_fn or _default_loss)(out, y)
                loss_sum += loss.double() * len(y)
                count += len(y)
            if progress is not None and task is not None:
                progress.advance(task)
    if progress is not None and task is not None:
        progress.remove_task(task)
    if not probs:
        raise ValueError("the loader yielded no batches; cannot evaluate on an empty dataset")
    p = torch.cat(probs).numpy().astype(np.float64)
    y_true = torch.cat(labels).numpy().astype(np.int64) if labels else None
    mean_loss = float(loss_sum.item() / count) if count else None
    return y_true, p, mean_loss


# ----------------------------------------------------------------------------- public API


def predict(
    model: nn.Module, loader: Iterable[Any], device: str | torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and class probabilities for every sample of ``loader``.

    Parameters
    ----------
    model : classifier returning logits (see module docstring); run in eval mode under
        ``torch.inference_mode`` (its previous train/eval mode is restored afterwards)
    loader : yields ``x`` tensors or ``(x, ...)`` tuples; labels, if present, are ignored
    device : where to run (default: where the model's parameters are); the model is moved
        there if given

    Returns
    -------
    labels : np.ndarray of shape (N,), int64 -- ``argmax`` of the probabilities
    probs : np.ndarray of shape (N, K), float64, rows sum to 1 (``K = 2`` for one-logit models)
    """
    dev = _model_device(model, device)
    model.to(dev)
    _, p, _ = _infer(model, loader, dev, need_labels=False)
    return p.argmax(1).astype(np.int64), p


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    device: str | torch.device | None = None,
    *,
    loss_fn: LossFn | None = None,
) -> dict[str, Any]:
    """The :func:`medshield.metrics.classification_report` of ``model`` on ``loader``.

    Probabilities are passed as scores, so the report includes ROC AUC (one-vs-rest macro for
    more than two classes; ``None`` with a reason when undefined).

    Parameters
    ----------
    model : classifier returning logits; evaluated in eval mode under
        ``torch.inference_mode`` (its previous mode is restored)
    loader : yields ``(x, y, ...)`` batches
    device : where to run (default: where the model's parameters are)
    loss_fn : loss to report as ``"loss"`` (mean over samples; default cross-entropy, or
        binary cross-entropy for one-logit models). It must average over the batch.

    Returns
    -------
    dict : the classification report (JSON-serialisable) plus ``"loss"``
    """
    dev = _model_device(model, device)
    model.to(dev)
    y_true, p, mean_loss = _infer(model, loader, dev, need_labels=True, loss_fn=loss_fn)
    assert y_true is not None
    report = classification_report(y_true, p.argmax(1), p, labels=np.arange(p.shape[1]))
    report["loss"] = mean_loss
    return report


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int,
    lr: float = 1e-3,
    optimizer: OptimizerSpec = "adam",
    loss_fn: LossFn | None = None,
    device: str | torch.device | None = None,
    val_loader: Iterable[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    on_epoch_end: Callable[[int, History], bool | None] | None = None,
    batch_loss: BatchLossFn | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs with mini-batch gradient descent.

    Parameters
    ----------
    model : classifier returning logits (see module docstring); moved to ``device``
    train_loader : yields ``(x, y, ...)`` batches; if it shuffles with its own
        ``torch.Generator`` (e.g. :meth:`ArraySplit.loader`), that generator is reseeded from
        ``(seed, epoch)`` before each epoch, so the data order depends on ``seed`` only
    epochs : total number of epochs (including those already done when resuming)
    lr : learning rate for optimizers built by name
    optimizer : ``"adam"``, ``"adamw"``, ``"sgd"`` (momentum 0.9), an optimizer over the
        model's parameters, or a factory ``params -> Optimizer``
    loss_fn : ``loss_fn(logits, y)`` averaged over the batch (default: cross-entropy, or
        binary cross-entropy with logits for one-logit models)
    device : ``"cpu"``, ``"cuda"``, ... (default: CUDA when present)
    val_loader : evaluated with :func:`evaluate` after every epoch
    checkpoint_dir : if given, ``checkpoint_dir/last.pt`` is rewritten after every epoch
        (model, optimizer, epoch, history, RNG states; see :mod:`.checkpoint`)
    resume : continue from ``checkpoint_dir/last.pt`` if it exists (start afresh if not)
    seed : seeds Python, NumPy and torch at the start and the per-epoch data order
    progress : show rich progress bars (only when stderr is a terminal)
    on_epoch_end : ``callback(epoch, history)`` after each epoch (``epoch`` = number of
        completed epochs, 1-based); returning ``True`` stops training after that epoch
    batch_loss : ``batch_loss(model, x, y) -> (loss, logits)`` computes each training
        batch's loss in place of ``loss_fn(model(x), y)`` (``x``, ``y`` already on the
        device, the model in train mode, gradients zeroed). It lets adversarial training
        attack ``x`` first or distillation query a teacher, in this same loop.
        ``loss_fn`` then only scores the validation batches; the reported training accuracy
        compares ``logits`` (one row per label) with ``y``.

    Returns
    -------
    History : per-epoch training loss/accuracy, validation reports and wall times
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir= (the directory holding last.pt)")
    dev = get_device(device)
    seed_everything(seed)
    model.to(dev)
    opt = _make_optimizer(optimizer, model, lr)
    meta = {"device": str(dev), "optimizer": type(opt).__name__, "lr": lr, "seed": seed}
    history = History(meta=dict(meta))
    start = 0
    ckpt_path = Path(checkpoint_dir) / LAST if checkpoint_dir is not None else None
    if resume and ckpt_path is not None:
        if ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            ckpt.restore(model, opt, rng=True)
            start = ckpt.epoch
            if ckpt.history is not None:
                history = History.from_dict(ckpt.history)
                history.meta.update(meta, resumed_at_epoch=start)  # settings of this run
            logger.info("resumed from %s after epoch %d", ckpt_path, start)
        else:
            logger.info("no checkpoint at %s; training from scratch", ckpt_path)
    compute_loss = loss_fn or _default_loss
    n_batches = _length(train_loader)
    if n_batches == 0:
        raise ValueError("train_loader yields no batches; check the dataset and batch size")

    with _progress(progress) as bars:
        epoch_task = bars.add_task("epochs", total=epochs, completed=start, info="")
        for epoch in range(start, epochs):
            _reseed_loader(train_loader, seed, epoch)
            t0 = time.perf_counter()
            model.train()
            batch_task = bars.add_task(f"epoch {epoch + 1}", total=n_batches, info="")
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            correct = torch.zeros((), dtype=torch.int64, device=dev)
            seen = 0
            for step, batch in enumerate(train_loader):
                x, y = _split_batch(batch, need_labels=True)
                assert y is not None
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                if batch_loss is None:
                    out = model(x)
                    loss = compute_loss(out, y)
                else:
                    loss, out = batch_loss(model, x, y)
                    if len(out) != len(y):
                        raise ValueError(
                            f"batch_loss returned {len(out)} rows of logits for {len(y)} "
                            "labels; return the logits of one input per label"
                        )
                loss.backward()
                opt.step()
                with torch.no_grad():
                    loss_sum += loss.detach().double() * len(y)
                    pred = (out.view(-1) > 0).long() if _is_single_logit(out) else out.argmax(1)
                    target = y.argmax(1) if y.ndim == 2 else y  # one-hot/soft targets
                    correct += (pred == target).sum()
                seen += len(y)
                if not bars.disable and step % 10 == 0:
                    bars.update(batch_task, info=f"loss {loss.item():.4f}")
                bars.advance(batch_task)
            bars.remove_task(batch_task)
            if seen == 0:
                raise ValueError("train_loader yielded no samples in this epoch")
            val = None
            if val_loader is not None:
                val = evaluate(model, val_loader, dev, loss_fn=loss_fn)
            history.append(
                epoch + 1,
                loss_sum.item() / seen,
                correct.item() / seen,
                val,
                time.perf_counter() - t0,
            )
            summary = (
                f"epoch {epoch + 1}/{epochs}: loss {history.train_loss[-1]:.4f}, "
                f"acc {history.train_accuracy[-1]:.4f}"
            )
            if val is not None:
                summary += f", val acc {val['accuracy']:.4f}"
            logger.info(summary)
            if not bars.disable:
                bars.console.print(summary)
            bars.advance(epoch_task)
            stop = bool(on_epoch_end(epoch + 1, history)) if on_epoch_end is not None else False
            if ckpt_path is not None:
                save_checkpoint(
                    ckpt_path,
                    model,
                    opt,
                    epoch=epoch + 1,
                    history=history.to_dict(),
                    extra={"seed": seed, "epochs": epochs},
                )
            if stop:
                break
    return history
