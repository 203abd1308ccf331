"""Classification metrics against scikit-learn on random and degenerate inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from medshield.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    f1,
    precision,
    precision_recall_f1,
    recall,
    roc_auc,
)


def _random_case(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class occurs in y_true
    probs = rng.dirichlet(np.ones(k), n)
    probs[np.arange(n), y] += rng.uniform(0, 0.6, n)  # informative but imperfect
    probs /= probs.sum(1, keepdims=True)
    # predictions: argmax, with some noise so that precision/recall differ per class
    pred = probs.argmax(1)
    flip = rng.random(n) < 0.2
    pred[flip] = rng.integers(0, k, flip.sum())
    return y, pred, probs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_matches_sklearn_random(seed: int, k: int) -> None:
    y, pred, probs = _random_case(seed, 97 + seed * 13, k)
    assert accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    np.testing.assert_array_equal(confusion_matrix(y, pred), skm.confusion_matrix(y, pred))
    averages = ["macro", "micro", "weighted", None] + (["binary"] if k == 2 else [])
    for avg in averages:
        for ours, ref in [
            (precision(y, pred, average=avg), skm.precision_score(y, pred, average=avg)),
            (recall(y, pred, average=avg), skm.recall_score(y, pred, average=avg)),
            (f1(y, pred, average=avg), skm.f1_score(y, pred, average=avg)),
        ]:
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12, err_msg=f"average={avg}")
    if k == 2:
        assert roc_auc(y, probs[:, 1]) == pytest.approx(
            skm.roc_auc_score(y, probs[:, 1]), abs=1e-12
        )
        assert roc_auc(y, probs) == pytest.approx(skm.roc_auc_score(y, probs[:, 1]), abs=1e-12)
    else:
        for avg in ["macro", "weighted"]:
            ref = skm.roc_auc_score(y, probs, multi_class="ovr", average=avg)
            assert roc_auc(y, probs, average=avg) == pytest.approx(ref, abs=1e-12)


def test_auc_ties_and_labels_not_zero_one() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice([3, 7], 200)
    score = rng.integers(0, 4, 200).astype(float)  # heavy ties
    score[y == 7] += rng.integers(0, 2, (y == 7).sum())
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert roc_auc(y, score) != pytest.approx(0.5, abs=0.02)  # the test data carries signal


def test_auc_slow_reference_pairs() -> None:
    """AUC = P(positive scores above negative) + 0.5 P(tie), counted pair by pair."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60) + 0.3 * y, 1)
    pos, neg = s[y == 1], s[y == 0]
    ref = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert roc_auc(y, s) == pytest.approx(ref, abs=1e-12)


def test_per_class_average_none_and_labels_subset() -> None:
    y = np.array([0, 1, 2, 2, 1, 0, 3, 3])
    p = np.array([0, 2, 2, 2, 1, 1, 3, 0])
    for labels in ([0, 1, 2, 3], [2, 0], [1, 3]):
        for avg in ["macro", "micro", "weighted", None]:
            ours = precision_recall_f1(y, p, average=avg, labels=labels)[:3]
            ref = skm.precision_recall_fscore_support(
                y, p, average=avg, labels=labels, zero_division=0
            )[:3]
            np.testing.assert_allclose(ours, ref, atol=1e-12, err_msg=f"{labels} {avg}")
    np.testing.assert_array_equal(
        confusion_matrix(y, p, labels=[3, 0, 2]), skm.confusion_matrix(y, p, labels=[3, 0, 2])
    )


def test_class_never_predicted_is_zero_without_warnings() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 1, 1, 1, 1])  # class 2 never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prec = precision(y, p, average=None)
        rep = classification_report(y, p)
    assert prec[2] == 0.0
    assert rep["precision_per_class"][2] == 0.0
    ref = skm.precision_score(y, p, average="macro", zero_division=0)
    assert rep["precision_macro"] == pytest.approx(ref)


def test_binary_only_one_class_present() -> None:
    y = np.zeros(10, dtype=int)
    p = np.zeros(10, dtype=int)
    assert precision(y, p) == 0.0  # no positive predicted: zero_division
    assert recall(y, p) == 0.0
    assert f1(y, p) == skm.f1_score(y, p, zero_division=0)
    with pytest.raises(ValueError, match="only one class"):
        roc_auc(y, np.linspace(0, 1, 10))


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="average='macro'"):
        precision([0, 1, 2], [0, 1, 2], average="binary")
    with pytest.raises(ValueError, match="pos_label"):
        precision([3, 4], [3, 4], average="binary")
    with pytest.raises(ValueError, match="1-D"):
        accuracy(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="never occur"):
        roc_auc([0, 1, 1, 0], np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        accuracy([0, 1, 1], [0, 1])


def test_report_binary_json_and_torch_inputs() -> None:
    y, pred, probs = _random_case(11, 150, 2)
    rep = classification_report(
        torch.from_numpy(y), torch.from_numpy(pred), torch.from_numpy(probs)
    )
    json.dumps(rep, allow_nan=False)  # plain Python types only
    assert rep["average"] == "binary"
    assert rep["labels"] == [0, 1]
    assert rep["n_samples"] == 150
    assert rep["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert rep["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert rep["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    assert rep["roc_auc_reason"] is None
    assert rep["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert sum(rep["support"]) == 150


def test_report_multiclass_and_degenerate_auc() -> None:
    y, pred, probs = _random_case(12, 200, 4)
    rep = classification_report(y, pred, probs)
    assert rep["average"] == "macro"
    assert rep["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    # only class 1 in y_true: AUC is None with a reason, everything else still computed
    ones = np.ones(20, dtype=int)
    rep1 = classification_report(ones, np.r_[ones[:15], np.zeros(5, int)], np.full((20, 4), 0.25))
    assert rep1["roc_auc"] is None and "never occur" in rep1["roc_auc_reason"]
    assert rep1["accuracy"] == 0.75
    assert rep1["labels"] == [0, 1, 2, 3]
    json.dumps(rep1, allow_nan=False)
    rep2 = classification_report([1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.8])
    assert rep2["roc_auc"] is None and "only one class" in rep2["roc_auc_reason"]
    rep3 = classification_report([0, 1], [0, 1])
    assert rep3["roc_auc"] is None and "no scores" in rep3["roc_auc_reason"]
