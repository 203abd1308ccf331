"""Classification metrics in vectorised NumPy, with scikit-learn's conventions.

Every function takes label vectors ``y_true``, ``y_pred`` of shape ``(N,)`` (NumPy arrays,
lists or CPU/GPU torch tensors) and, for ROC AUC, scores ``y_score`` of shape ``(N,)``
(binary: score of the positive class) or ``(N, K)`` (one column per class, e.g. softmax
probabilities). Results agree with :mod:`sklearn.metrics` (tested), with two deliberate
differences:

* ``zero_division`` defaults to ``0.0`` *silently*: a class that is never predicted has
  precision 0 and no ``UndefinedMetricWarning`` is emitted (sklearn's ``"warn"``).
* multi-class ROC AUC does not insist that the rows of ``y_score`` sum to one (one-vs-rest
  AUC is defined for any scores).

:func:`classification_report` bundles everything into one JSON-serialisable ``dict`` and
turns undefined quantities (AUC with a single class present) into ``None`` plus a reason.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "Average",
    "accuracy",
    "confusion_matrix",
    "precision_recall_f1",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "classification_report",
]

Average = Literal["binary", "macro", "micro", "weighted"] | None
_AVERAGES = ("binary", "macro", "micro", "weighted", None)


def _as_numpy(a: Any, name: str) -> np.ndarray:
    """``a`` as a NumPy array (torch tensors are detached and moved to the CPU)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check_labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _as_numpy(y_true, "y_true")
    p = _as_numpy(y_pred, "y_pred")
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D label vectors, got shapes {t.shape} and {p.shape}; "
            "pass class indices (e.g. probs.argmax(1)), not one-hot rows or probabilities"
        )
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("y_true is empty: a metric over zero samples is undefined")
    return t, p


def _index_of(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each value in ``labels`` (``-1`` where absent). Shape of ``values``."""
    sorter = np.argsort(labels, kind="stable")
    sorted_labels = labels[sorter]
    pos = np.searchsorted(sorted_labels, values)
    pos = np.clip(pos, 0, len(labels) - 1)
    found = sorted_labels[pos] == values
    return np.where(found, sorter[pos], -1)


def _resolve_labels(t: np.ndarray, p: np.ndarray, labels: Any | None) -> np.ndarray:
    if labels is None:
        return np.union1d(t, p)
    lab = _as_numpy(labels, "labels")
    if lab.ndim != 1 or len(lab) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {lab.shape}")
    if len(np.unique(lab)) != len(lab):
        raise ValueError(f"labels contains duplicates: {lab.tolist()}")
    return lab


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples with ``y_pred == y_true``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (N,)

    Returns
    -------
    float in ``[0, 1]``
    """
    t, p = _check_labels(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, *, labels: Any | None = None) -> np.ndarray:
    """Confusion matrix ``C`` with ``C[i, j]`` = number of samples of true class ``labels[i]``
    predicted as ``labels[j]`` (sklearn's convention: rows true, columns predicted).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (N,)
    labels : classes to index the matrix by (default: sorted union of both vectors).
        Samples whose true or predicted label is not in ``labels`` are left out.

    Returns
    -------
    np.ndarray of shape (K, K), dtype int64
    """
    t, p = _check_labels(y_true, y_pred)
    lab = _resolve_labels(t, p, labels)
    k = len(lab)
    it, ip = _index_of(t, lab), _index_of(p, lab)
    keep = (it >= 0) & (ip >= 0)
    flat = np.bincount(it[keep] * k + ip[keep], minlength=k * k)
    return flat.reshape(k, k).astype(np.int64)


def _counts(
    t: np.ndarray, p: np.ndarray, lab: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, predicted counts and true counts (support), shape (K,)."""
    k = len(lab)
    it, ip = _index_of(t, lab), _index_of(p, lab)
    true_sum = np.bincount(it[it >= 0], minlength=k)
    pred_sum = np.bincount(ip[ip >= 0], minlength=k)
    hit = (t == p) & (it >= 0)
    tp = np.bincount(it[hit], minlength=k)
    return tp, pred_sum, true_sum


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.full(num.shape, float(zero_division), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_recall_f1(
    y_true: Any,
    y_pred: Any,
    *,
    average: Average = "binary",
    pos_label: Any = 1,
    labels: Any | None = None,
    zero_division: float = 0.0,
) -> tuple[Any, Any, Any, np.ndarray]:
    """Precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)`` and F1 ``2TP/(2TP+FP+FN)``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (N,)
    average : ``"binary"`` (the class ``pos_label`` only; at most two classes may occur),
        ``"macro"`` (unweighted mean over ``labels``), ``"micro"`` (from pooled counts),
        ``"weighted"`` (mean weighted by support) or ``None`` (per-class arrays).
    pos_label : the positive class for ``average="binary"``.
    labels : classes to report on (default: sorted union of ``y_true`` and ``y_pred``).
    zero_division : value for a ratio whose denominator is zero (e.g. precision of a class
        that is never predicted). No warning is emitted.

    Returns
    -------
    precision, recall, f1 : float, or np.ndarray of shape (K,) when ``average is None``
    support : np.ndarray of shape (K,), int64 -- true count of each label (``(1,)`` for binary)
    """
    if average not in _AVERAGES:
        raise ValueError(f"average={average!r} is not one of {_AVERAGES}")
    t, p = _check_labels(y_true, y_pred)
    if average == "binary":
        present = np.union1d(t, p)
        if len(present) > 2:
            raise ValueError(
                f"average='binary' needs at most two classes but y_true/y_pred contain "
                f"{len(present)} ({present.tolist()}); use average='macro' (or 'micro', "
                "'weighted', None) for multi-class data"
            )
        if len(present) == 2 and pos_label not in present.tolist():
            raise ValueError(
                f"pos_label={pos_label!r} is not one of the classes {present.tolist()}; "
                "pass the label of the positive class"
            )
        lab = np.asarray([pos_label])
    else:
        lab = _resolve_labels(t, p, labels)
    tp, pred_sum, true_sum = _counts(t, p, lab)
    support = true_sum.astype(np.int64)
    if average == "micro":
        tp, pred_sum, true_sum = (c.sum(keepdims=True) for c in (tp, pred_sum, true_sum))
    prec = _ratio(tp, pred_sum, zero_division)
    rec = _ratio(tp, true_sum, zero_division)
    f = _ratio(2 * tp, pred_sum + true_sum, zero_division)
    if average is None:
        return prec, rec, f, support
    if average == "weighted":
        total = true_sum.sum()
        if total == 0:
            z = float(zero_division)
            return z, z, z, support
        w = true_sum / total
        return float(prec @ w), float(rec @ w), float(f @ w), support
    return float(prec.mean()), float(rec.mean()), float(f.mean()), support


def precision(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """Precision ``TP/(TP+FP)``; keyword arguments as :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, **kwargs)[0]


def recall(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """Recall (sensitivity) ``TP/(TP+FN)``; keyword arguments as :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, **kwargs)[1]


def f1(y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    """F1 score ``2TP/(2TP+FP+FN)``; keyword arguments as :func:`precision_recall_f1`."""
    return precision_recall_f1(y_true, y_pred, **kwargs)[2]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (shape (N,)) with ties given their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # 0-based rank of the first element of each group
    return (starts + (counts + 1) / 2.0)[inverse.reshape(-1)]


def _binary_auc(is_pos: np.ndarray, score: np.ndarray) -> float:
    """AUC as the Mann-Whitney U statistic: P(score of a positive > score of a negative),
    ties counted as one half. ``is_pos`` boolean (N,), ``score`` float (N,)."""
    n_pos = int(is_pos.sum())
    n_neg = len(is_pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "ROC AUC is undefined when y_true contains only one class "
            f"({n_pos} positive, {n_neg} negative samples); evaluate on data with both classes"
        )
    ranks = _average_ranks(score)
    u = ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc(
    y_true: Any,
    y_score: Any,
    *,
    average: Literal["macro", "weighted"] | None = "macro",
    labels: Any | None = None,
) -> Any:
    """Area under the ROC curve.

    Binary: ``y_score`` of shape (N,) holds the score of the positive class, which is the
    larger of the two labels in ``y_true`` (sklearn's convention); a (N, 2) matrix is also
    accepted and its second column used. Multi-class: ``y_score`` of shape (N, K) and the
    one-vs-rest AUC of each class (column ``k`` against ``y_true == labels[k]``) is averaged
    (``"macro"``: unweighted, as sklearn's ``multi_class="ovr"``; ``"weighted"``: by
    prevalence; ``None``: per-class array). Computed exactly via the Mann-Whitney U
    statistic with average ranks for ties (Hanley & McNeil, Radiology 1982).

    Parameters
    ----------
    y_true : array-like of shape (N,)
    y_score : array-like of shape (N,) or (N, K)
    average : how to combine the per-class AUCs of the multi-class case.
    labels : the class of each column of ``y_score`` (default: ``range(K)`` for K > 2, the
        sorted classes of ``y_true`` for the binary case).

    Raises
    ------
    ValueError
        If the AUC is undefined: only one class occurs in ``y_true`` (binary), or some class
        never occurs (multi-class), or the scores contain NaN/inf.
    """
    t = _as_numpy(y_true, "y_true")
    s = _as_numpy(y_score, "y_score").astype(np.float64)
    if t.ndim != 1:
        raise ValueError(f"y_true must be a 1-D label vector, got shape {t.shape}")
    if s.ndim not in (1, 2):
        raise ValueError(f"y_score must have shape (N,) or (N, K), got {s.shape}")
    if len(s) != len(t):
        raise ValueError(f"y_true has {len(t)} labels but y_score has {len(s)} rows")
    if len(t) == 0:
        raise ValueError("y_true is empty: ROC AUC over zero samples is undefined")
    if not np.all(np.isfinite(s)):
        raise ValueError("y_score contains NaN or inf; check the model's outputs")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim == 1 or s.shape[1] == 2:
        score = s if s.ndim == 1 else s[:, 1]
        if labels is not None:
            lab = _as_numpy(labels, "labels")
        elif s.ndim == 2:
            lab = np.arange(2)  # columns are classes 0 and 1, as in the multi-class case
        else:
            lab = np.unique(t)
            if len(lab) > 2:
                raise ValueError(
                    f"y_true has {len(lab)} classes but y_score has one score per sample; "
                    "pass an (N, K) score matrix for multi-class AUC"
                )
        outside = np.setdiff1d(np.unique(t), lab)
        if len(outside):
            raise ValueError(
                f"y_true contains labels {outside.tolist()} outside the binary labels "
                f"{lab.tolist()}"
            )
        if len(np.unique(t)) < 2:
            raise ValueError(
                "ROC AUC is undefined when y_true contains only one class "
                f"({np.unique(t).tolist()}); evaluate on data with both classes"
            )
        if len(lab) != 2:
            raise ValueError(
                f"a single score per sample needs exactly two labels, got {lab.tolist()}; "
                "pass an (N, K) score matrix for multi-class AUC"
            )
        pos = lab[1]
        return _binary_auc(t == pos, score)
    k = s.shape[1]
    lab = np.arange(k) if labels is None else _as_numpy(labels, "labels")
    if len(lab) != k:
        raise ValueError(f"y_score has {k} columns but {len(lab)} labels were given")
    outside = np.setdiff1d(np.unique(t), lab)
    if len(outside):
        raise ValueError(
            f"y_true contains labels {outside.tolist()} that have no column in y_score "
            f"(columns are labels {lab.tolist()})"
        )
    onehot = t[:, None] == lab[None, :]
    prevalence = onehot.sum(0)
    missing = lab[prevalence == 0]
    if len(missing):
        raise ValueError(
            f"one-vs-rest ROC AUC is undefined: class(es) {missing.tolist()} never occur in "
            "y_true; evaluate on data that contains every class"
        )
    per_class = np.array([_binary_auc(onehot[:, j], s[:, j]) for j in range(k)])
    if average is None:
        return per_class
    if average == "weighted":
        return float(per_class @ (prevalence / prevalence.sum()))
    if average == "macro":
        return float(per_class.mean())
    raise ValueError(f"average={average!r} is not one of ('macro', 'weighted', None)")


def classification_report(
    y_true: Any,
    y_pred: Any,
    y_score: Any | None = None,
    *,
    labels: Any | None = None,
    zero_division: float = 0.0,
) -> dict[str, Any]:
    """Every metric above in one JSON-serialisable ``dict`` (plain floats, ints and lists).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (N,)
    y_score : optional scores for ROC AUC, shape (N,) (binary, positive class) or (N, K)
        (e.g. softmax probabilities; then ``labels`` defaults to ``range(K)``).
    labels : the classes (default: ``range(K)`` when ``y_score`` is a matrix, else the sorted
        union of ``y_true`` and ``y_pred``).
    zero_division : value of an undefined precision/recall/F1 (no warning).

    Returns
    -------
    dict with keys

    * ``n_samples``, ``labels``, ``average`` (``"binary"`` for two labels, else ``"macro"``)
    * ``accuracy``
    * ``precision``, ``recall``, ``f1``: of the positive class ``labels[1]`` when there are
      two labels, else macro averages
    * ``precision_macro``, ``recall_macro``, ``f1_macro``
    * ``precision_per_class``, ``recall_per_class``, ``f1_per_class``, ``support`` (lists
      in the order of ``labels``)
    * ``confusion_matrix``: list of rows (true) of lists (predicted)
    * ``roc_auc``: float, or ``None`` when not computable, with ``roc_auc_reason`` saying why
      (``None`` when the AUC is defined)
    """
    t, p = _check_labels(y_true, y_pred)
    score = None if y_score is None else _as_numpy(y_score, "y_score")
    if labels is None and score is not None and score.ndim == 2 and score.shape[1] > 1:
        lab = np.arange(score.shape[1])
        outside = np.setdiff1d(np.union1d(t, p), lab)
        if len(outside):
            raise ValueError(
                f"labels {outside.tolist()} occur in y_true/y_pred but y_score has only "
                f"{score.shape[1]} columns; pass labels= explicitly"
            )
    else:
        lab = _resolve_labels(t, p, labels)
    prec, rec, f, support = precision_recall_f1(
        t, p, average=None, labels=lab, zero_division=zero_division
    )
    binary = len(lab) == 2
    report: dict[str, Any] = {
        "n_samples": int(len(t)),
        "labels": lab.tolist(),
        "average": "binary" if binary else "macro",
        "accuracy": accuracy(t, p),
    }
    if binary:
        report.update(precision=float(prec[1]), recall=float(rec[1]), f1=float(f[1]))
    else:
        report.update(precision=float(prec.mean()), recall=float(rec.mean()), f1=float(f.mean()))
    report.update(
        precision_macro=float(prec.mean()),
        recall_macro=float(rec.mean()),
        f1_macro=float(f.mean()),
        precision_per_class=prec.tolist(),
        recall_per_class=rec.tolist(),
        f1_per_class=f.tolist(),
        support=support.tolist(),
        confusion_matrix=confusion_matrix(t, p, labels=lab).tolist(),
    )
    auc: float | None = None
    reason: str | None = None
    if score is None:
        reason = "no scores given (pass y_score, e.g. predicted probabilities)"
    else:
        try:
            auc_labels = lab if (score.ndim == 2 and score.shape[1] > 1) or binary else None
            auc = float(roc_auc(t, score, labels=auc_labels))
        except ValueError as exc:
            reason = str(exc)
    report["roc_auc"] = auc
    report["roc_auc_reason"] = reason
    return report
